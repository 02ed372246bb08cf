"""A small tmpfs for disk-full tests: mounted where the tests may (root, mount allowed), else a skip.

A full disk cannot be faked faithfully (ENOSPC arrives mid-write, after partial writes, on
rename of nothing...), so these tests use a real small file system or say why they cannot.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("disk-full test needs a small tmpfs: mounting one requires root")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"disk-full test needs a small tmpfs and mount refused: {p.stderr.strip() or p.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the file system of ``folder`` until at most ``leave`` bytes remain free."""
    i = 0
    chunk = b"\0" * 65536
    while True:
        free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
        if free <= leave:
            return
        try:
            with open(folder / f"filler{i}", "wb") as f:
                f.write(chunk[: max(1, min(len(chunk), free - leave))])
        except OSError:
            return
        i += 1
