"""Folder-to-folder restoration that survives interruption, bad files and clusters.

The output folder holds a journal (``.deblur-journal.jsonl``): one JSON line per finished file
with the input's relative path and content hash, the model's weights hash and the settings that
change pixels, and the status. A rerun skips exactly the files already done with the same model
and settings and the same input bytes, so an interrupted job resumes where it stopped and a
repeated one does nothing. ``shard=(i, n)`` takes every n-th file starting at i (of the sorted
list), so a job array splits one folder across machines with no coordinator.

Reading the next image and writing the last result happen on background threads while the model
runs; one bad file is recorded and the batch goes on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import Deblurrer, RestoreResult
from .errors import DeblurError, UsageError
from .imageio import IMAGE_EXTENSIONS, Image, read_image, unknown_format_error, write_image
from .options import output_settings

JOURNAL = ".deblur-journal.jsonl"
IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # the one list, from deblurcli.imageio.formats


_DECIDES = {"decides_output": True}  # part of the resume key, with the Deblurrer's own settings


@dataclass
class BatchOptions:
    """What to process and how to write it; how to restore is the `Deblurrer`'s (incl. strength)."""

    recursive: bool = False
    glob: str | None = None
    overwrite: bool = False
    retry_failed: bool = False
    shard: tuple[int, int] = (0, 1)
    suffix: str = field(default="", metadata=_DECIDES)
    #: Output extension (without dot); None keeps the input's.
    format: str | None = field(default=None, metadata=_DECIDES)
    quality: int = field(default=95, metadata=_DECIDES)
    allow_large: bool = False


@dataclass
class BatchSummary:
    results: list[RestoreResult] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.count("ok"), "skipped": self.count("skipped"), "failed": self.failed,
            "seconds": round(self.seconds, 3), "files": [r.as_dict() for r in self.results],
        }


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N), with 0 <= I < N."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard {text!r}: expected I/N, e.g. 0/4 for the first of four shards") from None
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text!r}: need 0 <= I < N (e.g. 0/4 ... 3/4)")
    return i, n


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
        elif p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        files.append(rel)
    if out_resolved == in_resolved:
        # Results beside their inputs: drop every file that is the output of another input.
        outputs = {output_path(Path(), r, opts).as_posix() for r in files}
        files = [r for r in files if r.as_posix() not in outputs]
    files.sort(key=lambda r: r.as_posix())
    i, n = opts.shard
    return files[i::n]


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
    if in_dir.exists() and in_dir.resolve() == out_dir.resolve() and not opts.suffix:
        raise UsageError(f"{out_dir}: output folder is the input folder; choose another or pass --suffix")
    if report is not None and str(report) != "-":
        if report.is_dir():
            raise UsageError(f"--report {report}: is a folder; give a file name such as report.json")
        if not report.parent.is_dir():
            raise UsageError(f"--report {report}: folder {report.parent} does not exist")
    files = list_inputs(in_dir, opts, out_dir)
    outputs: dict[str, Path] = {}
    for rel in files:
        key = output_path(out_dir, rel, opts).as_posix()
        if key in outputs:
            raise UsageError(f"{in_dir / rel} and {in_dir / outputs[key]} would both be written to "
                             f"{output_path(out_dir, rel, opts)}; drop --format or rename one")
        outputs[key] = rel
    return files


