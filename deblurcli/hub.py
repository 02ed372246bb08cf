"""Turn what the user typed after ``--model`` into a weights file on disk.

Resolution order (first match wins):

1. nothing: the embedded default model;
2. an existing local file;
3. a model embedded in the package;
4. a registry name the user installed from the authors' checkpoint (``deblur convert FILE
   --install NAME``, see :mod:`deblurcli.installed`);
5. a registry name, or ``hf:OWNER/REPO[/FILE][@REV]``, already in the Hugging Face cache;
6. otherwise a download through huggingface_hub into that same cache.

The cache is the standard Hugging Face one, so steps 1-5 never touch the network: a machine
without internet runs any model that a connected machine fetched (``deblur download NAME``) and
copied over. Offline mode (``HF_HUB_OFFLINE=1``, ``DEBLUR_OFFLINE=1`` or ``offline=True``) stops
before step 6 and says what to do instead; for a registry model that the Hub cannot give, that
is the two steps of installing the authors' checkpoint by hand.

A downloaded file is checked by sha256: against the registry's pin when it has one, else against
the sha256 the Hub itself reports for the file (its ETag, which names the cached blob).
huggingface_hub only checks sizes, so without this a same-size corruption would be cached and
returned forever; a mismatch deletes the cached copy and says so.

huggingface_hub is imported lazily and every setting (endpoint, cache folder, timeout) is passed
to it explicitly, because it freezes its environment-derived settings when first imported.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from . import __version__, installed, settings
from .errors import CheckpointError, ModelNotAvailable, UsageError
from .fsutil import atomic_write, sha256_file
from .models import registry
from .models.registry import ModelEntry
from .progress import DownloadBar

if TYPE_CHECKING:
    from rich.console import Console

Source = Literal["local", "embedded", "installed", "cache", "download"]
#: ``progress(bytes_done, bytes_total_or_None)``, called as a download advances.
ProgressCallback = Callable[[int, "int | None"], None]

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
_REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Hashes already computed in this process, keyed on (path, size, mtime): a batch run resolves the
# same model many times and should not re-read hundreds of megabytes each time.
_SHA_MEMO: dict[tuple[str, int, int], str] = {}
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

    def summary(self) -> str:
        """One line for logs: which model, from where."""
        if self.repo_id:
            rev = f"@{self.revision[:12]}" if self.revision else ""
            return f"{self.name} ({self.source}: {self.repo_id}/{self.filename}{rev})"
        return f"{self.name} ({self.source}: {self.path})"


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


# --------------------------------------------------------------------------------------------- #
# Parsing
# --------------------------------------------------------------------------------------------- #


def parse_hf_ref(ref: str) -> HubRef:
    """``hf:OWNER/REPO[/FILE][@REV]``; a bare ``hf:REPO`` is looked up in the configured org."""
    text = ref.strip()
    if not text.lower().startswith("hf:"):
        raise UsageError(f"{ref!r}: a Hub reference starts with hf: (hf:OWNER/REPO[/FILE][@REV])")
    body = text[3:].strip().strip("/")
    revision: str | None = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
        if not revision:
            raise UsageError(f"{ref!r}: nothing after '@'; give a branch, tag or commit, or drop the '@'")
    parts = [p for p in body.split("/") if p]
    if not parts:
        raise UsageError(f"{ref!r}: expected hf:OWNER/REPO[/FILE][@REV]")
    if len(parts) == 1:
        parts.insert(0, settings.hub_org())
    owner, repo, rest = parts[0], parts[1], parts[2:]
    for part in (owner, repo):
        if not _REPO_PART_RE.match(part):
            raise UsageError(f"{ref!r}: {part!r} is not a valid Hub owner or repo name")
    filename = "/".join(rest) or None
    return HubRef(repo_id=f"{owner}/{repo}", filename=filename, revision=revision, ref=text)


def _entry_ref(entry: ModelEntry) -> HubRef:
    repo_id = entry.hf_repo_id()
    assert repo_id is not None
    return HubRef(repo_id=repo_id, filename=entry.hf_filename, revision=entry.revision, ref=entry.name,
                  entry=entry)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(_WEIGHT_SUFFIXES) or text.startswith((".", "~"))


# --------------------------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------------------------- #


def resolve(
    ref: str | None = None,
    *,
    offline: bool | None = None,
    progress: bool | ProgressCallback = True,
    console: Console | None = None,
    force_download: bool = False,
) -> Resolved:
    """Find (or fetch) the weights ``ref`` names; see the module docstring for the order.

    ``offline=None`` follows the environment. ``progress`` is True for a progress bar on
    ``console`` (stderr by default; a ``Console(quiet=True)`` silences bar and messages alike),
    False for none, or a callable that receives ``(bytes_done, bytes_total)``.
    ``force_download`` fetches a Hub file again even when it is cached.
    """
    off = settings.offline() if offline is None else bool(offline)
    con = console if console is not None else _default_console()
    if ref is None or not str(ref).strip():
        return _resolve_embedded(registry.default_entry(), ref=registry.DEFAULT_NAME)
    text = str(ref).strip()

    path = Path(text).expanduser()
    if not text.lower().startswith("hf:") and path.exists():
        return Resolved(path=path.resolve(), ref=text, entry=None, revision=None, sha256=None, source="local")
    if text.lower().startswith("hf:"):
        return _resolve_hub(parse_hf_ref(text), offline=off, progress=progress, console=con, force=force_download)

    entry = registry.find(text)
    if entry is None:
        if _looks_like_path(text):
            raise CheckpointError(f"{text}: no such weights file; check the path, or name a model (deblur models)")
        raise ModelNotAvailable(registry.unknown_name_message(text), exit_code=2)  # a typo, like a bad option
    if entry.embedded and (registry.embedded_path(entry) is not None or not entry.hf_repo):
        return _resolve_embedded(entry, ref=text)
    inst = installed.find(entry)
    if inst is not None:
        return _resolve_installed(entry, inst, ref=text)
    if not entry.hf_repo:
        raise ModelNotAvailable(f"model {entry.name!r} has no download location; choose another (deblur models)")
    return _resolve_hub(_entry_ref(entry), offline=off, progress=progress, console=con, force=force_download)


def download(
    names: Iterable[str],
    *,
    force: bool = False,
    offline: bool | None = None,
    progress: bool | ProgressCallback = True,
    console: Console | None = None,
) -> list[Resolved]:
    """Put each named model (registry name or ``hf:`` reference) into the cache; stop at the first failure.

    A cached file is not fetched again unless ``force``, which re-downloads it even when it
    looks fine (the way out of a cache that something else damaged).
    """
    wanted = [str(n).strip() for n in names if str(n).strip()]
    if not wanted:
        raise UsageError("name at least one model to download (deblur models lists them)")
    results = []
    for name in wanted:
        if not name.lower().startswith("hf:"):
            entry = registry.find(name)
            if entry is None:
                hint = " (it is a local file: nothing to download)" if Path(name).expanduser().exists() else ""
                raise ModelNotAvailable(registry.unknown_name_message(name) + hint, exit_code=2)
        results.append(resolve(name, offline=offline, progress=progress, console=console, force_download=force))
    return results


def cached_path(entry: ModelEntry) -> Path | None:
    """Where ``entry``'s Hub file sits in the local cache, or None; never uses the network."""
    if not entry.hf_repo or not entry.hf_filename:
        return None
    found = _cache_lookup(settings.hf_cache_dir(), _entry_ref(entry), entry.hf_filename, any_snapshot=True)
    return found[0] if found else None


