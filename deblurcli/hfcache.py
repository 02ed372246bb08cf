"""The Hugging Face side of :mod:`deblurcli.hub`: find a Hub file in the local cache, or fetch it.

Everything goes through huggingface_hub's own cache API (``try_to_load_from_cache``,
``scan_cache_dir``, ``hf_hub_download``), so the cache stays the standard one that ``hf download``
and every other Hugging Face tool share. Two things are ours: a file is fetched by commit after
one metadata request (see :func:`fetch`), and a failure becomes one line that says what to do
(:mod:`deblurcli.hub_errors`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import __version__, hub_errors, settings
from .errors import ModelNotAvailable
from .fsutil import atomic_write
from .models.registry import ModelEntry
from .progress import DownloadBar

if TYPE_CHECKING:
    from rich.console import Console

_LIB = {"library_name": "deblurcli", "library_version": __version__}


@dataclass(frozen=True)
class HubRef:
    """A file on the Hub: repo, file (None = the repo's single .safetensors), revision."""

    repo_id: str
    filename: str | None
    revision: str | None
    ref: str
    entry: ModelEntry | None = None

    @property
    def label(self) -> str:
        return self.entry.name if self.entry is not None else self.ref


@functools.cache
def hf() -> ModuleType:
    """huggingface_hub, imported on first need, with telemetry off.

    With telemetry on it fetches an "agent harness" list from the endpoint it froze at import
    time: a request the user neither asked for nor pointed at their mirror.
    """
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub

    return huggingface_hub


def from_cache(hub: HubRef, cache_dir: Path, *, newest_ok: bool) -> tuple[Path, str, str] | None:
    """(file, its commit, its name in the repo) from the cache alone, or None.

    A named file at the wanted revision is huggingface_hub's own lookup. Its cache scan serves
    what that lookup cannot: a reference naming no file (the snapshot's single .safetensors), and
    ``newest_ok`` (offline, no revision named) the newest cached copy when the branch has no ref:
    files fetched by commit or copied from another machine leave none, and running the copy we
    have beats refusing. Online, the Hub says what the branch is now instead.
    """
    lib = hf()
    wanted = hub.revision or "main"
    if hub.filename:
        hit = lib.try_to_load_from_cache(hub.repo_id, hub.filename, cache_dir=str(cache_dir), revision=wanted)
        if isinstance(hit, str) and os.path.isfile(hit):  # in snapshots/<commit>/<filename>
            return Path(hit), Path(hit).parents[hub.filename.count("/")].name, hub.filename
        if not newest_ok:
            return None
    if not _repo_folder(cache_dir, hub.repo_id).is_dir():
        return None  # nothing of this repo is cached: spare the scan, which reads the whole cache
    try:
        repos = lib.scan_cache_dir(cache_dir).repos
    except (lib.CacheNotFound, ValueError):  # no cache yet, or not a folder
        return None
    revisions = sorted((rev for repo in repos if repo.repo_id == hub.repo_id and repo.repo_type == "model"
                        for rev in repo.revisions), key=lambda rev: rev.last_modified, reverse=True)
    exact = [rev for rev in revisions if wanted == rev.commit_hash or wanted in rev.refs]
    for rev in exact + [rev for rev in revisions if rev not in exact] if newest_ok else exact:
        files = {f.file_path.relative_to(rev.snapshot_path).as_posix(): f.file_path for f in rev.files}
        weights = sorted(name for name in files if name.endswith(".safetensors"))
        if hub.filename is None and not weights:
            continue
        name = hub.filename or pick_single(hub, weights, f"the cached snapshot {rev.snapshot_path}")
        if name in files:
            return files[name], rev.commit_hash, name
    return None


def pick_single(hub: HubRef, files: list[str], where_: str) -> str:
    """The one .safetensors among ``files``; with none or several, ask for a name rather than guess a model."""
    weights = [f for f in files if f.endswith(".safetensors")]
    if len(weights) == 1:
        return weights[0]
    if not weights:
        listed = f" (files: {', '.join(files[:8])})" if files else ""
        raise ModelNotAvailable(f"{hub.ref}: {where_} has no .safetensors file{listed}; "
                                "name the file: hf:OWNER/REPO/FILE")
    raise ModelNotAvailable(f"{hub.ref}: {where_} has several .safetensors files ({', '.join(weights)}); "
                            f"name one: hf:{hub.repo_id}/{weights[0]}")


def fetch(hub: HubRef, cache_dir: Path, *, progress: bool | Callable[[int, int | None], None], console: Console,
          say: Callable[[str], None], force: bool) -> tuple[Path, str, str]:
    """Fetch the file by commit, never by branch, so it cannot change between the metadata
    request and the transfer, and the commit is what gets recorded and reported."""
    lib, endpoint, timeout = hf(), settings.hf_endpoint(), settings.hub_timeout()
    revision, filename, commit = hub.revision or "main", hub.filename, None
    call = functools.partial(_call, hub, revision, endpoint, cache_dir)
    if filename is None:
        say(f"listing the files of {hub.repo_id}@{revision} on {endpoint}…")
        api = lib.HfApi(endpoint=endpoint, **_LIB)
        info = call(None, lambda: api.model_info(hub.repo_id, revision=revision, timeout=timeout))
        filename = pick_single(hub, [s.rfilename for s in info.siblings or []], f"{hub.repo_id}@{revision}")
        commit = info.sha if info.sha and re.fullmatch(r"[0-9a-f]{40}", info.sha) else None
    say(f"downloading {hub.label} ({hub.repo_id}/{filename}@{revision}) from {endpoint}…")
    if commit is None:
        # One metadata request without retries first: huggingface_hub's download retries a failing
        # server for tens of seconds, and a dead endpoint should be an immediate, explained error.
        url = lib.hf_hub_url(hub.repo_id, filename, revision=revision, endpoint=endpoint)
        meta = call(filename, lambda: lib.get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint, **_LIB))
        if not meta.commit_hash:
            raise ModelNotAvailable(f"{endpoint} did not answer like a Hugging Face Hub (no X-Repo-Commit header "
                                    f"for {hub.repo_id}/{filename}); check HF_ENDPOINT")
        commit = str(meta.commit_hash)
    bar = functools.partial(DownloadBar, console=console, show=progress is not False, label=filename,
                            callback=progress if callable(progress) else None)
    local = call(filename, lambda: lib.hf_hub_download(
        hub.repo_id, filename, revision=commit, cache_dir=str(cache_dir), endpoint=endpoint, etag_timeout=timeout,
        force_download=force, tqdm_class=bar, **_LIB))
    if commit != revision:
        _record_branch(cache_dir, hub.repo_id, revision, commit)
    return Path(local), commit, filename


def _record_branch(cache_dir: Path, repo_id: str, branch: str, commit: str) -> None:
    """Point the cache's ref for ``branch`` at ``commit``, so later offline runs asking for the branch
    find it: huggingface_hub records a ref only when it downloads by branch, which we do not."""
    ref = _repo_folder(cache_dir, repo_id) / "refs" / branch
    try:
        if not (ref.is_file() and ref.read_text().strip() == commit):
            atomic_write(ref, commit, make_parents=True)  # a torn ref would name a wrong commit
    except OSError:
        pass  # a read-only cache still works by commit; only the branch shortcut is lost


def _repo_folder(cache_dir: Path, repo_id: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")


def _call(hub: HubRef, revision: str, endpoint: str, cache_dir: Path, filename: str | None,
          fn: Callable[[], Any]) -> Any:
    """``fn()``, a request to the Hub, with a failure turned into one line saying why and what to do."""
    try:
        return fn()
    except Exception as exc:
        raise hub_errors.explain(exc, label=hub.label, entry=hub.entry, repo_id=hub.repo_id, filename=filename,
                                 revision=revision, endpoint=endpoint, cache_dir=cache_dir) from None
