"""Turn what the user typed after ``--model`` into a weights file on disk.

Resolution order (first match wins): nothing means the embedded default; then an existing local
file; a model embedded in the package; a registry name the user installed from the authors'
checkpoint (``deblur convert FILE --install NAME``, :mod:`deblurcli.installed`); a registry name
or ``hf:OWNER/REPO[/FILE][@REV]`` already in the Hugging Face cache; else a download into it.

The cache is the standard Hugging Face one, read and written through huggingface_hub's own API,
so all but the download work without a network: a machine without internet runs any model that
a connected machine fetched (``deblur download NAME``) and copied over. Offline mode
(``HF_HUB_OFFLINE=1``, ``DEBLUR_OFFLINE=1`` or ``offline=True``) stops before the download and
says what to do instead (:mod:`deblurcli.hub_errors`).

A Hub file is checked by sha256, against the registry's pin or else the sha256 the Hub reported
(its ETag, which names the cached blob): huggingface_hub checks sizes only, so a same-size
corruption would be cached and returned forever. A mismatch deletes the cached copy and says so.
huggingface_hub is imported lazily and every setting is passed to it explicitly, because it
freezes its environment-derived settings when first imported.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import hfcache, hub_errors, installed, settings
from .errors import CheckpointError, ModelNotAvailable, UsageError
from .fsutil import sha256_file
from .hfcache import HubRef
from .models import registry
from .models.registry import ModelEntry

if TYPE_CHECKING:
    from rich.console import Console

Source = Literal["local", "embedded", "installed", "cache", "download"]
#: ``progress(bytes_done, bytes_total_or_None)``, called as a download advances.
ProgressCallback = Callable[[int, "int | None"], None]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
_REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# (file, warning) pairs already shown: a batch resolves the same model many times (and hashes are
# memoised per file version for the same reason).
_WARNED: set[tuple[str, str]] = set()


@dataclass
class Resolved:
    """A weights file ready for :func:`deblurcli.weights.load_model`, and where it came from."""

    path: Path
    ref: str
    entry: ModelEntry | None
    #: The Hub commit the file belongs to (None for local and embedded files).
    revision: str | None
    #: The file's sha256 when it was computed (always for a verified Hub file), else None.
    sha256: str | None
    source: Source
    repo_id: str | None = None
    filename: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.entry.name if self.entry is not None else self.ref


def parse_hf_ref(ref: str) -> HubRef:
    """``hf:OWNER/REPO[/FILE][@REV]``; a bare ``hf:REPO`` is looked up in the configured org."""
    text = ref.strip()
    if not text.lower().startswith("hf:"):
        raise UsageError(f"{ref!r}: a Hub reference starts with hf: (hf:OWNER/REPO[/FILE][@REV])")
    body, at, revision = text[3:].strip().strip("/").rpartition("@")
    if not at:
        body, revision = revision, ""
    elif not revision:
        raise UsageError(f"{ref!r}: nothing after '@'; give a branch, tag or commit, or drop the '@'")
    parts = [p for p in body.split("/") if p]
    if not parts:
        raise UsageError(f"{ref!r}: expected hf:OWNER/REPO[/FILE][@REV]")
    if len(parts) == 1:
        parts.insert(0, settings.hub_org())
    for part in parts[:2]:
        if not _REPO_PART_RE.match(part):
            raise UsageError(f"{ref!r}: {part!r} is not a valid Hub owner or repo name")
    return HubRef(repo_id="/".join(parts[:2]), filename="/".join(parts[2:]) or None, revision=revision or None,
                  ref=text)


def _entry_ref(entry: ModelEntry) -> HubRef:
    return HubRef(repo_id=str(entry.hf_repo_id()), filename=entry.hf_filename, revision=entry.revision,
                  ref=entry.name, entry=entry)


def resolve(ref: str | None = None, *, offline: bool | None = None, progress: bool | ProgressCallback = True,
            console: Console | None = None, force_download: bool = False) -> Resolved:
    """Find (or fetch) the weights ``ref`` names; see the module docstring for the order.

    ``offline=None`` follows the environment. ``progress`` is True for a progress bar on
    ``console`` (stderr by default; a ``Console(quiet=True)`` silences bar and messages alike),
    False for none, or a callable that receives ``(bytes_done, bytes_total)``.
    ``force_download`` fetches a Hub file again even when it is cached.
    """
    off = settings.offline() if offline is None else bool(offline)
    con = console if console is not None else _default_console()
    text = str(ref or "").strip()
    if not text:
        return _resolve_embedded(registry.default_entry(), ref=registry.DEFAULT_NAME)
    if text.lower().startswith("hf:"):
        return _resolve_hub(parse_hf_ref(text), offline=off, progress=progress, console=con, force=force_download)
    path = Path(text).expanduser()
    if path.exists():
        return Resolved(path=path.resolve(), ref=text, entry=None, revision=None, sha256=None, source="local")

    entry = registry.find(text)
    if entry is None:
        if "/" in text or os.sep in text or text.lower().endswith(_WEIGHT_SUFFIXES) or text.startswith((".", "~")):
            raise CheckpointError(f"{text}: no such weights file; check the path, or name a model (deblur models)")
        raise ModelNotAvailable(registry.unknown_name_message(text), exit_code=2)  # a typo, like a bad option
    if entry.embedded and (registry.embedded_path(entry) is not None or not entry.hf_repo):
        return _resolve_embedded(entry, ref=text)
    inst = installed.find(entry)
    if inst is not None:
        digest = sha256_file(inst.path, memo=True)
        installed.verify(inst, entry, digest)
        return Resolved(path=inst.path, ref=text, entry=entry, revision=None, sha256=digest, source="installed")
    if entry.classical:
        raise ModelNotAvailable(f"model {entry.name!r} is built in and has no weights: Deblurrer({entry.name!r}) "
                                "runs it, there is nothing to load or download", exit_code=2)
    if not entry.hf_repo:
        raise ModelNotAvailable(f"model {entry.name!r} has no download location; choose another (deblur models)")
    return _resolve_hub(_entry_ref(entry), offline=off, progress=progress, console=con, force=force_download)


def download(names: Iterable[str], *, force: bool = False, offline: bool | None = None,
             progress: bool | ProgressCallback = True, console: Console | None = None) -> list[Resolved]:
    """Put each named model (registry name or ``hf:`` reference) into the cache; stop at the first failure.

    A cached file is not fetched again unless ``force``, which re-downloads it even when it
    looks fine (the way out of a cache that something else damaged).
    """
    wanted = [str(n).strip() for n in names if str(n).strip()]
    if not wanted:
        raise UsageError("name at least one model to download (deblur models lists them)")
    results = []
    for name in wanted:
        if not name.lower().startswith("hf:") and registry.find(name) is None:
            hint = " (it is a local file: nothing to download)" if Path(name).expanduser().exists() else ""
            raise ModelNotAvailable(registry.unknown_name_message(name) + hint, exit_code=2)
        results.append(resolve(name, offline=offline, progress=progress, console=console, force_download=force))
    return results


def cached_path(entry: ModelEntry) -> Path | None:
    """Where ``entry``'s Hub file sits in the local cache, or None; never uses the network."""
    if not entry.hf_repo or not entry.hf_filename:
        return None
    hit = hfcache.from_cache(_entry_ref(entry), settings.hf_cache_dir(), newest_ok=entry.revision is None)
    return hit[0] if hit else None


