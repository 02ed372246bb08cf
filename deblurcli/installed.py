"""Authors' checkpoints converted and installed under a registry name, for offline use by name.

The converted weights of the published models are not on the Hub yet, and the authors publish
theirs on Google Drive, which no program can fetch unattended. So a user downloads the file by
hand once and runs ``deblur convert FILE --install NAME``; from then on ``--model NAME`` finds it
here, with no network, before any Hub lookup.

Layout: ``<data dir>/models/NAME.safetensors`` (our self-describing format, carrying the
registry entry's variant and settings) and ``NAME.json`` beside it (its sha256, size and the
source file's name and sha256). The data dir follows :func:`deblurcli.settings.data_dir`.
The record is what lets a file that was damaged or replaced after installation be refused.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import settings
from .errors import CheckpointError, UsageError
from .fsutil import atomic_write, sha256_file
from .models import registry
from .models.registry import ModelEntry

if TYPE_CHECKING:
    import torch

    from .weights import ModelSpec


@dataclass(frozen=True)
class Installed:
    """One installed model: the weights file and what its record says about it."""

    name: str
    path: Path
    #: From the install record; None when the record is missing or unreadable.
    sha256: str | None
    size: int | None = None
    source_name: str | None = None
    source_sha256: str | None = None
    installed_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def models_dir() -> Path:
    return settings.data_dir() / "models"


def _files(name: str) -> tuple[Path, Path]:
    folder = models_dir()
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def find(entry: ModelEntry) -> Installed | None:
    """``entry``'s installed file, or None; reads only the small record, never the weights."""
    path, record = _files(entry.name)
    if not path.is_file():
        return None
    try:
        data = json.loads(record.read_text())
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        return Installed(name=entry.name, path=path, sha256=None)
    return Installed(
        name=entry.name, path=path, sha256=str(data.get("sha256") or "").lower() or None, size=data.get("size"),
        source_name=data.get("source_name"), source_sha256=data.get("source_sha256"),
        installed_at=data.get("installed_at"),
    )


def _reinstall_hint(entry: ModelEntry) -> str:
    command = (entry.convert_command or f"deblur convert FILE --install {entry.name}") + " --overwrite"
    return f"install it again: `{command}`"


def verify(inst: Installed, entry: ModelEntry, digest: str) -> None:
    """Refuse an installed file whose sha256 is not the one recorded when it was installed."""
    if inst.sha256 is None:
        raise CheckpointError(f"{inst.path}: its install record {inst.path.with_suffix('.json').name} is missing "
                              f"or unreadable, so the file cannot be checked; {_reinstall_hint(entry)}")
    if digest != inst.sha256:
        raise CheckpointError(f"{inst.path}: the installed weights of {entry.name} were damaged or replaced "
                              f"(sha256 {digest[:16]}…, installed as {inst.sha256[:16]}…); {_reinstall_hint(entry)}")


def _describe(arch: str, config: dict[str, Any], keys: list[str]) -> str:
    if not keys:
        return arch
    return f"{arch} with " + ", ".join(f"{k} {json.dumps(config.get(k))}" for k in keys)


def mismatch(src: Path, spec: ModelSpec, entry: ModelEntry) -> str | None:
    """One line naming what the checkpoint is and what ``entry`` expects, or None when they agree."""
    if spec.arch == entry.arch and spec.config == entry.config:
        return None
    keys = [] if spec.arch != entry.arch else sorted(
        k for k in {*spec.config, *entry.config} if spec.config.get(k) != entry.config.get(k))
    fits = [e.name for e in registry.entries()[1:] if e.arch == spec.arch and e.config == spec.config]
    hint = f"; it fits {' or '.join(fits)}: install it under that name" if fits else \
        f"; get {entry.name}'s own checkpoint from {entry.source_url}" if entry.source_url else ""
    return (f"{src}: this checkpoint is {_describe(spec.arch, spec.config, keys)}, but {entry.name} expects "
            f"{_describe(entry.arch, entry.config, keys)}{hint}")


def install(src: str | os.PathLike[str], name: str, *, overwrite: bool = False,
            dtype: torch.dtype | None = None) -> tuple[Installed, ModelSpec]:
    """Convert ``src`` into ``name``'s installed file, after checking it is that network."""
    from .weights import convert

    entry = registry.get(name)
    if entry.embedded or entry.paper is None:
        raise UsageError(f"{entry.name} is embedded in the package: nothing to install; "
                         "--install takes a published model's name (deblur models)")
    src = Path(src)
    dst, record = _files(entry.name)
    if dst.exists() and not overwrite:
        raise CheckpointError(f"{entry.name} is already installed ({dst}); pass --overwrite to replace it")

    def check(spec: ModelSpec) -> None:
        problem = mismatch(src, spec, entry)
        if problem:
            raise CheckpointError(problem)

    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{dst.parent}: cannot create the models folder ({exc.strerror or exc}); "
                              "set DEBLUR_DATA_DIR to a writable folder") from None
    spec = convert(src, dst, variant=entry.variant, settings=entry.settings, dtype=dtype, check=check,
                   extra_metadata={"registry_name": entry.name, "trained_on": entry.trained_on,
                                   "description": entry.description})
    inst = Installed(
        name=entry.name, path=dst, sha256=sha256_file(dst), size=dst.stat().st_size,
        source_name=src.name, source_sha256=spec.metadata.get("source_sha256") or sha256_file(src),
        installed_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    fields = {k: v for k, v in inst.to_dict().items() if k not in ("name", "path")}
    atomic_write(record, json.dumps(fields, indent=1) + "\n")
    return inst, spec