def where(entry: ModelEntry) -> str:
    """How ``entry`` would be had now: ``embedded``, ``installed``, ``cached``, ``downloadable``,
    ``manual`` or ``missing``.

    ``manual``: a Hub repo is named but this package pins no published file and the user has not
    pointed us at a mirror, so a download would most likely 404; the authors' checkpoint has to be
    fetched and converted by hand (``deblur models info NAME`` gives both steps). Saying so in the
    listing spares the user a failed download to find out.
    """
    if registry.embedded_path(entry) is not None:
        return "embedded"
    if installed.find(entry) is not None:
        return "installed"
    if entry.hf_repo:
        if cached_path(entry) is not None:
            return "cached"
        return "downloadable" if entry.pinned or settings.hub_customised() else "manual"
    return "missing"


# --------------------------------------------------------------------------------------------- #
# Embedded
# --------------------------------------------------------------------------------------------- #


def _resolve_embedded(entry: ModelEntry, *, ref: str) -> Resolved:
    path = registry.embedded_path(entry)
    if path is None:
        folder = registry.weights_dir()
        raise ModelNotAvailable(
            f"the embedded model {entry.name!r} is missing from this installation "
            f"({folder / (entry.embedded or '') if folder else 'no deblurcli._weights package'}); "
            "reinstall deblurcli, or give {model}: a model name (deblur models) or a weights file", names=("model",)
        )
    if entry.sha256:
        _check_embedded(path, entry.sha256)
    return Resolved(path=path, ref=ref, entry=entry, revision=None, sha256=entry.sha256, source="embedded")