def where(entry: ModelEntry) -> str:
    """How ``entry`` would be had now: ``embedded``, ``installed``, ``cached``, ``downloadable``,
    ``manual`` or ``missing``.

    ``manual``: a Hub repo is named but this package pins no published file and the user has not
    pointed us at a mirror, so a download would most likely 404; the authors' checkpoint has to be
    fetched and converted by hand (``deblur models info NAME`` gives both steps). Saying so in the
    listing spares the user a failed download to find out.
    """
    if entry.classical:
        return "built-in"
    if registry.embedded_path(entry) is not None:
        return "embedded"
    if installed.find(entry) is not None:
        return "installed"
    if entry.hf_repo:
        if cached_path(entry) is not None:
            return "cached"
        return "downloadable" if entry.pinned or settings.hub_customised() else "manual"
    return "missing"


def _resolve_embedded(entry: ModelEntry, *, ref: str) -> Resolved:
    path = registry.embedded_path(entry)
    if path is None:
        folder = registry.weights_dir()
        raise ModelNotAvailable(
            f"the embedded model {entry.name!r} is missing from this installation "
            f"({folder / (entry.embedded or '') if folder else 'no deblurcli._weights package'}); "
            "reinstall deblurcli, or give {model}: a model name (deblur models) or a weights file", names=("model",))
    if entry.sha256 and (digest := sha256_file(path, memo=True)) != entry.sha256.lower():
        raise CheckpointError(
            f"{path}: the embedded weights do not match the sha256 this package pins (got {digest[:16]}…, "
            f"expected {entry.sha256[:16]}…); the file was damaged or replaced: reinstall deblurcli")
    return Resolved(path=path, ref=ref, entry=entry, revision=None, sha256=entry.sha256, source="embedded")


