"""`deblur batch` under faults: full disks, overlapping runs, torn journals, dead runs' temp files.

Whatever happens, every file of the batch must end in the report as ok, skipped or failed with
its reason, the exit code must say whether anything failed, and no valid output may be marked
failed or lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from tmpfs import fill, small_tmpfs
from typer.testing import CliRunner, Result

from deblurcli import fsutil
from deblurcli.batch import JOURNAL, Journal, RunLock
from deblurcli.cli import app

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "NUMBA_NUM_THREADS": "1"}


def _sigint_default() -> None:
    """Give the child Ctrl-C's default meaning: a shell starts background jobs (and so a CI runner
    may start pytest) with SIGINT ignored, which children inherit and Python then honours."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)



@pytest.fixture
def batch(tiny_model: Path):  # noqa: ANN201 - a small callable
    def call(*args: str | Path) -> Result:
        return CliRunner().invoke(app, ["batch", *map(str, args), "--model", str(tiny_model), "--device", "cpu"])

    return call


def _photos(folder: Path, n: int, size: int = 48) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        PILImage.fromarray(arr).save(folder / f"img{i:02d}.png")
        names.append(f"img{i:02d}.png")
    return names


def _statuses(res: Result) -> dict[str, dict]:
    return {r["input"]: r for r in map(json.loads, res.stdout.splitlines())}


def _journal_records(out: Path) -> list[dict]:
    lines, torn = fsutil.read_lines(out / JOURNAL)
    assert not torn
    recs = []
    for line in lines:
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return recs


def _valid_image(path: Path) -> bool:
    try:
        with PILImage.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


