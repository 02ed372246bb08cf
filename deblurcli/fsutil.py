"""The one place that writes files safely and hashes them; every module uses these.

Why one module: a crash, a full disk or a second run at the same time must never leave a torn
output, a journal line glued to the next, or temporary files that pile up forever. Those rules
are easy to get subtly wrong in six copies (a missing fsync of the folder, a 0600 mode, a temp
name no cleanup recognises), so they live here once.

* :func:`atomic_write` / :func:`atomic_output`: a temporary file beside the target, written,
  fsynced, given ordinary permissions, renamed over the target, and the folder fsynced, so a
  reader sees the old file or the whole new one, also after a power cut (:func:`replace_durably`
  is that last step alone, for a file finished elsewhere; :func:`write_failure` words a failure). The temporary name
  (``.NAME.<host>-<pid>.XXXXXXXX.part``) says which process owns it, so
  :func:`remove_stale_parts` can later delete the ones whose writer died, and only those.
* :func:`append_line`: one ``os.write`` of a whole line to a file opened with ``O_APPEND``, so
  concurrent writers never interleave inside a line; a torn last line (a crash or a full disk
  cut it) is closed with a newline first, so it never swallows the next record.
* :func:`sha256_file`: streaming sha256 of a file (memoised by path, size and mtime on request).
* :func:`unwritable_folder`: why a folder cannot take new files, asked once before a long job
  instead of learning it from every file.
* :func:`same_file` / :func:`input_as_output`: whether an output would replace the file being read,
  and the one message that refuses it (run, batch, convert and the image writer all ask).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "PART_SUFFIX", "append_line", "atomic_output", "atomic_write", "host_tag", "is_disk_full", "pid_alive",
    "input_as_output", "remove_stale_parts", "replace_durably", "same_file", "sha256_file", "unwritable_folder",
    "write_failure",
]

PART_SUFFIX = ".part"
#: A temporary file of a writer on another machine (shared folder), or of one whose name does not
#: say its owner (older versions), is stale only once untouched this long: a live writer keeps
#: its file's mtime fresh with every block it writes.
STALE_AFTER_S = 6 * 3600
# Longest target-name fragment kept in a temporary name: the whole name must stay under the
# 255-byte limit of common file systems, even for a target that is itself near it.
_NAME_KEEP = 120
_PART_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[A-Za-z0-9_]{6,12}\.part$")
_LEGACY_PART_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.part$")  # mkstemp names of earlier versions
_umask_cache: int | None = None
_sha_memo: dict[tuple[str, int, int], str] = {}


def host_tag() -> str:
    """Eight hex digits naming this machine: pids are only comparable on the same host."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True
    return True


def _umask() -> int:
    global _umask_cache
    if _umask_cache is None:
        mask = os.umask(0)
        os.umask(mask)
        _umask_cache = mask
    return _umask_cache


def _new_file_mode(path: Path) -> int:
    """mkstemp makes 0600 files; an output gets the usual permissions (or keeps the replaced file's)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; file systems that cannot fsync a folder are skipped."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, make_parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` durably.

    For writers that want a file name (``torch.save``, safetensors' ``save_file``). The temporary
    file is removed on any failure, including KeyboardInterrupt; OSError is re-raised unchanged
    so callers can word it (``is_disk_full`` tells a full disk apart, `write_failure` words it).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if make_parents:
        parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:_NAME_KEEP]}.{host_tag()}-{os.getpid()}.",
                                    suffix=PART_SUFFIX, dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        replace_durably(tmp, path, fsync_folder=False)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(parent)


def replace_durably(tmp: str | os.PathLike[str], path: str | os.PathLike[str], *, fsync_folder: bool = True) -> None:
    """Give the finished file ``tmp`` the name ``path``: fsynced, ordinary permissions, renamed, the
    folder fsynced. For a file written elsewhere first (a video's work folder); `atomic_output`
    ends with it too, so a power cut leaves the old file or the whole new one either way."""
    tmp, path = Path(tmp), Path(path)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, _new_file_mode(path))
    os.replace(tmp, path)
    if fsync_folder:
        fsync_dir(path.parent if str(path.parent) else Path("."))


def atomic_write(path: str | os.PathLike[str], content: bytes | str | Callable[[BinaryIO], object], *,
                 make_parents: bool = False, error: Callable[[str], Exception] | None = None) -> None:
    """Write ``content`` (bytes, text as UTF-8, or a function given the open binary file) atomically.

    With ``error`` (an error class of `deblurcli.errors`), an OSError becomes that error with
    `write_failure`'s one line; without it, it is raised unchanged for the caller to word.
    """
    try:
        with atomic_output(path, make_parents=make_parents) as tmp, open(tmp, "wb") as f:
            if isinstance(content, str):
                f.write(content.encode("utf-8"))
            elif isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                content(f)
            f.flush()
    except OSError as exc:
        if error is None:
            raise
        raise error(write_failure(path, exc)) from None


def write_failure(path: str | os.PathLike[str], exc: OSError) -> str:
    """The one line for a write that failed: a full disk and a refused permission each with their fix."""
    if is_disk_full(exc):
        return f"{path}: disk full; free some space or write elsewhere"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied; choose a folder and file you can write"
    return f"{path}: cannot write the output ({exc.strerror or exc})"


def append_line(path: str | os.PathLike[str], line: str, *, fsync: bool = True) -> None:
    """Append one record as one line, atomically with respect to other appenders.

    ``O_APPEND`` makes each ``write`` land at the end as a unit, so two runs appending at once
    never interleave inside a line. If the file does not end with a newline (a writer died or
    the disk filled mid-line), the record starts on a new line, so the torn one is skipped by
    readers and never glued to this record. On a full disk the write raises (possibly after a
    partial line, which the next append closes the same way).
    """
    data = line.rstrip("\n").encode("utf-8") + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as r:
                r.seek(size - 1)
                if r.read(1) != b"\n":
                    data = b"\n" + data
        view = memoryview(data)
        written = os.write(fd, view)
        if written < len(data):  # only a full disk or quota cuts a regular-file write short
            while written < len(data):
                n = os.write(fd, view[written:])  # raises ENOSPC if there is truly no room
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
                written += n
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: str | os.PathLike[str]) -> tuple[list[str], bool]:
    """The complete non-empty lines of a line-per-record file, and whether a torn last line was dropped.

    Empty lines are harmless: an appender that looked while another's line was half copied in
    starts its record with a newline of its own.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], False
    torn = bool(data) and not data.endswith(b"\n")
    lines = data.decode("utf-8", errors="replace").split("\n")
    lines.pop()  # after the final newline (empty), or the torn tail
    return [line for line in lines if line], torn


