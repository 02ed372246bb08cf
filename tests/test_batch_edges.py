"""`deblur batch` where a user's first try goes wrong: job-array shards, an empty folder, a killed
run's lock file, a changed --quality, an output folder that cannot be written.

Each test states what the user relies on; the tiny random ALGNet stands in for a real model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner, Result

from deblurcli.batch import JOURNAL, LOCK_PREFIX, BatchOptions, list_inputs, parse_shard
from deblurcli.cli import app
from deblurcli.errors import UsageError

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "NUMBA_NUM_THREADS": "1"}


@pytest.fixture
def batch(tiny_model: Path):  # noqa: ANN201 - a small callable
    def call(*args: str | Path) -> Result:
        return CliRunner().invoke(app, ["batch", *map(str, args), "--model", str(tiny_model), "--device", "cpu"])

    return call


def _photos(folder: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = np.random.default_rng(i).integers(0, 256, (32, 40, 3), dtype=np.uint8)
        PILImage.fromarray(arr).save(path, **({"format": "JPEG"} if path.suffix == ".jpg" else {}))


def _statuses(res: Result) -> dict[str, str]:
    return {r["input"]: r["status"] for r in map(json.loads, res.stdout.splitlines())}


def _error_lines(res: Result) -> list[str]:
    return [line for line in ANSI.sub("", res.stderr).splitlines() if line.strip()]


# -- shards count from 1, as job arrays do -----------------------------------------------------------
def test_a_job_array_numbered_from_one_does_every_file_exactly_once(batch, tmp_path: Path) -> None:
    """``--array=1-N`` with ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``, as the README shows."""
    names = [f"img{i:02d}.png" for i in range(7)]
    _photos(tmp_path / "in", names)
    out = tmp_path / "out"
    count = 3
    done: list[str] = []
    for task_id in range(1, count + 1):  # what SLURM sets for --array=1-3
        res = batch(tmp_path / "in", out, "--shard", f"{task_id}/{count}", "--json")
        assert res.exit_code == 0, res.stderr
        assert set(_statuses(res).values()) == {"ok"}
        done += list(_statuses(res))
    assert sorted(done) == names  # each file once: none twice, none left out
    again = batch(tmp_path / "in", out, "--json")
    assert set(_statuses(again).values()) == {"skipped"}


@pytest.mark.parametrize("count", [1, 2, 5, 9])
def test_shards_one_to_n_partition_the_list(tmp_path: Path, count: int) -> None:
    names = [f"img{i:02d}.png" for i in range(5)]
    _photos(tmp_path, names)
    parts = [[p.as_posix() for p in list_inputs(tmp_path, BatchOptions(shard=parse_shard(f"{i}/{count}")))]
             for i in range(1, count + 1)]
    assert sorted(sum(parts, [])) == names  # more shards than files: some are empty, none overlap


def test_shard_zero_is_refused_saying_shards_count_from_one(batch, tmp_path: Path) -> None:
    _photos(tmp_path / "in", ["a.png"])
    res = batch(tmp_path / "in", tmp_path / "out", "--shard", "0/4")
    assert res.exit_code == 2
    lines = _error_lines(res)
    assert len(lines) == 1 and lines[0].startswith("error: --shard 0/4:") and "count from 1" in lines[0], lines
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="count from 1"):
        list_inputs(tmp_path / "in", BatchOptions(shard=(0, 4)))  # the Python API says the same


def test_help_says_which_shards_are_accepted() -> None:
    text = " ".join(CliRunner().invoke(app, ["batch", "--help"]).stdout.split())
    assert "counting from 1" in text and "1/N ... N/N" in text


# -- nothing to do is an error, not a table of zeros -------------------------------------------------
def test_empty_folder_is_an_error_naming_it(batch, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a photo")
    res = batch(empty, tmp_path / "out")
    assert res.exit_code == 2
    lines = _error_lines(res)
    assert len(lines) == 1 and str(empty) in lines[0] and "no images or videos" in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_empty_top_folder_hints_recursive_and_a_glob_that_matches_nothing_says_so(batch, tmp_path: Path) -> None:
    _photos(tmp_path / "in", ["sub/a.png"])
    res = batch(tmp_path / "in", tmp_path / "out")
    assert res.exit_code == 2 and "--recursive" in res.stderr, res.stderr
    res = batch(tmp_path / "in", tmp_path / "out", "--recursive", "--glob", "*.tif")
    assert res.exit_code == 2
    lines = _error_lines(res)
    assert len(lines) == 1 and "--glob '*.tif'" in lines[0] and str(tmp_path / "in") in lines[0], lines
    assert batch(tmp_path / "in", tmp_path / "out", "--recursive").exit_code == 0


# -- a killed run's lock file ------------------------------------------------------------------------
def test_a_killed_runs_lock_file_is_removed_by_the_next_run_at_once(batch, tmp_path: Path) -> None:
    """``kill -9`` leaves the lock file; the next run, started right away, removes it."""
    _photos(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom deblurcli.batch import RunLock\n"
        "lock = RunLock(Path(sys.argv[1])); print(lock.path, flush=True); time.sleep(120)\n"), str(out)],
        stdout=subprocess.PIPE, text=True, env=ENV)
    assert child.stdout is not None
    lock = Path(child.stdout.readline().strip())
    assert lock.is_file() and lock.name.startswith(LOCK_PREFIX)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert lock.is_file()  # nobody cleans up after SIGKILL...
    res = batch(tmp_path / "in", out)
    assert res.exit_code == 0, res.stderr
    assert not lock.exists()  # ...but the next run does, however soon it starts
    assert not [p.name for p in out.iterdir() if p.name.startswith(LOCK_PREFIX)]


def test_a_live_runs_lock_file_is_kept(batch, tmp_path: Path) -> None:
    _photos(tmp_path / "in", ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom deblurcli.batch import RunLock\n"
        "lock = RunLock(Path(sys.argv[1])); print(lock.path, flush=True); time.sleep(120)\n"), str(out)],
        stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert child.stdout is not None
        lock = Path(child.stdout.readline().strip())
        assert batch(tmp_path / "in", out).exit_code == 0
        assert lock.is_file()
    finally:
        child.kill()
        child.wait()


# -- --quality is part of a lossy output's fingerprint only ------------------------------------------
def test_quality_redoes_only_lossy_outputs(batch, tmp_path: Path) -> None:
    _photos(tmp_path / "in", ["a.png", "b.jpg", "c.tif"])
    out = tmp_path / "out"
    assert set(_statuses(batch(tmp_path / "in", out, "--json")).values()) == {"ok"}
    res = batch(tmp_path / "in", out, "--json", "--quality", "80")
    assert _statuses(res) == {"a.png": "skipped", "b.jpg": "ok", "c.tif": "skipped"}
    # A journal from before, which recorded --quality for PNG and TIFF too, is still honoured.
    journal = out / JOURNAL
    recs = [json.loads(line) for line in journal.read_text().splitlines()]
    for rec in recs:
        if rec["input"] != "b.jpg" and isinstance(rec.get("settings"), dict):
            rec["settings"]["quality"] = 95
    journal.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = batch(tmp_path / "in", out, "--json", "--quality", "60")
    assert _statuses(res) == {"a.png": "skipped", "b.jpg": "ok", "c.tif": "skipped"}
    # --format jpg makes every output lossy: then --quality counts for all of them.
    res = batch(tmp_path / "in", tmp_path / "jpgs", "--json", "--format", "jpg")
    assert set(_statuses(res).values()) == {"ok"}
    res = batch(tmp_path / "in", tmp_path / "jpgs", "--json", "--format", "jpg", "--quality", "70")
    assert set(_statuses(res).values()) == {"ok"}


# -- an output folder that cannot be written ---------------------------------------------------------
def _can_write(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


@pytest.fixture
def read_only(tmp_path: Path):  # noqa: ANN201 - yields a folder
    """A folder nobody can write into: permissions for a user; for root, who writes through them,
    the immutable attribute where the file system and the container allow it."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if _can_write(folder) and shutil.which("chattr"):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        if _can_write(folder):
            pytest.skip("cannot make a folder unwritable here (root without chattr +i)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o755)


def test_unwritable_output_folder_fails_once_up_front(batch, tmp_path: Path, read_only: Path) -> None:
    _photos(tmp_path / "in", ["a.png", "b.png", "c.png"])
    res = batch(tmp_path / "in", read_only, "--json")
    assert res.exit_code != 0
    lines = _error_lines(res)
    assert len(lines) == 1 and lines[0].startswith(f"error: {read_only}: cannot write there"), lines
    assert "writable folder" in lines[0]
    assert res.stdout == ""  # no per-file failures: nothing was attempted
    res = batch(tmp_path / "in", read_only / "sub", "--json")  # a folder it would have to create there
    assert res.exit_code != 0 and len(_error_lines(res)) == 1, res.stderr