# -- torn journal ----------------------------------------------------------------------------------
def test_torn_journal_resumes_and_next_record_starts_on_a_new_line(batch, tmp_path: Path) -> None:
    names = _photos(tmp_path / "in", 4)
    out = tmp_path / "out"
    assert batch(tmp_path / "in", out).exit_code == 0
    journal = out / JOURNAL
    lines = journal.read_text().splitlines()
    # the crash: the final "ok" line of the last file cut in the middle, its output gone too
    last = json.loads(lines[-1])
    journal.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    (out / last["input"]).unlink()
    res = batch(tmp_path / "in", out, "--json")
    assert res.exit_code == 0, res.stderr
    assert "last line was cut off" in res.stderr and res.stderr.count("cut off") == 1
    st = _statuses(res)
    assert st[last["input"]]["status"] == "ok"
    assert all(st[n]["status"] == "skipped" for n in names if n != last["input"])
    # the torn fragment stays alone on its line; every later record is whole
    raw = journal.read_text().split("\n")
    assert raw[-1] == ""
    bad = []
    for line in raw[:-1]:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            bad.append(line)
    assert bad == [lines[-1][: len(lines[-1]) // 2]]
    again = batch(tmp_path / "in", out, "--json")
    assert again.exit_code == 0 and {r["status"] for r in _statuses(again).values()} == {"skipped"}
    assert "cut off" in again.stderr  # the old fragment is reported, once, and nothing else breaks


# -- another live run ------------------------------------------------------------------------------
def test_file_claimed_by_a_live_run_is_in_progress_not_failed(batch, tmp_path: Path) -> None:
    names = _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    out.mkdir()
    other = RunLock(out)  # another run, alive (holds its lock), working on img01.png
    try:
        j = Journal(out / JOURNAL, other.run_id)
        j.add({"input": "img01.png", "status": "started", "sha256": "x", "output": "img01.png"})
        res = batch(tmp_path / "in", out, "--json")
        assert res.exit_code == 0, res.stderr
        st = _statuses(res)
        assert st["img01.png"]["status"] == "skipped" and "in progress" in st["img01.png"]["notes"][0]
        assert st["img00.png"]["status"] == st["img02.png"]["status"] == "ok"
        assert not (out / "img01.png").exists()
        assert not any(r.get("status") == "failed" for r in _journal_records(out))
    finally:
        other.close()  # that run ends without finishing img01.png (killed)
    res = batch(tmp_path / "in", out, "--json")
    assert res.exit_code == 0 and _statuses(res)["img01.png"]["status"] == "ok"
    assert all(_valid_image(out / n) for n in names)


def test_a_killed_runs_claim_is_taken_over(batch, tmp_path: Path) -> None:
    """SIGKILL leaves the claim and the lock file, but the kernel drops the lock: the run is seen as dead."""
    from deblurcli.batch import run_is_live

    _photos(tmp_path / "in", 2)
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from deblurcli.batch import JOURNAL, Journal, RunLock\n"
        "out = Path(sys.argv[1]); lock = RunLock(out)\n"
        "Journal(out / JOURNAL, lock.run_id).add({'input': 'img01.png', 'status': 'started'})\n"
        "print(lock.run_id, flush=True); time.sleep(120)\n"), str(out)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        assert run_id and run_is_live(out, run_id)
        res = batch(tmp_path / "in", out, "--json")
        assert _statuses(res)["img01.png"]["status"] == "skipped"  # in progress while it lives
    finally:
        child.kill()
        child.wait()
    assert not run_is_live(out, run_id)
    res = batch(tmp_path / "in", out, "--json")
    assert res.exit_code == 0 and _statuses(res)["img01.png"]["status"] == "ok"


def test_two_overlapping_batches_share_the_work(tiny_model: Path, tmp_path: Path) -> None:
    names = _photos(tmp_path / "in", 12, size=96)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "deblurcli", "batch", str(tmp_path / "in"), str(out), "--json",
           "--model", str(tiny_model), "--device", "cpu"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr
        recs = [json.loads(line) for line in stdout.splitlines()]
        assert sorted(r["input"] for r in recs) == names  # every file in each run's report
        assert all(r["status"] in ("ok", "skipped") for r in recs), recs
    assert all(_valid_image(out / n) for n in names)
    recs = _journal_records(out)
    assert not any(r.get("status") == "failed" for r in recs)
    last = {r["input"]: r["status"] for r in recs if r.get("status") in ("ok", "failed")}
    assert last == dict.fromkeys(names, "ok")
    assert not [p for p in out.iterdir() if p.name.endswith((".part", ".lock"))]
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0 and {json.loads(x)["status"] for x in rerun.stdout.splitlines()} == {"skipped"}


# -- stale temporary files -------------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_dead_runs_part_files_are_removed_at_the_next_run(batch, tmp_path: Path) -> None:
    _photos(tmp_path / "in" / "sub", 1)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    tag = fsutil.host_tag()
    dead = out / "sub" / f".img00.png.{tag}-{_dead_pid()}.a1b2c3d4.part"
    live_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = out / f".x.png.{tag}-{live_proc.pid}.a1b2c3d4.part"
        user = out / "sub" / "draft.part"
        for p in (dead, live, user):
            p.write_bytes(b"half an image")
        res = batch(tmp_path / "in", out, "--recursive")
        assert res.exit_code == 0, res.stderr
        assert not dead.exists()
        assert live.exists() and user.exists()
    finally:
        live_proc.kill()
        live_proc.wait()


def test_run_removes_dead_part_files_in_its_output_folder(tiny_model: Path, tmp_path: Path) -> None:
    _photos(tmp_path, 1)
    dead = tmp_path / f".img00_deblurred.png.{fsutil.host_tag()}-{_dead_pid()}.a1b2c3d4.part"
    dead.write_bytes(b"half")
    res = CliRunner().invoke(app, ["run", str(tmp_path / "img00.png"), "--model", str(tiny_model), "--device", "cpu"])
    assert res.exit_code == 0, res.stderr
    assert not dead.exists() and (tmp_path / "img00_deblurred.png").is_file()


# -- full disk -------------------------------------------------------------------------------------
def test_batch_into_a_full_disk_fails_every_file_and_exits_1(batch, tmp_path: Path) -> None:
    names = _photos(tmp_path / "in", 6)
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        out.mkdir()
        fill(disk, leave=0)
        report = tmp_path / "report.json"
        res = batch(tmp_path / "in", out, "--json", "--report", report)
        assert res.exit_code == 1
        st = _statuses(res)
        assert sorted(st) == names
        assert all(r["status"] == "failed" and "disk full" in r["error"] for r in st.values()), st
        rep = json.loads(report.read_text())
        assert rep["failed"] == 6 and len(rep["files"]) == 6
        assert "6" in res.stderr  # the summary table shows the failures
        # a report that cannot be written either: the summary still shows, then one error line, exit 1
        res = batch(tmp_path / "in", out, "--report", disk / "report.json")
        assert res.exit_code == 1
        assert "failed" in res.stderr and "report.json" in res.stderr.splitlines()[-1]
        assert "No space left" in res.stderr or "disk full" in res.stderr


def test_disk_filling_up_part_way_then_rerun(batch, tmp_path: Path) -> None:
    names = _photos(tmp_path / "in", 30, size=64)  # ~12 KB per PNG
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        out.mkdir()
        fill(disk, leave=150_000)  # room for some outputs and journal lines, not all
        report = tmp_path / "report.json"
        res = batch(tmp_path / "in", out, "--json", "--report", report)
        assert res.exit_code == 1
        st = _statuses(res)
        assert sorted(st) == names  # every file reported, none dropped
        ok = [n for n, r in st.items() if r["status"] == "ok"]
        failed = [n for n, r in st.items() if r["status"] == "failed"]
        assert ok and failed and len(ok) + len(failed) == 30
        assert all("disk full" in st[n]["error"] for n in failed), [st[n]["error"] for n in failed]
        assert all(_valid_image(out / n) for n in ok)
        assert json.loads(report.read_text())["failed"] == len(failed)
        assert not [p for p in out.iterdir() if p.name.endswith(".part")]
        # space comes back: the rerun does the rest, without --retry-failed
        for p in disk.glob("filler*"):
            p.unlink()
        again = batch(tmp_path / "in", out, "--json")
        assert again.exit_code == 0, again.stderr
        st2 = _statuses(again)
        assert sorted(st2) == names
        assert all(st2[n]["status"] == "skipped" for n in ok)
        assert all(_valid_image(out / n) for n in names)
        final = {r["input"]: r["status"] for r in _journal_records(out) if r.get("status") in ("ok", "failed")}
        assert final == dict.fromkeys(names, "ok")


# -- Ctrl-C ----------------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_twice_exits_130_without_a_traceback(tiny_model: Path, tmp_path: Path) -> None:
    import signal
    import time

    _photos(tmp_path / "in", 40, size=128)
    cmd = [sys.executable, "-m", "deblurcli", "batch", str(tmp_path / "in"), str(tmp_path / "out"), "--json",
           "--model", str(tiny_model), "--device", "cpu"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                         preexec_fn=_sigint_default)
    assert p.stdout is not None
    p.stdout.readline()  # the first file is done: the reader and writer threads are busy
    p.send_signal(signal.SIGINT)
    time.sleep(0.01)
    p.send_signal(signal.SIGINT)  # while the first is being handled: threads still being joined
    _out, err = p.communicate(timeout=120)
    # 130 from our handler; -SIGINT if the second arrived after the interpreter's own clean-up
    # had begun (the shell shows 130 for both).
    assert p.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "interrupted" in err
    out = tmp_path / "out"
    assert all(_valid_image(f) for f in out.glob("*.png"))  # what was written is whole


def test_a_claim_refused_by_a_full_disk_is_retried_without_retry_failed(
        batch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills just as a file is claimed (its "started" journal line), then frees a little so
    the failure itself is recorded: that says nothing about the input, so a rerun must try again."""
    import errno

    names = _photos(tmp_path / "in", 3)
    out = tmp_path / "out"
    real_add = Journal.add

    def add(self: Journal, rec: dict) -> None:
        if rec["input"] == "img01.png" and rec.get("status") == "started":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, rec)

    monkeypatch.setattr(Journal, "add", add)
    first = batch(tmp_path / "in", out, "--json")
    assert first.exit_code == 1
    assert "disk full" in _statuses(first)["img01.png"]["error"]
    monkeypatch.setattr(Journal, "add", real_add)
    again = batch(tmp_path / "in", out, "--json")
    assert again.exit_code == 0, again.stderr
    st = _statuses(again)
    assert st["img01.png"]["status"] == "ok" and all(st[n]["status"] == "skipped" for n in names if n != "img01.png")


def test_ctrl_c_still_writes_the_report_with_what_is_left(batch, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A script that stops a long batch must learn from --report what finished and what did not,
    and the same command again must finish exactly the rest."""
    from deblurcli.api import Deblurrer

    names = _photos(tmp_path / "in", 6)
    out, report = tmp_path / "out", tmp_path / "report.json"
    real = Deblurrer.restore_image
    calls = []

    def stop_at_the_third(self, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Deblurrer, "restore_image", stop_at_the_third)
    res = batch(tmp_path / "in", out, "--report", report)
    assert res.exit_code == 130, res.stderr
    assert "4 file(s) not done" in res.stderr and "Traceback" not in res.stderr
    rep = json.loads(report.read_text())
    assert rep["interrupted"] is True and (rep["ok"], rep["failed"], rep["pending"]) == (2, 0, 4)
    by_name = {f["input"]: f for f in rep["files"]}
    assert sorted(by_name) == names
    assert [by_name[n]["status"] for n in names] == ["ok", "ok", "pending", "pending", "pending", "pending"]
    assert all(_valid_image(out / n) for n in names[:2]) and not any((out / n).exists() for n in names[2:])

    monkeypatch.setattr(Deblurrer, "restore_image", real)
    res = batch(tmp_path / "in", out, "--report", report)
    assert res.exit_code == 0, res.stderr
    rep = json.loads(report.read_text())
    assert rep["interrupted"] is False and (rep["ok"], rep["skipped"], rep["pending"]) == (4, 2, 0)