@functools.lru_cache(maxsize=8)
def _embedded_digest(path: Path, mtime_ns: int, size: int) -> str:
    return _sha256(path)


def _check_embedded(path: Path, pinned: str) -> None:
    """Refuse embedded weights that differ from the package's pin (hashed once per file version)."""
    st = path.stat()
    digest = _embedded_digest(path, st.st_mtime_ns, st.st_size)
    if digest != pinned.lower():
        raise CheckpointError(
            f"{path}: the embedded weights do not match the sha256 this package pins (got {digest[:16]}…, "
            f"expected {pinned[:16]}…); the file was damaged or replaced: reinstall deblurcli")


def _resolve_installed(entry: ModelEntry, inst: installed.Installed, *, ref: str) -> Resolved:
    digest = _sha256(inst.path)
    installed.verify(inst, entry, digest)
    return Resolved(path=inst.path, ref=ref, entry=entry, revision=None, sha256=digest, source="installed")


# --------------------------------------------------------------------------------------------- #
# Hub
# --------------------------------------------------------------------------------------------- #


@functools.cache
def _hf() -> ModuleType:
    """huggingface_hub, imported on first need.

    Telemetry is switched off before the import: with it on, huggingface_hub fetches an
    "agent harness" list from the endpoint it froze at import time, an extra request the user
    neither asked for nor pointed at their mirror.
    """
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub

    return huggingface_hub


def _storage(cache_dir: Path, repo_id: str) -> Path:
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def _snapshot_of(path: Path) -> str | None:
    """The commit folder a cached snapshot path sits in."""
    parts = Path(path).parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts) and _COMMIT_RE.match(parts[i + 1]):
            return parts[i + 1]
    return None


def _snapshot_dir(cache_dir: Path, repo_id: str, revision: str) -> Path | None:
    """The snapshot folder ``revision`` stands for in the cache (a commit, or a branch's ref)."""
    storage = _storage(cache_dir, repo_id)
    if _COMMIT_RE.match(revision):
        snap = storage / "snapshots" / revision
        return snap if snap.is_dir() else None
    ref = storage / "refs" / revision
    if ref.is_file():
        snap = storage / "snapshots" / ref.read_text().strip()
        return snap if snap.is_dir() else None
    return None