def _resolve_hub(hub: HubRef, *, offline: bool, progress: bool | ProgressCallback, console: Console,
                 force: bool) -> Resolved:
    cache_dir = settings.hf_cache_dir()
    hit = None if force else hfcache.from_cache(hub, cache_dir, newest_ok=offline and hub.revision is None)
    if offline and hit is None:
        raise ModelNotAvailable(f"{hub.label}: not in the local cache ({cache_dir}) and {settings.offline_reason()} "
                                f"forbids downloading it; {hub_errors.fallback_hint(hub.label, hub.entry, cache_dir)}")
    source: Source = "cache" if hit else "download"
    path, commit, filename = hit or hfcache.fetch(hub, cache_dir, progress=progress, console=console,
                                                     say=functools.partial(_say, console), force=force)
    digest, warnings = _verify(path, hub, filename, console, just_downloaded=source == "download", offline=offline)
    if source == "download":
        from rich.filesize import decimal

        _say(console, f"saved {hub.repo_id}/{filename} ({decimal(path.stat().st_size)}) to {path}")
    return Resolved(path=path, ref=hub.ref, entry=hub.entry, revision=commit, sha256=digest, source=source,
                    repo_id=hub.repo_id, filename=filename, warnings=warnings)


def _verify(path: Path, hub: HubRef, filename: str, console: Console, *, just_downloaded: bool,
            offline: bool) -> tuple[str | None, list[str]]:
    """Check the file against the registry pin, else the Hub's own sha256 (the blob's name); evict it if wrong."""
    blob = Path(os.path.realpath(path))
    pinned = hub.entry.sha256.lower() if hub.entry is not None and hub.entry.sha256 else None
    served = blob.name if _SHA256_RE.match(blob.name) else None
    warnings: list[str] = []
    if hub.entry is not None and pinned is None:
        checked = "checked only against the sha256 the Hub reports" if served else "not checked: no sha256 known"
        warnings.append(f"model {hub.entry.name!r} is not checksum-pinned in deblurcli's registry ({checked})")
    digest = sha256_file(blob, memo=True) if pinned or served else None
    expected, against = (pinned, "the registry's pinned sha256") if pinned else (served, "the Hub's sha256")
    if digest is not None and digest != expected:
        left = []
        for p in (path, blob):  # the snapshot link, then the blob
            try:
                p.unlink(missing_ok=True)
            except OSError:
                left.append(str(p))
        removed = (f"could not delete it ({', '.join(left)}): delete those by hand" if left
                   else "deleted it from the cache")
        again = (f"on a connected machine run `deblur download {hub.label}`" if offline
                 else "run the command again to download it afresh")
        raise ModelNotAvailable(
            f"{hub.label}: the {'downloaded' if just_downloaded else 'cached'} {hub.repo_id}/{filename} is corrupt "
            f"(sha256 {digest[:16]}…, expected {str(expected)[:16]}… per {against}); {removed}; {again}")
    for w in warnings:
        if (str(blob), w) not in _WARNED:
            _WARNED.add((str(blob), w))
            _say(console, w, warning=True)
    return digest, warnings


def _default_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _say(console: Console, message: str, *, warning: bool = False) -> None:
    from rich.text import Text

    console.print(Text("warning: ", style="yellow") + Text(message) if warning else Text(message, style="dim"))
