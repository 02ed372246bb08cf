"""Atomic writes, line appends, hashing and stale temporary files (deblurcli.fsutil)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tmpfs import fill, small_tmpfs

from deblurcli import fsutil


def test_atomic_write_replaces_whole_and_keeps_mode(tmp_path: Path) -> None:
    p = tmp_path / "a.bin"
    fsutil.atomic_write(p, b"one")
    assert p.read_bytes() == b"one"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    os.chmod(p, 0o640)
    fsutil.atomic_write(p, "twö")
    assert p.read_text("utf-8") == "twö" and stat.S_IMODE(p.stat().st_mode) == 0o640
    fsutil.atomic_write(p, lambda f: f.write(b"three"))
    assert p.read_bytes() == b"three"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.bin"]


def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")

    def boom(f: object) -> None:
        f.write(b"half")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fsutil.atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["a.bin"]


def test_temp_name_fits_for_long_names(tmp_path: Path) -> None:
    p = tmp_path / ("x" * 250 + ".png")
    fsutil.atomic_write(p, b"ok")
    assert p.read_bytes() == b"ok"


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "f"
    data = os.urandom(3 << 20)
    p.write_bytes(data)
    assert fsutil.sha256_file(p) == hashlib.sha256(data).hexdigest()
    assert fsutil.sha256_file(p, memo=True) == hashlib.sha256(data).hexdigest()
    p.write_bytes(b"changed!")
    os.utime(p, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert fsutil.sha256_file(p, memo=True) == hashlib.sha256(b"changed!").hexdigest()


def test_append_line_closes_a_torn_last_line(tmp_path: Path) -> None:
    j = tmp_path / "j.jsonl"
    j.write_bytes(b'{"a": 1}\n{"b": 2, "cut')
    fsutil.append_line(j, '{"c": 3}')
    lines, torn = fsutil.read_lines(j)
    assert lines == ['{"a": 1}', '{"b": 2, "cut', '{"c": 3}'] and not torn
    j.write_bytes(b'{"a": 1}\n{"b"')
    assert fsutil.read_lines(j) == (['{"a": 1}'], True)


def _appender(path: str, tag: int, n: int) -> None:
    for i in range(n):
        fsutil.append_line(path, f"{tag}:{i}:" + "x" * (1000 + 37 * tag), fsync=False)


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    j = tmp_path / "j"
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    procs = [ctx.Process(target=_appender, args=(str(j), t, 300)) for t in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    lines, torn = fsutil.read_lines(j)
    assert not torn and len(lines) == 1200
    for line in lines:
        tag, _i, xs = line.split(":")
        assert xs == "x" * (1000 + 37 * int(tag))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_remove_stale_parts_only_ours_and_only_dead(tmp_path: Path) -> None:
    tag = fsutil.host_tag()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".photo.png.{tag}-{_dead_pid()}.abc12345.part"
        alive = tmp_path / f".photo.png.{tag}-{live.pid}.abc12345.part"
        mine = tmp_path / f".photo.png.{tag}-{os.getpid()}.abc12345.part"
        foreign_new = tmp_path / ".photo.png.0000beef-12.abc12345.part"
        foreign_old = tmp_path / ".other.jpg.0000beef-12.abc12345.part"
        legacy_old = tmp_path / ".photo.png.k2j3h4g5.part"
        legacy_new = tmp_path / ".photo2.png.k2j3h4g5.part"
        not_ours = [tmp_path / "notes.part", tmp_path / ".notes.part", tmp_path / "photo.png"]
        for p in [dead, alive, mine, foreign_new, foreign_old, legacy_old, legacy_new, *not_ours]:
            p.write_bytes(b"x")
        old = time.time() - fsutil.STALE_AFTER_S - 60
        for p in (foreign_old, legacy_old, tmp_path / ".notes.part"):
            os.utime(p, (old, old))
        sub = tmp_path / "sub"
        sub.mkdir()
        nested = sub / dead.name
        nested.write_bytes(b"x")
        assert sorted(fsutil.remove_stale_parts(tmp_path)) == sorted([dead, foreign_old, legacy_old])
        assert nested.exists()
        assert fsutil.remove_stale_parts(tmp_path, recursive=True) == [nested]
        for p in [alive, mine, foreign_new, legacy_new, *not_ours]:
            assert p.exists(), p
    finally:
        live.kill()
        live.wait()


def test_atomic_write_on_a_full_disk_raises_enospc_and_leaves_nothing(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        (disk / "keep.bin").write_bytes(b"old")
        fill(disk, leave=4096)
        with pytest.raises(OSError) as info:
            fsutil.atomic_write(disk / "keep.bin", os.urandom(200_000))
        assert fsutil.is_disk_full(info.value)
        assert (disk / "keep.bin").read_bytes() == b"old"
        assert not [p for p in disk.iterdir() if p.name.endswith(".part")]
        j = disk / "j.jsonl"
        with pytest.raises(OSError) as info:
            for _ in range(10_000):
                fsutil.append_line(j, "y" * 100)
        assert fsutil.is_disk_full(info.value)
        lines, _torn = fsutil.read_lines(j)
        assert all(line == "y" * 100 for line in lines)