def output_path(out_dir: Path, rel: Path, opts: BatchOptions) -> Path:
    """Where the result of ``rel`` goes: the same relative place, with the suffix and format."""
    suffix = f".{opts.format.lower().lstrip('.')}" if opts.format else rel.suffix
    return out_dir / rel.parent / f"{rel.stem}{opts.suffix}{suffix}"


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Journal:
    """Append-only JSON lines; the last line for a file wins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash mid-write
                if isinstance(rec, dict) and "input" in rec:
                    self.entries[rec["input"]] = rec
        self._lock = threading.Lock()

    def lookup(self, rel: str, content_hash: str, settings: dict[str, Any], out_dir: Path) -> dict[str, Any] | None:
        """The finished record for these exact input bytes and settings, or None if the work is still to do.

        A success whose output has since been deleted is work still to do.
        """
        rec = self.entries.get(rel)
        if rec is None or rec.get("sha256") != content_hash or rec.get("settings") != settings:
            return None
        if rec.get("status") == "ok":
            return rec if (out_dir / str(rec.get("output", ""))).is_file() else None
        return rec if rec.get("status") == "failed" else None

    def add(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self.entries[rec["input"]] = rec
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())


def run_batch(
    deblurrer: Deblurrer, in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], opts: BatchOptions,
    *, on_result: Callable[[RestoreResult, int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> BatchSummary:
    """Restore every matching image of ``in_dir`` into ``out_dir``; see the module docstring."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = prepare(in_dir, out_dir, opts)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        journal = Journal(out_dir / JOURNAL)
        (out_dir / JOURNAL).touch()
    except OSError as exc:
        raise DeblurError(f"{out_dir}: cannot write there ({exc.strerror}); choose a writable folder") from None
    settings = deblurrer.settings_key() | output_settings(opts)
    summary = BatchSummary()
    t_start = time.perf_counter()
    if on_start:
        on_start(len(files))

    def load(rel: Path) -> tuple[Path, str, Image | DeblurError | dict[str, Any]]:
        """Hash and decode on the reader thread; a finished record instead means: nothing to do."""
        src = in_dir / rel
        try:
            digest = file_hash(src)
        except OSError as exc:
            return rel, "", DeblurError(f"{src}: cannot read ({exc.strerror})")
        if not opts.overwrite:
            rec = journal.lookup(rel.as_posix(), digest, settings, out_dir)
            if rec is not None and not (rec.get("status") == "failed" and opts.retry_failed):
                return rel, digest, rec
        try:
            return rel, digest, read_image(src, allow_large=opts.allow_large)
        except DeblurError as exc:
            return rel, digest, exc

    total = len(files)

    def journal_line(res: RestoreResult, digest: str, dst: Path) -> dict[str, Any]:
        return {
            "input": res.input, "sha256": digest, "output": dst.relative_to(out_dir).as_posix(),
            "status": res.status, "error": res.error, "settings": settings, "model": deblurrer.name,
            "seconds": round(res.seconds, 3), "width": res.width, "height": res.height, "bytes": res.bytes,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def record(res: RestoreResult, digest: str, dst: Path, t0: float, index: int) -> None:
        res.seconds = time.perf_counter() - t0
        journal.add(journal_line(res, digest, dst))
        _finish(summary, res, index, total, on_result)

    def write(item: Image, out: Any, dst: Path, res: RestoreResult, digest: str, t0: float, index: int) -> None:
        # Runs on the writer thread while the model works on the next image; the journal line is
        # added only once the file is completely on disk.
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            res.notes = list(write_image(item, out, dst, quality=opts.quality, format=opts.format))
            res.bytes = dst.stat().st_size
        except DeblurError as exc:
            res.status, res.error = "failed", str(exc)
        except OSError as exc:
            res.status, res.error = "failed", f"{dst}: cannot write ({exc.strerror})"
        record(res, digest, dst, t0, index)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deblur-read") as reader, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="deblur-write") as writer:
        for index, fut in enumerate(_prefetch(reader, load, files)):
            rel, digest, item = fut.result()
            src, dst = in_dir / rel, output_path(out_dir, rel, opts)
            res = RestoreResult(input=rel.as_posix(), output=str(dst))
            t0 = time.perf_counter()
            if isinstance(item, dict):
                _from_journal(res, item)
                writer.submit(_finish, summary, res, index, total, on_result)  # in order with the writes
                continue
            try:
                if isinstance(item, DeblurError):
                    raise item
                if dst.exists() and not opts.overwrite and rel.as_posix() not in journal.entries:
                    raise DeblurError(f"{dst}: already exists and is not from an earlier run; pass --overwrite")
                # Mark the file as ours before writing it: if the run dies between the write and
                # the final journal line, the next run knows it may replace that output.
                journal.add(journal_line(RestoreResult(res.input, res.output, status="started"), digest, dst))
                res.width, res.height = item.width, item.height
                out = deblurrer.restore_image(item, progress=on_tile)
            except DeblurError as exc:
                res.status, res.error = "failed", str(exc)
            except Exception as exc:  # an unexpected failure on one file must not lose the others
                res.status, res.error = "failed", f"{src}: {type(exc).__name__}: {exc}"
            if res.status == "failed":
                writer.submit(record, res, digest, dst, t0, index)  # keeps journal order with writes
            else:
                writer.submit(write, item, out, dst, res, digest, t0, index)
    summary.seconds = time.perf_counter() - t_start
    return summary


def _from_journal(res: RestoreResult, rec: dict[str, Any]) -> None:
    """A file finished by an earlier run: skipped, or still failed (so the exit code stays 1)."""
    res.width, res.height = int(rec.get("width") or 0), int(rec.get("height") or 0)
    res.bytes = rec.get("bytes")
    if rec.get("status") == "ok":
        res.status = "skipped"
    else:
        res.status = "failed"
        res.error = f"{rec.get('error')} (earlier run; pass --retry-failed to try again)"


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
        raise DeblurError(f"--report {path}: cannot write it ({exc.strerror or exc})") from None
