"""Folder-to-folder restoration that survives interruption, bad files and clusters.

The output folder holds a journal (``.deblur-journal.jsonl``): one JSON line per finished file
with the input's relative path and content hash, the model's weights hash and the settings that
change pixels, and the status. A rerun skips exactly the files already done with the same model
and settings and the same input bytes, so an interrupted job resumes where it stopped and a
repeated one does nothing. ``shard=(i, n)`` takes the i-th of every n files (of the sorted list),
counting from 1 as job arrays do (``--array=1-N`` gives ``1/N`` ... ``N/N``), so a job array
splits one folder across machines with no coordinator.

Reading the next image and writing the last result happen on background threads while the model
runs; one bad file is recorded and the batch goes on.

Faults: every file ends in the summary as ok, skipped or failed with its reason, whatever
happens; after Ctrl-C, the files not reached are pending (`BatchInterrupted` carries the
summary). A write that fails (full disk, permissions) fails that file and is retried by the next
run without ``--retry-failed`` (it says nothing about the input). Runs into the same folder at
the same time share the journal: lines are appended whole (``fsutil.append_line``), a ``started``
line claims a file, and a file claimed by another live run (its ``RunLock`` still held) is
reported as in progress, not failed. Temporary files and lock files of dead runs are removed
when the next run starts.

Quality and ``only_blurry``: each photo's edge width (`deblurcli.quality`, a no-reference
sharpness measure) is measured before restoration on the reader thread and after it on the
writer thread, and both go into the report. With ``only_blurry`` a photo judged sharp
(`deblurcli.inspect`'s verdict) is not restored and gets no output: the output folder holds only
what the model changed, and the originals stay where they were, byte for byte. It is recorded in
the journal as ``sharp`` with its score and threshold, so a rerun with the same threshold skips it
without decoding it, and a rerun without ``only_blurry`` (or with another threshold) judges or
restores it. An output that measures less sharp than its input is reported as ``worse``; with
``keep_original_if_worse`` the input itself is written in its place (its bytes copied when the
output format is the input's, else its pixels re-encoded), atomically.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .api import Deblurrer, RestoreResult
from .errors import DeblurError, OptionError, OutputError, UsageError
from .fsutil import (
    STALE_AFTER_S,
    append_line,
    atomic_write,
    host_tag,
    is_disk_full,
    pid_alive,
    remove_stale_parts,
    sha256_file,
    unwritable_folder,
)
from .imageio import (
    IMAGE_EXTENSIONS,
    Image,
    extension_for,
    output_layout,
    read_image,
    unknown_format_error,
    write_image,
)
from .imageio.formats import format_for_path
from .options import output_settings, upgrade_settings
from .quality import EdgeWidth, edge_width, sharp_note
from .video import VIDEO_EXTENSIONS, VideoOptions, container_for, is_video, restore_video

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

JOURNAL = ".deblur-journal.jsonl"
LOCK_PREFIX, LOCK_SUFFIX = ".deblur-run.", ".lock"
#: A lock file being made (created and locked, not yet renamed into place).
NEW_SUFFIX = ".new"
IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # the one list, from deblurcli.imageio.formats
#: What a folder listing picks up without --glob: photos and videos.
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, *VIDEO_EXTENSIONS)


_DECIDES = {"decides_output": True}  # part of the resume key, with the Deblurrer's own settings


#: `deblurcli.inspect.DEFAULT_THRESHOLD`, restated: batch imports nothing from inspect (which lists
#: folders with batch's own listing), so the two modules form no cycle; tests/test_batch.py checks they agree.
DEFAULT_BLUR_THRESHOLD = 1.9

#: Judges one video for ``only_blurry``: ``(path, threshold=...)`` -> an object with ``blurred``,
#: ``edge_px`` and ``sharpness`` (what `deblurcli.inspect.inspect_video` returns).
VideoJudge = Callable[..., Any]


@dataclass
class BatchOptions:
    """What to process and how to write it; how to restore is the `Deblurrer`'s (incl. strength)."""

    recursive: bool = False
    glob: str | None = None
    overwrite: bool = False
    retry_failed: bool = False
    #: (i, n): the i-th of every n files, 1 <= i <= n (1-based, as job arrays number their tasks).
    shard: tuple[int, int] = (1, 1)
    suffix: str = field(default="", metadata=_DECIDES)
    #: Output extension (without dot); None keeps the input's.
    format: str | None = field(default=None, metadata=_DECIDES)
    quality: int = field(default=95, metadata=_DECIDES)
    allow_large: bool = False
    #: How videos are written (codec, CRF, lossless); part of a video's resume key only.
    video: VideoOptions | None = None
    #: Restore only the files judged blurred; the others are reported as skipped, with no output.
    only_blurry: bool = False
    #: Edge width (px) above which a file counts as blurred for ``only_blurry``.
    blur_threshold: float = DEFAULT_BLUR_THRESHOLD
    #: Where the output measures less sharp than its input, write the input instead.
    keep_original_if_worse: bool = False


#: An output counts as worse than its input when its edge width is more than this fraction wider:
#: below that, the difference is within what the measure moves between near-identical pictures.
WORSE_MARGIN = 0.05


@dataclass(frozen=True)
class _Sharp:
    """A file judged sharp under ``only_blurry``: nothing to restore (a video: its median sampled frame)."""

    edge_px: float
    sharpness: float
    blur_px: float  # what was compared with the threshold (`EdgeWidth.blur_px`)