def _newest_snapshot_with(cache_dir: Path, repo_id: str, filename: str | None) -> Path | None:
    """The most recent snapshot holding ``filename`` (any .safetensors if None).

    Used offline when a branch has no ref in the cache: files fetched by commit (by
    ``hf download --revision``, or copied from another machine) leave none, and we would rather
    run the copy we have than refuse. Online, the Hub says what the branch is now instead.
    """
    snaps = _storage(cache_dir, repo_id) / "snapshots"
    if not snaps.is_dir():
        return None
    found = []
    for snap in snaps.iterdir():
        if not (snap.is_dir() and _COMMIT_RE.match(snap.name)):
            continue
        has = (snap / filename).is_file() if filename else bool(_safetensors_in(snap))
        if has:
            found.append((snap.stat().st_mtime, snap))
    return max(found)[1] if found else None


def _safetensors_in(snap: Path) -> list[str]:
    return sorted(
        p.relative_to(snap).as_posix() for p in snap.rglob("*.safetensors") if p.is_file()
    )


def _cache_lookup(cache_dir: Path, hub: HubRef, filename: str, *, any_snapshot: bool) -> tuple[Path, str] | None:
    """(cached file, its commit) for ``filename`` at the wanted revision, without network.

    ``any_snapshot`` accepts the newest cached copy when the branch has no ref; only for
    offline use of a reference that named no revision, where any copy beats none.
    """
    revision = hub.revision or "main"
    hf = _hf()
    hit = hf.try_to_load_from_cache(hub.repo_id, filename, cache_dir=str(cache_dir), revision=revision)
    if isinstance(hit, str) and os.path.isfile(hit):
        path = Path(hit)
    elif not any_snapshot or hub.revision is not None:
        return None
    else:
        snap = _newest_snapshot_with(cache_dir, hub.repo_id, filename)
        if snap is None:
            return None
        path = snap / filename
    commit = _snapshot_of(path)
    return (path, commit) if commit else None


def _pick_single(hub: HubRef, files: list[str], where_: str) -> str:
    weights = [f for f in files if f.endswith(".safetensors")]
    if len(weights) == 1:
        return weights[0]
    if not weights:
        raise ModelNotAvailable(
            f"{hub.ref}: {where_} has no .safetensors file"
            + (f" (files: {', '.join(files[:8])})" if files else "")
            + "; name the file: hf:OWNER/REPO/FILE"
        )
    raise ModelNotAvailable(
        f"{hub.ref}: {where_} has several .safetensors files ({', '.join(weights)}); "
        f"name one: hf:{hub.repo_id}/{weights[0]}"
    )


def _resolve_hub(hub: HubRef, *, offline: bool, progress: bool | ProgressCallback, console: Console,
                 force: bool) -> Resolved:
    cache_dir = settings.hf_cache_dir()
    revision = hub.revision or "main"
    filename = hub.filename

    if not force:
        if filename is None:
            snap = _snapshot_dir(cache_dir, hub.repo_id, revision)
            if snap is None and offline and hub.revision is None:
                snap = _newest_snapshot_with(cache_dir, hub.repo_id, None)
            if snap is not None and _safetensors_in(snap):
                filename = _pick_single(hub, _safetensors_in(snap), f"the cached snapshot {snap}")
        if filename is not None:
            hit = _cache_lookup(cache_dir, hub, filename, any_snapshot=offline)
            if hit is not None:
                path, commit = hit
                digest, warnings = _verify(path, hub, filename, console, just_downloaded=False, offline=offline)
                return Resolved(path=path, ref=hub.ref, entry=hub.entry, revision=commit, sha256=digest,
                                source="cache", repo_id=hub.repo_id, filename=filename, warnings=warnings)
    if offline:
        raise ModelNotAvailable(
            f"{hub.label}: not in the local cache ({cache_dir}) and {settings.offline_reason()} forbids "
            f"downloading it; {_fallback_hint(hub, cache_dir)}"
        )
    return _download(hub, filename, revision, cache_dir=cache_dir, progress=progress, console=console, force=force)