def sha256_file(path: str | os.PathLike[str], *, memo: bool = False) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks; ``memo`` reuses it while size and mtime are unchanged."""
    key: tuple[str, int, int] | None = None
    if memo:
        st = os.stat(path)
        key = (os.fspath(path), st.st_size, st.st_mtime_ns)
        if key in _sha_memo:
            return _sha_memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if key is not None:
        _sha_memo[key] = digest
    return digest


def part_is_stale(path: Path, *, now: float | None = None) -> bool:
    """Whether ``path`` is one of our temporary files whose writer is gone.

    Ours: the ``.NAME.<host>-<pid>.XXXXXXXX.part`` names :func:`atomic_output` makes (or the bare
    mkstemp ``.NAME.XXXXXXXX.part`` of earlier versions). Gone: on this machine, the pid no longer
    exists; written by another machine or of unknown owner, untouched for ``STALE_AFTER_S``.
    """
    m = _PART_RE.match(path.name)
    if m is None and not _LEGACY_PART_RE.match(path.name):
        return False
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except OSError:
        return False
    if m is not None and m["host"] == host_tag():
        pid = int(m["pid"])
        return pid != os.getpid() and (not pid_alive(pid) or age > 7 * 24 * 3600)  # pids are reused
    return age > STALE_AFTER_S


def remove_stale_parts(folder: str | os.PathLike[str], *, recursive: bool = False) -> list[Path]:
    """Delete temporary files left in ``folder`` by writers that died (SIGKILL, power cut); return them.

    Never touches another live run's temporary file, nor any file we did not name.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    try:
        walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    except OSError:
        return removed
    for root, _dirs, names in walker:
        for name in names:
            if not (name.startswith(".") and name.endswith(PART_SUFFIX)):
                continue
            p = Path(root) / name
            if p.is_file() and not p.is_symlink() and part_is_stale(p):
                try:
                    p.unlink()
                    removed.append(p)
                except OSError:
                    pass
    return removed


def unwritable_folder(folder: str | os.PathLike[str]) -> str | None:
    """Why new files cannot be made in ``folder`` (or, if it does not exist yet, where it would be
    created), or None when they can.

    An existing folder is probed by creating and removing a temporary file, because permission
    bits do not tell: root writes through them, while a read-only mount, ACLs and network file
    systems refuse writes the bits allow. The probe is named like our temporary files, so one
    left by a kill is removed like them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        ancestor = next((a for a in folder.parents if a.is_dir()), None)
        if ancestor is None or os.access(ancestor, os.W_OK | os.X_OK):
            return None
        return f"cannot create it, {ancestor} is not writable"
    try:
        fd, name = tempfile.mkstemp(prefix=f".deblur-probe.{host_tag()}-{os.getpid()}.", suffix=PART_SUFFIX,
                                    dir=folder)
    except OSError as exc:
        return "disk full" if is_disk_full(exc) else (exc.strerror or str(exc)).lower()
    os.close(fd)
    Path(name).unlink(missing_ok=True)
    return None


def same_file(a: str | os.PathLike[str] | None, b: str | os.PathLike[str] | None) -> bool:
    """True when two paths name one file (links, ``..`` and case-insensitive disks included)."""
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they point
        return Path(a).resolve() == Path(b).resolve()


def input_as_output(src: str | os.PathLike[str] | None, dst: str | os.PathLike[str], *,
                    fix: str = "choose another output name") -> str | None:
    """The refusal to write ``dst`` over ``src``, the file being read, or None when they differ.

    A mistaken output name must never destroy the original, so every writer asks this first;
    ``fix`` says how to choose another output in the caller's terms (``-o`` in the CLI).
    """
    if not same_file(src, dst):
        return None
    return f"{dst}: output is the input file; {fix} (the original is kept)"