@dataclass(frozen=True)
class _Measured:
    """A decoded photo with its edge width before restoration (None when too small to measure)."""

    image: Image
    before: EdgeWidth | None


@dataclass
class BatchSummary:
    results: list[RestoreResult] = field(default_factory=list)
    seconds: float = 0.0
    #: Stopped by Ctrl-C: the files not reached are ``pending``.
    interrupted: bool = False
    #: Per input: sharpness and edge width before/after, ``worse``, ``kept_original``, ``judged_sharp``.
    quality: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def worse(self) -> list[str]:
        """Inputs whose output measured less sharp than the input."""
        return [r.input for r in self.results if self.quality.get(r.input, {}).get("worse")]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def table(self) -> tuple[list[str], list[str]]:
        """The summary table's columns and its one row: ``not done`` appears only after a Ctrl-C."""
        cols = ["done", "skipped", "failed", *(["not done"] if self.interrupted else []), "seconds"]
        cells = [str(self.count("ok")), str(self.count("skipped")), str(self.failed),
                 *([str(self.count("pending"))] if self.interrupted else []), f"{self.seconds:.1f}"]
        return cols, cells

    def worse_note(self) -> str:
        """The note under the summary: which outputs measure less sharp, and what was or can be done."""
        all_kept = all(self.quality[name].get("kept_original") for name in self.worse)
        kept = "the original written instead" if all_kept else "--keep-original-if-worse keeps the original " \
            "for such files"
        return (f"{len(self.worse)} output(s) measure less sharp than their input: "
                f"{', '.join(self.worse[:5])}{', ...' if len(self.worse) > 5 else ''} ({kept})")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.count("ok"), "skipped": self.count("skipped"), "failed": self.failed,
            "pending": self.count("pending"), "interrupted": self.interrupted,
            "judged_sharp": sum(bool(q.get("judged_sharp")) for q in self.quality.values()),
            "worse": len(self.worse),
            "kept_original": sum(bool(q.get("kept_original")) for q in self.quality.values()),
            "seconds": round(self.seconds, 3),
            "quality_measure": "edge width in px (deblurcli.quality); sharpness = 1 / edge width",
            "files": [r.as_dict() | self.quality.get(r.input, {}) for r in self.results],
        }


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_batch`, with the summary so far: what finished, and every file not
    reached as ``pending``. Still a KeyboardInterrupt for callers that only stop; the CLI writes
    the ``--report`` from it, so a script that stops a long batch learns exactly what is left.
    """

    def __init__(self, summary: BatchSummary) -> None:
        super().__init__("batch interrupted")
        self.summary = summary


SHARD_FORM = "I/N with 1 <= I <= N, e.g. 1/4 ... 4/4"


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N), with 1 <= I <= N: shards count from 1, as ``--array=1-N`` numbers tasks.

    ``0/N`` is refused rather than read as the first shard: silently accepting both numberings
    would let a 0-based array run shard 1 twice and never run one of them.
    """
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise OptionError("shard", f"expected {SHARD_FORM}", value=text) from None
    check_shard((i, n), text)
    return i, n


def check_shard(shard: tuple[int, int], shown: object = None) -> None:
    """Refuse a shard outside 1..N, saying that shards count from 1 when that is the mistake."""
    i, n = shard
    value = shard if shown is None else shown
    if n < 1:
        raise OptionError("shard", f"N must be at least 1 ({SHARD_FORM})", value=value)
    if i == 0:
        raise OptionError("shard", f"shards count from 1 (1/{n} ... {n}/{n}); for a job array numbered from 0 "
                          f"give I+1, e.g. $((SLURM_ARRAY_TASK_ID + 1))/{n}", value=value)
    if not 1 <= i <= n:
        raise OptionError("shard", f"need {SHARD_FORM}", value=value)


def list_inputs(in_dir: Path, opts: BatchOptions, out_dir: Path | None = None) -> list[Path]:
    """The images to process, sorted (so every shard sees the same order), relative to in_dir.

    The list depends only on the input files, never on what a run has written so far, so that
    shards started at different times still split the same list: results written into the
    input folder (``--suffix`` with OUT_DIR = IN_DIR, or OUT_DIR inside IN_DIR) are recognised
    by their names and locations, not by the journal.
    """
    if not in_dir.exists():
        raise UsageError(f"{in_dir}: no such folder; check the path")
    if not in_dir.is_dir():
        raise UsageError(f"{in_dir}: is a file, not a folder; use 'deblur run' for single files")
    walker = in_dir.rglob("*") if opts.recursive else in_dir.glob("*")
    in_resolved = in_dir.resolve()
    out_resolved = out_dir.resolve() if out_dir is not None else None
    nested = out_resolved is not None and out_resolved != in_resolved
    pattern = opts.glob.lower() if opts.glob else None
    files = []
    for p in walker:
        rel = p.relative_to(in_dir)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue  # hidden files, our journal and half-written temporary files
        if nested and out_resolved in p.resolve().parents:
            continue  # output folder inside the input folder: never re-process our own results
        if pattern:  # photographers' cameras write .JPG: '*.jpg' should find them
            if not (fnmatch.fnmatchcase(p.name.lower(), pattern)
                    or fnmatch.fnmatchcase(rel.as_posix().lower(), pattern)):
                continue
        elif p.suffix.lower() not in INPUT_SUFFIXES:
            continue
        files.append(rel)
    if out_resolved == in_resolved:
        # Results beside their inputs: drop every file that is the output of another input.
        outputs = {output_path(Path(), r, opts).as_posix() for r in files}
        files = [r for r in files if r.as_posix() not in outputs]
    if not files:
        raise _nothing_found(in_dir, opts)
    files.sort(key=lambda r: r.as_posix())
    check_shard(opts.shard)
    i, n = opts.shard
    return files[i - 1::n]


def _nothing_found(in_dir: Path, opts: BatchOptions) -> UsageError:
    """The error for a folder with nothing to do, with the likely fix: a batch that "succeeds" with a
    table of zeros hides a wrong path or a forgotten --recursive from the script that ran it.
    """
    what = f"no file matches {{glob}} {opts.glob!r}" if opts.glob else "no images or videos found"
    if not opts.recursive and _has_inputs_below(in_dir, opts):
        return UsageError(f"{in_dir}: {what}, but its subfolders have some; add {{recursive}}",
                          names=("glob", "recursive"))
    if opts.glob:
        return UsageError(f"{in_dir}: {what}; check the pattern (it matches names or paths below the folder)",
                          names=("glob",))
    return UsageError(f"{in_dir}: {what}; check the folder, or pick other files with {{glob}}", names=("glob",))


def _has_inputs_below(in_dir: Path, opts: BatchOptions) -> bool:
    """Whether a recursive listing would find something (stops at the first hit)."""
    pattern = opts.glob.lower() if opts.glob else None
    for p in in_dir.rglob("*"):
        rel = p.relative_to(in_dir)
        if len(rel.parts) < 2 or any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if pattern:
            if fnmatch.fnmatchcase(p.name.lower(), pattern) or fnmatch.fnmatchcase(rel.as_posix().lower(), pattern):
                return True
        elif p.suffix.lower() in INPUT_SUFFIXES:
            return True
    return False


def prepare(in_dir: Path, out_dir: Path, opts: BatchOptions, report: Path | None = None) -> list[Path]:
    """Every check on the folders (and the report path) that can fail, before a model is loaded."""
    bad_format = unknown_format_error(opts.format)
    if bad_format:
        raise UsageError(bad_format)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is a file; give a folder for the outputs")
    blocker = next((a for a in out_dir.parents if a.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UsageError(f"{out_dir}: cannot create it, {blocker} is a file, not a folder")
    refused = unwritable_folder(out_dir)
    if refused is not None:  # once, here, rather than as the reason of every file's failure
        raise OutputError(f"{out_dir}: cannot write there ({refused}); choose a writable folder")
    if in_dir.exists() and in_dir.resolve() == out_dir.resolve() and not opts.suffix:
        raise UsageError(f"{out_dir}: output folder is the input folder; choose another or add a suffix to the names",
                         hint=("suffix", "_deblurred"))
    if report is not None and str(report) != "-":
        if report.is_dir():
            raise OptionError("report", "is a folder; give a file name such as report.json", value=str(report))
        if not report.parent.is_dir():
            raise OptionError("report", f"folder {report.parent} does not exist", value=str(report))
    files = list_inputs(in_dir, opts, out_dir)
    outputs: dict[str, Path] = {}
    for rel in files:
        key = output_path(out_dir, rel, opts).as_posix()
        if key in outputs:
            raise UsageError(f"{in_dir / rel} and {in_dir / outputs[key]} would both be written to "
                             f"{output_path(out_dir, rel, opts)}; drop {{format}} or rename one", names=("format",))
        outputs[key] = rel
    return files


def output_path(out_dir: Path, rel: Path, opts: BatchOptions) -> Path:
    """Where the result of ``rel`` goes: the same relative place, with the suffix and format."""
    video = rel.suffix.lower() in VIDEO_EXTENSIONS  # --format is a photo format: a video stays a video
    if video:  # in its own container, unless the codec asked for cannot go there
        suffix = container_for(rel.suffix, opts.video or VideoOptions())
    else:
        suffix = extension_for(opts.format) if opts.format else rel.suffix  # as `run` names it
    return out_dir / rel.parent / f"{rel.stem}{opts.suffix}{suffix}"


def file_hash(path: Path) -> str:
    return sha256_file(path)


class RunLock:
    """This run's presence in the output folder, so another run can tell it is alive.

    A lock file ``.deblur-run.<run id>.lock`` held with ``flock`` for the run's lifetime: the
    kernel drops the lock when the process dies however it dies (SIGKILL, power cut on the
    writer's side of a shared folder), so "can I take this lock?" answers "is that run gone?"
    without trusting pids across machines. The run id (host tag, pid, start time, a counter)
    goes into the journal's ``started`` records.

    The file is created and locked under a temporary name and only then renamed into place, so
    a lock file that can be seen is already held by its live run: whoever finds one free may
    remove it at once. (Creating it in place left a moment when a starting run's file looked
    dead, which an age rule papered over, and that rule kept a killed run's file for good when
    the next run came within a minute.)
    """

    _count = 0

    def __init__(self, out_dir: Path) -> None:
        RunLock._count += 1
        self.run_id = f"{host_tag()}-{os.getpid()}-{time.time_ns() // 1_000_000}-{RunLock._count}"
        self.path = _lock_path(out_dir, self.run_id)
        making = self.path.with_name(self.path.name + NEW_SUFFIX)
        self._fd: int | None = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else knows this name yet
                except OSError:
                    pass  # a file system without locks (some network mounts): others fall back to the pid
            os.replace(making, self.path)  # the lock belongs to the open file, so it survives the rename
        except BaseException:
            os.close(self._fd)
            self._fd = None
            making.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)  # releases the lock
        self._fd = None


def _lock_path(out_dir: Path, run_id: str) -> Path:
    return out_dir / f"{LOCK_PREFIX}{run_id}{LOCK_SUFFIX}"


def run_is_live(out_dir: Path, run_id: str) -> bool:
    """Whether the run that wrote ``run_id`` into this folder's journal is still running."""
    path = _lock_path(out_dir, run_id)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False  # it removed its lock file on exit
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # held: that run is alive
            except OSError:
                pass  # no locks on this file system: judge by the pid below
            else:
                fcntl.flock(fd, fcntl.LOCK_UN)
                return False
        # No flock here (Windows, some network mounts): the pid, checkable on this machine only.
        host, pid = run_id.split("-")[:2]
        return host != host_tag() or pid_alive(int(pid))
    finally:
        os.close(fd)


def remove_stale_files(out_dir: Path) -> int:
    """Temporary outputs and lock files of dead runs, removed at the start of a run into ``out_dir``."""
    removed = len(remove_stale_parts(out_dir, recursive=True))
    try:
        names = os.listdir(out_dir)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(LOCK_PREFIX):
            continue
        path = out_dir / name
        if name.endswith(LOCK_SUFFIX):
            # Visible lock files are held from the moment they appear: a free one is a dead run's.
            if not run_is_live(out_dir, name[len(LOCK_PREFIX):-len(LOCK_SUFFIX)]):
                path.unlink(missing_ok=True)
                removed += 1
        elif name.endswith(LOCK_SUFFIX + NEW_SUFFIX) and _unfinished_lock_is_stale(path):
            path.unlink(missing_ok=True)  # a run killed in the instant between creating and renaming
            removed += 1
    return removed


def _unfinished_lock_is_stale(path: Path) -> bool:
    """A lock file still under its temporary name: stale once its process is gone (or, from another
    machine, untouched for as long as `fsutil` allows other temporary files)."""
    run_id = path.name[len(LOCK_PREFIX):-len(LOCK_SUFFIX + NEW_SUFFIX)]
    host, _, rest = run_id.partition("-")
    pid = rest.partition("-")[0]
    if host == host_tag() and pid.isdigit():
        return int(pid) != os.getpid() and not pid_alive(int(pid))
    try:
        return time.time() - path.stat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


class Journal:
    """Append-only JSON lines shared by every run into the folder; the last line for a file wins.

    Lines are appended whole (one ``O_APPEND`` write each), so runs that overlap in time (two
    shells, a job array) never corrupt each other's records. The journal is re-read
    incrementally before each file, so a run sees what the others finished meanwhile. A torn
    last line (a crash or a full disk) is skipped with one warning, and the next record starts on
    a new line.

    ``started`` records claim a file: among the claims since the file's last finished record,
    the first one made by a live run owns it; every other run reports it as in progress.
    """

    def __init__(self, path: Path, run_id: str = "", on_note: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.run_id = run_id
        self.entries: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, list[str]] = {}
        self._offset = 0
        self._bad = 0
        self._note = on_note or (lambda msg: warnings.warn(msg, stacklevel=2))
        self._lock = threading.Lock()
        self.refresh(first=True)

    def refresh(self, *, first: bool = False) -> None:
        """Read the lines appended since the last look (only whole lines: a writer may be mid-line)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        bad = 0
        with self._lock:
            for raw in data[:end].split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    bad += 1  # a line a crash or a full disk cut, since closed by a later record
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("input"), str):
                    self._take(rec)
            self._offset += end
        if first and data[end:].strip():
            self._bad += 1  # once closed by the next record it reads as a bad line: already said
            self._note(f"{self.path}: its last line was cut off (a crash or a full disk); ignoring it, "
                       "the file it was about is checked again")
        elif bad and not self._bad:
            self._note(f"{self.path}: skipped {bad} unreadable line(s) (cut off by a crash or a full disk)")
        self._bad += bad

    def _take(self, rec: dict[str, Any]) -> None:
        rel = rec["input"]
        if rec.get("status") == "released":  # a run that lost the claim to an earlier one withdraws it
            claims = self.claims.get(rel, [])
            if rec.get("run") in claims:
                claims.remove(rec["run"])
            return
        self.entries[rel] = rec
        if rec.get("status") == "started":
            self.claims.setdefault(rel, []).append(str(rec.get("run", "")))
        else:
            self.claims.pop(rel, None)

    def lookup(self, rel: str, content_hash: str, settings: dict[str, Any], out_dir: Path) -> dict[str, Any] | None:
        """The finished record for these exact input bytes and settings, or None if the work is still to do.

        A success whose output has since been deleted is work still to do.
        """
        with self._lock:
            rec = self.entries.get(rel)
        if rec is None or rec.get("sha256") != content_hash or not isinstance(rec.get("settings"), dict):
            return None
        recorded = upgrade_settings(rec["settings"])
        if "quality" not in settings:  # a lossless output: earlier versions recorded --quality for it too
            recorded.pop("quality", None)
        if recorded != settings:
            return None
        if rec.get("status") == "ok":
            return rec if (out_dir / str(rec.get("output", ""))).is_file() else None
        if rec.get("status") == "sharp":  # judged sharp: the caller decides whether that still holds
            return rec
        return rec if rec.get("status") == "failed" and not rec.get("transient") else None

    def owner(self, rel: str, out_dir: Path) -> str | None:
        """The live run that owns ``rel`` by the earliest claim, or None (nobody is working on it)."""
        with self._lock:
            claims = list(self.claims.get(rel, ()))
        for run_id in claims:
            if run_id and (run_id == self.run_id or run_is_live(out_dir, run_id)):
                return run_id
        return None

    def add(self, rec: dict[str, Any]) -> None:
        """Append one record (raises OSError, e.g. on a full disk: the caller decides what it means)."""
        rec = {**rec, "run": self.run_id} if self.run_id else rec
        append_line(self.path, json.dumps(rec, sort_keys=True))
        if rec.get("status") != "released":
            with self._lock:
                self.entries[rec["input"]] = rec

    def release(self, rel: str) -> None:
        """Withdraw this run's claim on ``rel`` (best effort: a dead run's claim is ignored anyway)."""
        try:
            self.add({"input": rel, "status": "released"})
        except OSError:
            pass


def run_batch(
    deblurrer: Deblurrer, in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], opts: BatchOptions,
    *, on_result: Callable[[RestoreResult, int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    spell_option: Callable[[str], str] = str,
    judge_video: VideoJudge | None = None,
) -> BatchSummary:
    """Restore every matching image of ``in_dir`` into ``out_dir``; see the module docstring.

    ``spell_option`` names options in the per-file errors (``overwrite``; the CLI passes
    `deblurcli.options.flag_for` for ``--overwrite``). ``judge_video`` judges a video's blur for
    ``opts.only_blurry`` (``deblur batch`` passes `deblurcli.inspect`'s); without it such a video fails
    with a message saying so, while photos are judged here.

    Every listed file ends in the summary as ok, skipped or failed with its reason, whatever
    happens (a full disk fails each file it hits; nothing is dropped silently).
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = prepare(in_dir, out_dir, opts)
    summary = BatchSummary()
    t_start = time.perf_counter()
    total = len(files)
    if on_start:
        on_start(total)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(out_dir)
    except OSError as exc:
        # Nothing can be recorded or written: one error for the folder, not one per file.
        raise OutputError(f"{out_dir}: cannot write there ({_why(exc)}); choose a writable folder") from None
    try:
        remove_stale_files(out_dir)
        journal = Journal(out_dir / JOURNAL, lock.run_id, on_note)
        job = _Job(deblurrer, in_dir, out_dir, opts, journal, summary, on_result, on_tile, spell_option, len(files))
        job.judge_video = judge_video
        job.run(files)
    except KeyboardInterrupt:
        # the job has let the file being written finish and be recorded; the rest is pending.
        summary.interrupted = True
        reached = {r.input for r in summary.results}
        for rel in files:
            if rel.as_posix() not in reached:
                summary.results.append(RestoreResult(
                    input=rel.as_posix(), output=str(output_path(out_dir, rel, opts)), status="pending",
                    notes=["interrupted before it was done; the same command again continues"]))
        summary.seconds = time.perf_counter() - t_start
        raise BatchInterrupted(summary) from None
    finally:
        lock.close()
    summary.seconds = time.perf_counter() - t_start
    return summary


class _Job:
    """One run over the listed files: what every step shares (journal, summary, resume keys, threads).

    The steps are methods, not closures inside one long function, so that each can be read, and
    changed, on its own; the reader and writer threads call `load`, `write`, `record` and
    `record_sharp`, the main thread `step` and `restore`.
    """

    def __init__(self, deblurrer: Deblurrer, in_dir: Path, out_dir: Path, opts: BatchOptions, journal: Journal,
                 summary: BatchSummary, on_result: Callable[[RestoreResult, int, int], None] | None,
                 on_tile: Callable[[int, int], None] | None, spell: Callable[[str], str], total: int) -> None:
        self.deblurrer, self.in_dir, self.out_dir, self.opts = deblurrer, in_dir, out_dir, opts
        self.journal, self.summary, self.on_result, self.on_tile = journal, summary, on_result, on_tile
        self.spell, self.total = spell, total
        self.settings = deblurrer.settings_key() | output_settings(opts)
        self.vopts = opts.video or VideoOptions()
        # Kept apart so that adding video options never makes a finished photo batch redo its photos.
        self.video_settings = _without_quality(self.settings) | {"video": output_settings(self.vopts)}
        self.writer: ThreadPoolExecutor  # started by `run`
        self.judge_video: VideoJudge | None = None
        self.pending: list[Future[Any]] = []

    def key_for(self, rel: Path, video: bool) -> dict[str, Any]:
        """The resume key of one file: --quality belongs to it only where the writer uses it."""
        if video:
            return self.video_settings
        if _uses_quality(output_path(self.out_dir, rel, self.opts), self.opts.format):
            return self.settings
        return _without_quality(self.settings)

    def still_done(self, rec: dict[str, Any]) -> bool:
        """Whether a finished journal record means nothing is left to do for its file in this run."""
        status = rec.get("status")
        if status == "failed":
            return not self.opts.retry_failed
        if status == "sharp":  # judged sharp: holds only for a run that skips sharp files the same way
            return self.opts.only_blurry and rec.get("blur_threshold") == self.opts.blur_threshold
        # written as restored, measured worse, and now the original is wanted for such files
        return not (rec.get("worse") and self.opts.keep_original_if_worse and not rec.get("kept_original"))

    def load(self, rel: Path) -> tuple[Path, str, _Measured | _Sharp | DeblurError | dict[str, Any] | Path]:
        """Hash, decode and measure on the reader thread; a finished record instead means: nothing to do.

        A video is only recognised here (a Path back); it is decoded frame by frame later.
        """
        src = self.in_dir / rel
        try:
            digest = file_hash(src)
        except OSError as exc:
            return rel, "", DeblurError(f"{src}: cannot read ({exc.strerror})")
        video = is_video(src)
        if not self.opts.overwrite:
            rec = self.journal.lookup(rel.as_posix(), digest, self.key_for(rel, video), self.out_dir)
            if rec is not None and self.still_done(rec):
                return rel, digest, rec
        if video:
            if self.opts.only_blurry:
                try:
                    if self.judge_video is None:
                        raise UsageError(f"{src}: only_blurry needs run_batch(judge_video=...) to judge a video "
                                         "(deblurcli.inspect.inspect_video, as deblur batch passes)")
                    judged = self.judge_video(src, threshold=self.opts.blur_threshold)
                except DeblurError as exc:
                    return rel, digest, exc
                if not judged.blurred:
                    return rel, digest, _Sharp(judged.edge_px, judged.sharpness, judged.blur_px)
            return rel, digest, src
        try:
            img = read_image(src, allow_large=self.opts.allow_large)
        except DeblurError as exc:
            return rel, digest, exc
        before = _measure(img)
        if self.opts.only_blurry and before is not None and before.blur_px <= self.opts.blur_threshold:
            return rel, digest, _Sharp(before.width_px, before.sharpness, before.blur_px)
        return rel, digest, _Measured(img, before)

    def journal_line(self, res: RestoreResult, digest: str, dst: Path) -> dict[str, Any]:
        video = dst.suffix.lower() in VIDEO_EXTENSIONS and Path(res.input).suffix.lower() in VIDEO_EXTENSIONS
        return {
            "input": res.input, "sha256": digest, "output": dst.relative_to(self.out_dir).as_posix(),
            "status": res.status, "error": res.error, "settings": self.key_for(Path(res.input), video),
            "model": self.deblurrer.name,
            "seconds": round(res.seconds, 3), "width": res.width, "height": res.height, "bytes": res.bytes,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        } | self.summary.quality.get(res.input, {})

    def record_sharp(self, res: RestoreResult, digest: str, judged: _Sharp, index: int) -> None:
        """The journal line of a file judged sharp: a rerun with the same threshold skips it unread."""
        try:
            self.journal.add({"input": res.input, "sha256": digest, "output": None, "status": "sharp", "error": None,
                              "settings": self.key_for(Path(res.input), is_video(self.in_dir / res.input)),
                              "blur_threshold": self.opts.blur_threshold,
                              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                             | self.summary.quality.get(res.input, {}))
        except OSError as exc:
            res.notes.append(f"not recorded in {self.journal.path.name} ({_why(exc)}): the next run judges it again")
        finally:
            _finish(self.summary, res, index, self.total, self.on_result)

    def record(self, res: RestoreResult, digest: str, dst: Path, t0: float, index: int,
               transient: bool = False) -> None:
        """The final journal line, then the result; a journal that cannot be written fails the file.

        ``transient``: the output could not be written (full disk, permissions), which says nothing
        about the input, so a rerun tries it again without --retry-failed.
        """
        res.seconds = time.perf_counter() - t0
        try:
            self.journal.add(self.journal_line(res, digest, dst) | ({"transient": True} if transient else {}))
        except OSError as exc:
            if res.status == "ok":  # the output is whole, but unrecorded: a rerun redoes it
                res.status = "failed"
                res.error = f"{dst}: written, but {self.journal.path.name} could not record it ({_why(exc)})"
        finally:
            _finish(self.summary, res, index, self.total, self.on_result)

    def write(self, item: Image, out: Any, dst: Path, res: RestoreResult, digest: str, t0: float, index: int,
              before: EdgeWidth | None = None) -> None:
        # Runs on the writer thread while the model works on the next image; the journal line is
        # added only once the file is completely on disk.
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            q = _compare(before, out)
            if q.get("worse") and self.opts.keep_original_if_worse:
                res.notes += [f"less sharp than its input (edge width {q['edge_px_before']} -> {q['edge_px_after']} "
                             "px): the original written instead",
                             *_keep_original(self.in_dir / res.input, dst, self.opts)]
                q["kept_original"] = True
            else:
                res.notes += list(write_image(item, out, dst, quality=self.opts.quality, format=self.opts.format))
                if q.get("worse"):
                    res.notes.insert(0, f"less sharp than its input (edge width {q['edge_px_before']} -> "
                                        f"{q['edge_px_after']} px); {self.spell('keep_original_if_worse')} keeps the "
                                        "original for such files")
            if q:
                self.summary.quality[res.input] = q
            res.bytes = dst.stat().st_size
        except DeblurError as exc:
            res.status, res.error = "failed", exc.cli_message(self.spell)
        except OSError as exc:
            res.status, res.error = "failed", f"{dst}: cannot write ({_why(exc)})"
        except Exception as exc:  # never lose a file's result on the writer thread
            res.status, res.error = "failed", f"{dst}: {type(exc).__name__}: {exc}"
        self.record(res, digest, dst, t0, index, transient=res.status == "failed")

    def run(self, files: list[Path]) -> None:
        """Read ahead on one thread, restore here, write and journal on another, in the files' order."""
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deblur-read")
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deblur-write")
        try:
            for index, fut in enumerate(_prefetch(reader, self.load, files)):
                self.step(index, *fut.result())
        except BaseException:
            # Ctrl-C or a crash: finish the file being written (atomic anyway), drop the queued ones.
            reader.shutdown(wait=False, cancel_futures=True)
            self.writer.shutdown(wait=True, cancel_futures=True)
            raise
        reader.shutdown(wait=True)
        self.writer.shutdown(wait=True)
        for f in self.pending:
            f.result()  # a bug on the writer thread surfaces here instead of vanishing

    def _then(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue on the writer thread, so results, journal lines and callbacks keep the files' order."""
        self.pending.append(self.writer.submit(fn, *args))

    def _report(self, res: RestoreResult, index: int) -> None:
        self._then(_finish, self.summary, res, index, self.total, self.on_result)

    def step(self, index: int, rel: Path, digest: str, item: Any) -> None:
        """One file as `load` left it: already done, judged sharp, or to restore."""
        before = None
        if isinstance(item, _Measured):
            item, before = item.image, item.before
        dst = output_path(self.out_dir, rel, self.opts)
        res = RestoreResult(input=rel.as_posix(), output=str(dst))
        t0 = time.perf_counter()
        if not isinstance(item, dict):
            self.journal.refresh()  # another run may have finished this file since it was read
            if not self.opts.overwrite:
                key = self.key_for(rel, isinstance(item, Path))
                rec = self.journal.lookup(rel.as_posix(), digest, key, self.out_dir)
                if rec is not None and self.still_done(rec):
                    item = rec
        if isinstance(item, dict):
            quality = _from_journal(res, item, self.spell)
            if quality:
                self.summary.quality[res.input] = quality
            self._report(res, index)  # in order
            return
        if isinstance(item, _Sharp):
            res.status, res.output = "skipped", None
            res.notes = [f"{sharp_note(item.blur_px, self.opts.blur_threshold)}: not restored, no output"]
            self.summary.quality[res.input] = {"judged_sharp": True, "edge_px_before": round(item.edge_px, 3),
                                               "blur_px_before": round(item.blur_px, 3),
                                               "sharpness_before": round(item.sharpness, 4)}
            self._then(self.record_sharp, res, digest, item, index)  # in journal order
            return
        self.restore(item, self.in_dir / rel, res, digest, dst, t0, index, before)

    def restore(self, item: Any, src: Path, res: RestoreResult, digest: str, dst: Path, t0: float, index: int,
                before: EdgeWidth | None) -> None:
        """Claim the file in the journal, restore it, and queue its writing (or its failure) in order."""
        transient = False  # a failure on the output side (full disk), retried by the next run
        try:
            if isinstance(item, DeblurError):
                raise item
            owner = self.journal.owner(res.input, self.out_dir)
            if owner is not None:
                _in_progress(res, owner)
                self._report(res, index)
                return
            earlier = self.journal.entries.get(res.input)
            if dst.exists() and not self.opts.overwrite and (earlier is None or earlier.get("status") == "sharp"):
                raise DeblurError(f"{dst}: already exists and is not from an earlier run; replace it with "
                                  "{overwrite}", names=("overwrite",))
            # Claim the file before writing it: if this run dies between the write and the final
            # journal line, the next run knows it may replace that output; and of two live runs
            # the earlier claim wins, the other reports the file as in progress.
            try:
                self.journal.add(self.journal_line(RestoreResult(res.input, res.output, status="started"), digest,
                                                   dst))
            except OSError as exc:
                transient = True
                raise DeblurError(f"{dst}: not started, {self.journal.path.name} cannot be written ({_why(exc)})"
                                  ) from None
            self.journal.refresh()
            owner = self.journal.owner(res.input, self.out_dir)
            if owner is not None and owner != self.journal.run_id:
                self.journal.release(res.input)
                _in_progress(res, owner)
                self._report(res, index)
                return
            if isinstance(item, Path):  # a video: written (atomically, resumably) here, then journalled
                dst.parent.mkdir(parents=True, exist_ok=True)
                done = restore_video(self.deblurrer, item, dst, replace(self.vopts, overwrite=True))
                res.width, res.height, res.bytes, res.notes = done.width, done.height, done.bytes, done.notes
                self._then(self.record, res, digest, dst, t0, index)
                return
            res.width, res.height = item.width, item.height
            # Finished strip by strip into the stored layout, over the photo's own samples.
            out = self.deblurrer.restore_image(item, progress=self.on_tile, in_place=True,
                                               layout=output_layout(item, dst, format=self.opts.format),
                                               label=str(dst))
            if self.deblurrer.last_outcome is not None:  # what the shake engine did, for --json and --report
                res.notes.append(self.deblurrer.last_outcome.note)
                res.shake = self.deblurrer.last_outcome.stats()
        except DeblurError as exc:
            res.status, res.error = "failed", exc.cli_message(self.spell)
            # A video whose output could not be written (full disk): the input is fine, so the
            # next run tries again by itself, as for photos written on the writer thread.
            transient = transient or isinstance(exc, OutputError)
        except Exception as exc:  # an unexpected failure on one file must not lose the others
            res.status, res.error = "failed", f"{src}: {type(exc).__name__}: {exc}"
        if res.status == "failed":
            self._then(self.record, res, digest, dst, t0, index, transient)  # in journal order
        else:
            self._then(self.write, item, out, dst, res, digest, t0, index, before)


#: The formats whose writer ignores --quality: changing it must not redo their outputs.
_LOSSLESS = frozenset({"PNG", "TIFF", "BMP"})


def _uses_quality(dst: Path, fmt: str | None) -> bool:
    """Whether --quality can change the bytes written to ``dst`` (JPEG, WebP, AVIF, HEIC do)."""
    try:
        return format_for_path(dst, fmt) not in _LOSSLESS
    except DeblurError:
        return True  # unknown here: the write will fail anyway; keep the full key


def _without_quality(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != "quality"}


def _why(exc: OSError) -> str:
    return "disk full; free some space" if is_disk_full(exc) else (exc.strerror or str(exc))


def _in_progress(res: RestoreResult, owner: str) -> None:
    """Another live run owns the file: not a failure, and not ours to write."""
    res.status = "skipped"
    host, pid = owner.split("-")[:2]
    where = f"pid {pid}" + ("" if host == host_tag() else f" on another machine ({host})")
    res.notes = [f"in progress in another run ({where})"]


def _from_journal(res: RestoreResult, rec: dict[str, Any], spell: Callable[[str], str] = str) -> dict[str, Any]:
    """A file finished by an earlier run: skipped, or still failed (so the exit code stays 1).

    Returns the quality figures the earlier run recorded, so the report still shows them.
    """
    res.width, res.height = int(rec.get("width") or 0), int(rec.get("height") or 0)
    res.bytes = rec.get("bytes")
    quality = {k: rec[k] for k in _QUALITY_KEYS if k in rec}
    if rec.get("status") == "sharp":
        res.status, res.output = "skipped", None
        res.notes = [f"judged sharp in an earlier run (blur {rec.get('blur_px_before')} px <= "
                     f"{rec.get('blur_threshold')}): not restored, no output"]
    elif rec.get("status") == "ok":
        res.status = "skipped"
    else:
        res.status = "failed"
        res.error = f"{rec.get('error')} (earlier run; try again with {spell('retry_failed')})"
    return quality


_QUALITY_KEYS = ("judged_sharp", "edge_px_before", "blur_px_before", "sharpness_before", "edge_px_after",
                 "sharpness_after", "worse", "kept_original")


def _measure(img: Image) -> EdgeWidth | None:
    """A photo's edge width, or None for one too small to measure (under 36 px a side)."""
    try:
        return edge_width(img.samples)
    except ValueError:
        return None


def _compare(before: EdgeWidth | None, out: Any) -> dict[str, Any]:
    """Sharpness before and after for the report; ``worse`` when the edges grew wider by WORSE_MARGIN."""
    if before is None or not hasattr(out, "shape"):
        return {}
    try:
        after = edge_width(out)
    except ValueError:
        return {}
    return {"edge_px_before": round(before.width_px, 3), "edge_px_after": round(after.width_px, 3),
            "sharpness_before": round(before.sharpness, 4), "sharpness_after": round(after.sharpness, 4),
            "worse": after.width_px > before.width_px * (1 + WORSE_MARGIN)}


def _keep_original(src: Path, dst: Path, opts: BatchOptions) -> list[str]:
    """Write the input at ``dst``, atomically: its bytes when the output format is its own (nothing
    re-encoded, metadata intact), else its pixels re-encoded in the output format."""
    if format_for_path(dst, opts.format) == format_for_path(src):
        with open(src, "rb") as f:
            atomic_write(dst, lambda out: shutil.copyfileobj(f, out))
        return []
    fresh = read_image(src, allow_large=opts.allow_large)
    return list(write_image(fresh, fresh.pixels, dst, quality=opts.quality, format=opts.format))


def _prefetch(pool: ThreadPoolExecutor, load: Callable[[Path], Any], files: list[Path]) -> Iterator[Future[Any]]:
    """Yield futures in order while keeping the next image being read in the background."""
    ahead: list[Future[Any]] = []
    it = iter(files)
    for rel in it:
        ahead.append(pool.submit(load, rel))
        if len(ahead) >= 2:
            yield ahead.pop(0)
    yield from ahead


def _finish(summary: BatchSummary, res: RestoreResult, index: int, total: int,
            on_result: Callable[[RestoreResult, int, int], None] | None) -> None:
    summary.results.append(res)
    if on_result:
        on_result(res, index + 1, total)


def write_report(summary: BatchSummary, path: str | os.PathLike[str]) -> None:
    """The ``--report`` JSON: totals, then per file status, seconds, size and error."""
    from .eval.runner import write_json

    try:
        write_json(summary.as_dict(), str(path))
    except OSError as exc:
        raise OptionError("report", f"cannot write it ({exc.strerror or exc})", value=str(path)) from None