def _download(hub: HubRef, filename: str | None, revision: str, *, cache_dir: Path,
              progress: bool | ProgressCallback, console: Console, force: bool) -> Resolved:
    hf = _hf()
    endpoint = settings.hf_endpoint()
    timeout = settings.hub_timeout()
    commit: str | None = None

    if filename is None:
        _say(console, f"listing the files of {hub.repo_id}@{revision} on {endpoint}…")
        try:
            info = hf.HfApi(endpoint=endpoint, library_name="deblurcli", library_version=__version__).model_info(
                hub.repo_id, revision=revision, timeout=timeout)
        except Exception as exc:
            raise _hub_error(exc, hub, None, revision, endpoint, cache_dir) from None
        files = [s.rfilename for s in (info.siblings or [])]
        filename = _pick_single(hub, files, f"{hub.repo_id}@{revision}")
        commit = info.sha if info.sha and _COMMIT_RE.match(info.sha) else None

    _say(console, f"downloading {hub.label} ({hub.repo_id}/{filename}@{revision}) from {endpoint}…")
    if commit is None:
        commit = _head(hf, hub, filename, revision, endpoint, timeout, cache_dir)

    # Download by commit, never by branch: the file cannot change between the metadata request and
    # the transfer, and the commit is what gets recorded and reported.
    bar = functools.partial(DownloadBar, console=console, show=progress is not False, label=filename,
                            callback=progress if callable(progress) else None)
    try:
        local = hf.hf_hub_download(
            hub.repo_id, filename, revision=commit, cache_dir=str(cache_dir), endpoint=endpoint,
            etag_timeout=timeout, force_download=force, tqdm_class=bar,
            library_name="deblurcli", library_version=__version__,
        )
    except Exception as exc:
        raise _hub_error(exc, hub, filename, revision, endpoint, cache_dir) from None
    if commit != revision:
        # huggingface_hub writes refs/<branch> only when asked for the branch; record it ourselves
        # so later offline runs asking for the branch find this commit.
        _write_ref(cache_dir, hub.repo_id, revision, commit)
    path = Path(local)
    digest, warnings = _verify(path, hub, filename, console, just_downloaded=True, offline=False)
    _say(console, f"saved {hub.repo_id}/{filename} ({_human(path.stat().st_size)}) to {path}")
    return Resolved(path=path, ref=hub.ref, entry=hub.entry, revision=commit, sha256=digest, source="download",
                    repo_id=hub.repo_id, filename=filename, warnings=warnings)


def _head(hf: ModuleType, hub: HubRef, filename: str, revision: str, endpoint: str, timeout: float,
          cache_dir: Path) -> str:
    """The commit ``revision`` points to, from one metadata request without retries.

    huggingface_hub's own download retries a failing server for tens of seconds before giving
    up; asking once first turns a dead endpoint into an immediate, explained error.
    """
    url = hf.hf_hub_url(hub.repo_id, filename, revision=revision, endpoint=endpoint)
    try:
        meta = hf.get_hf_file_metadata(url, timeout=timeout, endpoint=endpoint,
                                       library_name="deblurcli", library_version=__version__)
    except Exception as exc:
        raise _hub_error(exc, hub, filename, revision, endpoint, cache_dir) from None
    if not meta.commit_hash:
        raise ModelNotAvailable(
            f"{endpoint} did not answer like a Hugging Face Hub (no X-Repo-Commit header for "
            f"{hub.repo_id}/{filename}); check HF_ENDPOINT"
        )
    return str(meta.commit_hash)


def _write_ref(cache_dir: Path, repo_id: str, revision: str, commit: str) -> None:
    ref = _storage(cache_dir, repo_id) / "refs" / revision
    try:
        if ref.is_file() and ref.read_text().strip() == commit:
            return
        atomic_write(ref, commit, make_parents=True)  # a torn ref would name a wrong commit
    except OSError:
        pass  # a read-only cache still works by commit; only the branch shortcut is lost


