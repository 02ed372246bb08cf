"""Where models come from: the Hub organisation, the Hub endpoint and cache, offline mode.

Everything here is read from the environment (or the config file) at call time, never at
import: a test, a notebook or the CLI's ``--offline`` flag may change the environment after
``deblurcli`` was imported, and ``huggingface_hub`` itself freezes its settings when *it* is
imported, so the hub module passes these values to it explicitly on every call.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

#: The organisation that hosts the converted weights when nobody says otherwise.
DEFAULT_HUB_ORG = "deblurcli"
DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds to wait for the Hub's first answer. A dead or black-holed server should fail fast
#: and say so, rather than sit through huggingface_hub's retry schedule.
DEFAULT_HUB_TIMEOUT = 10.0

_TRUE = {"1", "true", "yes", "on"}
# Hub user and organisation names: letters, digits, '-', '_', '.', not starting with a symbol.
_ORG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def config_path() -> Path:
    """``$DEBLUR_CONFIG``, else ``$XDG_CONFIG_HOME/deblurcli/config.toml`` (``~/.config`` by default)."""
    explicit = os.environ.get("DEBLUR_CONFIG", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME", "").strip() or str(Path.home() / ".config")
    return Path(base).expanduser() / "deblurcli" / "config.toml"


def load_config() -> dict[str, Any]:
    """The config file's table, or ``{}`` when there is none.

    A file named by ``DEBLUR_CONFIG`` that does not exist is an error (the user asked for it);
    the default location simply being absent is the normal case.
    """
    path = config_path()
    if not path.is_file():
        if os.environ.get("DEBLUR_CONFIG", "").strip():
            raise UsageError(f"{path}: config file named by DEBLUR_CONFIG does not exist; fix or unset DEBLUR_CONFIG")
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc}); fix the file or point DEBLUR_CONFIG elsewhere") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None


def hub_org() -> str:
    """The Hub organisation holding the registry's repos: env, then config file, then the default.

    Mirrors and forks re-host the same repo names under another organisation, so only the org
    is configurable; repo and file names stay those of the registry.
    """
    org = os.environ.get("DEBLUR_HUB_ORG", "").strip()
    where = "DEBLUR_HUB_ORG"
    if not org:
        value = load_config().get("hub_org")
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{config_path()}: hub_org must be a string, got {value!r}")
        org = (value or "").strip()
        where = f"hub_org in {config_path()}"
    if not org:
        return DEFAULT_HUB_ORG
    if not _ORG_RE.match(org):
        raise UsageError(f"{where}: {org!r} is not a valid Hub organisation name (letters, digits, '-', '_', '.')")
    return org


def offline() -> bool:
    """Whether the network is off limits: ``HF_HUB_OFFLINE=1`` (huggingface_hub's switch) or ``DEBLUR_OFFLINE=1``."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("DEBLUR_OFFLINE")


def offline_reason() -> str:
    """Which switch made us offline, so an error can tell the user what to unset."""
    if _env_true("HF_HUB_OFFLINE"):
        return "HF_HUB_OFFLINE=1"
    if _env_true("DEBLUR_OFFLINE"):
        return "DEBLUR_OFFLINE=1"
    return "offline mode"


def hf_endpoint() -> str:
    """The Hub (or mirror) to talk to, as huggingface_hub would pick it, without a trailing slash."""
    return (os.environ.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")


def hub_customised() -> bool:
    """Whether the user names another Hub organisation (a fork or a re-host of our repos).

    Then the registry's repos may well be there even where this package pins no published file,
    so listings offer them as downloadable rather than as manual installs. HF_ENDPOINT alone does
    not count: the usual mirrors proxy huggingface.co, so what is unpublished there is here too.
    """
    return hub_org() != DEFAULT_HUB_ORG


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved the way huggingface_hub resolves it.

    Shared with every other Hugging Face tool on purpose: a model fetched by ``hf download`` or
    copied from a connected machine's ``~/.cache/huggingface/hub`` is found here too.
    """
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        value = os.environ.get(name, "").strip()
        if value:
            return Path(os.path.expandvars(value)).expanduser()
    home = os.environ.get("HF_HOME", "").strip()
    if not home:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
        home = os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def data_dir() -> Path:
    """Where deblurcli keeps the user's own files (installed models): env, config file, XDG default.

    ``DEBLUR_DATA_DIR``, else ``data_dir`` in the config file, else ``$XDG_DATA_HOME/deblurcli``
    (``~/.local/share/deblurcli``). Not the Hugging Face cache: a checkpoint the user converted
    and installed must survive ``hf cache`` clean-ups and never be mistaken for a Hub download.
    """
    raw = os.environ.get("DEBLUR_DATA_DIR", "").strip()
    if not raw:
        value = load_config().get("data_dir")
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{config_path()}: data_dir must be a string (a folder), got {value!r}")
        raw = (value or "").strip()
    if raw:
        return Path(os.path.expandvars(raw)).expanduser()
    base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "deblurcli"


def hub_timeout() -> float:
    """Seconds to wait for the Hub's first answer (``DEBLUR_HUB_TIMEOUT``, default 10)."""
    raw = os.environ.get("DEBLUR_HUB_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_HUB_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"DEBLUR_HUB_TIMEOUT={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise UsageError(f"DEBLUR_HUB_TIMEOUT={raw!r}: must be positive")
    return value
