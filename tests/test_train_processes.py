"""`deblur train` leaves no processes behind: not when it ends, fails, is interrupted or is killed.

A training run starts data-loader workers (through a forkserver). When the kernel's OOM killer
took the trainer, they used to stay running, holding memory on a machine already out of it. These
tests run a real trainer in its own session, so that every process it starts can be found and
signalled as a group, and check that nothing it started is still alive afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


def _ppid_and_state(pid: int) -> tuple[int, str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return int(fields[1]), fields[0]


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _ppid_and_state(int(entry.name))
            if info is not None:
                children.setdefault(info[0], []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        info = _ppid_and_state(pid)
        if info is not None and info[1] != "Z":
            out.add(pid)
    return out


def _start(out: Path, module: str = "deblurcli.train") -> subprocess.Popen[bytes]:
    entry = ["deblurcli", "train"] if module == "deblurcli" else [module]
    cmd = [sys.executable, "-m", *entry, "--arch", "xyscannet", "--steps", "1000000", "--patch-size", "16",
           "--batch-size", "1", "--num-workers", "2", "--threads", "1", "--device", "cpu", "--out", str(out)]
    for s in ("data.dead_leaves=1", "val.count=0", "log.every=1", "checkpoint.every=1", "model.dim=4",
              "model.num_blocks=[1, 1, 1]"):
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "DEBLUR_SCAN_BACKEND": "torch"}
    return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=_as_in_a_terminal)


def _as_in_a_terminal() -> None:
    """Ctrl-C reaches a foreground command. A test run started in the background (``cmd &``, nohup)
    ignores SIGINT, and its children inherit that (as they should), which would make the SIGINT
    case here a test of the runner's launch rather than of the trainer."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _training(proc: subprocess.Popen[bytes], out: Path) -> set[int]:
    """Wait until steps are being taken (so the workers are up); returns the trainer's descendants."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        log = out / "log.jsonl"
        if log.exists() and any(json.loads(line).get("step", 0) >= 2 for line in log.read_text().splitlines()
                                if line.strip()):
            kids = _descendants(proc.pid)
            if len(kids) >= 3:  # the forkserver and two workers
                return kids
        time.sleep(0.5)
    raise AssertionError("the trainer took no steps within 180 s")


def _wait_gone(pids: set[int], seconds: float = 20) -> set[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pids)


@pytest.mark.parametrize(("how", "module"), [("SIGKILL", "deblurcli.train"), ("SIGINT", "deblurcli.train"),
                                             ("SIGTERM", "deblurcli.train"), ("SIGINT", "deblurcli")])
def test_no_worker_outlives_the_trainer(tmp_path: Path, how: str, module: str) -> None:
    """SIGKILL is what the OOM killer sends; SIGINT is Ctrl-C in a terminal (sent to the whole
    foreground group); SIGTERM is what a batch scheduler or `kill` sends. ``deblur train`` and
    torchrun's ``python -m deblurcli.train`` both say how to resume after Ctrl-C."""
    proc = _start(tmp_path / "run", module)
    kids: set[int] = set()
    try:
        kids = _training(proc, tmp_path / "run")
        if how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, getattr(signal, how))
        code = proc.wait(timeout=60)
        left = _wait_gone(kids)
        assert not left, f"{how}: processes left running: {sorted(left)}"
        if how == "SIGINT":
            assert code == 130
            assert b"--resume" in (proc.stderr.read() if proc.stderr else b"")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _alive(kids):  # only after a failure above: leave no orphans of our own either
            os.kill(pid, signal.SIGKILL)