# --------------------------------------------------------------------------------------------- #
# Verification
# --------------------------------------------------------------------------------------------- #


def _sha256(path: Path) -> str:
    return sha256_file(path, memo=True)


def _verify(path: Path, hub: HubRef, filename: str, console: Console, *, just_downloaded: bool,
            offline: bool) -> tuple[str | None, list[str]]:
    """Check the file against the registry pin, else the Hub's own sha256; evict it if wrong."""
    blob = Path(os.path.realpath(path))
    pinned = hub.entry.sha256.lower() if hub.entry is not None and hub.entry.sha256 else None
    served = blob.name if _SHA256_RE.match(blob.name) else None
    warnings: list[str] = []
    if hub.entry is not None and pinned is None:
        checked = "checked only against the sha256 the Hub reports" if served else "not checked: no sha256 known"
        warnings.append(f"model {hub.entry.name!r} is not checksum-pinned in deblurcli's registry ({checked})")
    if pinned is None and served is None:
        _warn(console, warnings, key=str(blob))
        return None, warnings
    digest = _sha256(blob)
    expected, against = (pinned, "the registry's pinned sha256") if pinned else (served, "the Hub's sha256")
    if digest != expected:
        left = _evict(path)
        what = "downloaded" if just_downloaded else "cached"
        again = ("on a connected machine run `deblur download " + hub.label + "`" if offline
                 else "run the command again to download it afresh")
        removed = (f"could not delete it ({', '.join(left)}): delete those by hand" if left
                   else "deleted it from the cache")
        raise ModelNotAvailable(
            f"{hub.label}: the {what} {hub.repo_id}/{filename} is corrupt (sha256 {digest[:16]}…, expected "
            f"{expected[:16]}… per {against}); {removed}; {again}"
        )
    _warn(console, warnings, key=str(blob))
    return digest, warnings


def _evict(path: Path) -> list[str]:
    """Remove a cached file, its snapshot link and the blob it points to; return what stayed."""
    blob = Path(os.path.realpath(path))
    left = []
    for p in (Path(path), blob):
        try:
            p.unlink(missing_ok=True)
        except OSError:
            left.append(str(p))
    return left


# --------------------------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------------------------- #


def _network_errors() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        cls = getattr(mod, name, None)
        if isinstance(cls, type):
            classes.append(cls)
    return tuple(classes)


def by_hand_steps(entry: ModelEntry | None) -> str | None:
    """The way to a registry model the Hub cannot give: the authors' page, then one convert command."""
    if entry is None or not entry.source_url or not entry.convert_command:
        return None
    return (f"install it from the authors' checkpoint in two steps: 1) download {entry.name}'s checkpoint from "
            f"{entry.source_url}; 2) run `{entry.convert_command}`")


def _fallback_hint(hub: HubRef, cache_dir: Path) -> str:
    steps = by_hand_steps(hub.entry)
    if steps:
        return steps
    return f"on a connected machine run `deblur download {hub.label}` and copy its Hugging Face cache into {cache_dir}"


def _org_source() -> str:
    """Which setting chose the Hub organisation, for a not-found message that names it."""
    if os.environ.get("DEBLUR_HUB_ORG", "").strip():
        return "DEBLUR_HUB_ORG"
    if settings.load_config().get("hub_org"):
        return f"hub_org in {settings.config_path()}"
    return "the default"


def _hub_error(exc: Exception, hub: HubRef, filename: str | None, revision: str, endpoint: str,
               cache_dir: Path) -> ModelNotAvailable:
    """One line saying why the Hub could not give us the file, and what to do about it."""
    from huggingface_hub import errors as hf_errors

    what = f"{hub.repo_id}/{filename}" if filename else hub.repo_id
    label = hub.label
    if isinstance(exc, hf_errors.GatedRepoError):
        return ModelNotAvailable(f"{label}: {hub.repo_id} on {endpoint} is gated or private; log in with "
                                 "`hf auth login` (or set HF_TOKEN) with an account that has access")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        msg = f"{label}: repository {hub.repo_id} not found on {endpoint}"
        steps = by_hand_steps(hub.entry)
        if steps:
            msg += f" (Hub organisation {settings.hub_org()!r}, from {_org_source()}); {steps}"
        elif hub.entry is not None:
            msg += (f" (organisation {settings.hub_org()!r}: set DEBLUR_HUB_ORG or hub_org in "
                    f"{settings.config_path()} to one that hosts it)")
        else:
            msg += "; check the name, and HF_ENDPOINT"
        return ModelNotAvailable(msg)
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return ModelNotAvailable(f"{label}: revision {revision!r} not found in {hub.repo_id} on {endpoint}; "
                                 "check the branch, tag or commit after '@'")
    if isinstance(exc, hf_errors.EntryNotFoundError):
        steps = by_hand_steps(hub.entry)
        if steps:
            return ModelNotAvailable(f"{label}: file {filename!r} not found in {hub.repo_id}@{revision} on "
                                     f"{endpoint}; {steps}")
        return ModelNotAvailable(f"{label}: file {filename!r} not found in {hub.repo_id}@{revision} on {endpoint}"
                                 f"{_listing_hint(hub, revision, endpoint)}")
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return ModelNotAvailable(f"{label}: huggingface_hub is in offline mode (HF_HUB_OFFLINE) and {what} "
                                 f"is not cached; {_fallback_hint(hub, cache_dir)}")
    if isinstance(exc, _network_errors()):
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        return ModelNotAvailable(f"{label}: could not reach {endpoint} to fetch {what} ({reason}); check the "
                                 f"connection or HF_ENDPOINT, or {_fallback_hint(hub, cache_dir)}")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return ModelNotAvailable(f"{label}: {endpoint} answered HTTP {status} for {what}; try again later, "
                                 f"or {_fallback_hint(hub, cache_dir)}")
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return ModelNotAvailable(f"{label}: the download of {what} was cut short (the file arrived incomplete "
                                 "and was discarded); run the command again")
    metadata_error = getattr(hf_errors, "FileMetadataError", None)
    if metadata_error is not None and isinstance(exc, metadata_error):
        return ModelNotAvailable(f"{label}: {endpoint} did not answer like a Hugging Face Hub for {what} "
                                 f"({str(exc)[:120]}); check HF_ENDPOINT")
    if isinstance(exc, OSError):
        return ModelNotAvailable(f"{label}: could not store {what} in the cache {cache_dir} "
                                 f"({exc.strerror or exc}); check free space and permissions")
    raise exc


def _listing_hint(hub: HubRef, revision: str, endpoint: str) -> str:
    """The repo's .safetensors files, best effort, so a wrong file name comes with the right ones."""
    try:
        info = _hf().HfApi(endpoint=endpoint).model_info(hub.repo_id, revision=revision,
                                                          timeout=settings.hub_timeout())
    except Exception:
        return ""
    names = [s.rfilename for s in (info.siblings or []) if s.rfilename.endswith(".safetensors")]
    return f"; it has: {', '.join(names)}" if names else "; it has no .safetensors file"


# --------------------------------------------------------------------------------------------- #
# Console output
# --------------------------------------------------------------------------------------------- #


def _default_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def _say(console: Console, message: str) -> None:
    from rich.text import Text

    console.print(Text(message, style="dim"))


def _warn(console: Console, warnings: list[str], *, key: str) -> None:
    from rich.text import Text

    for w in warnings:
        if (key, w) in _WARNED:
            continue
        _WARNED.add((key, w))
        console.print(Text("warning: ", style="yellow") + Text(w))


def _human(n: int | None) -> str:
    if n is None:
        return "? B"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):  # decimal units, as rich's download column shows them
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
