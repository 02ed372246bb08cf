"""What a run tells the people watching it: a live display, a JSON-lines log, TensorBoard.

A terminal gets a rich progress bar on stderr (loss, learning rate, images/s, last validation
PSNR, ETA) that moves at every step. Anything else (a log file, ``nohup``, CI) gets one plain
line per log interval, since a redrawn bar in a file is unreadable, and a line at least every
HEARTBEAT_S seconds in between, from a timer, so that a slow first step or a long validation
never looks like a hang. ``log.jsonl`` is the machine-readable record: one object
per log interval, appended and flushed as it happens so a crash loses nothing already logged.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from ..fsutil import atomic_write, read_lines
from ..progress import bar

#: Without a terminal, the longest silence (seconds) between two progress lines.
HEARTBEAT_S = 30.0

def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def truncate_log(path: Path, step: int) -> None:
    """Drop lines logged after ``step``: a resumed run re-does those steps and logs them again."""
    if not path.exists():
        return
    kept = []
    lines, _torn = read_lines(path)  # a torn last line (a crash mid-append) is dropped there
    for line in lines:
        try:
            if int(json.loads(line).get("step", 0)) <= step:
                kept.append(line)
        except (ValueError, AttributeError):
            continue  # a line no run of ours wrote
    atomic_write(path, "".join(k + "\n" for k in kept))  # a crash now must not lose the whole log


class Reporter:
    """Rank 0's outputs. All methods are cheap no-ops on other ranks (``enabled=False``)."""

    def __init__(self, out: Path, *, total: int, start: int, enabled: bool, console: Console | None,
                 tensorboard: bool) -> None:
        self.enabled = enabled
        self.total = total
        self.start = start
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self.progress: Progress | None = None
        self.task: Any = None
        self.log_file = None
        self.tb = None
        self.last_val: float | None = None
        self.last_gain = 0.0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._last_line = self._t0
        self._step = start
        self._info = ""
        self._phase = "starting"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if not enabled:
            return
        self.log_file = open(out / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tb"), purge_step=start + 1 if start else None)
            except ImportError:
                self.note("log.tensorboard is on but tensorboard is not installed (pip install tensorboard); "
                          "continuing without it")
        if self.live:
            self.progress = bar(self.console, "items", field="info")
            self.progress.start()
            self.task = self.progress.add_task("[bold]train[/]", total=total, completed=start, info="starting")
        else:
            self._heartbeat = threading.Thread(target=self._beat, name="deblur-train-heartbeat", daemon=True)
            self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(min(5.0, HEARTBEAT_S)):
            if time.monotonic() - self._last_line >= HEARTBEAT_S:
                self._line()

    def _line(self, extra: str = "") -> None:
        with self._lock:
            phase = "" if self._phase == "training" else f"  ({self._phase})"
            info = f"  {self._info}" if self._info else ""
            print(f"step {self._step}/{self.total}{info}{extra}{phase}  eta {_fmt_eta(self.eta(self._step))}",
                  file=sys.stderr, flush=True)
            self._last_line = time.monotonic()

    def advance(self, step: int) -> None:
        """Called after every step: the bar moves each step, not each log interval."""
        if not self.enabled:
            return
        self._step, self._phase = step, "training"
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=self._info or "training")

    def phase(self, what: str) -> None:
        """What the run is doing between steps (``validating``, ``saving``), shown until the next step."""
        if not self.enabled:
            return
        self._phase = what
        if self.progress is not None:
            self.progress.update(self.task, info=f"{self._info}  {what}".strip())

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.console.print(message)
        else:
            print(message, file=sys.stderr, flush=True)

    def eta(self, step: int) -> float:
        done = step - self.start
        if done <= 0:
            return math.inf
        return (time.monotonic() - self._t0) / done * (self.total - step)

    def log(self, record: dict[str, Any]) -> None:
        """One log interval (and/or a validation result)."""
        if not self.enabled:
            return
        self._phase = "training"
        if record.get("val_psnr") is not None:
            self.last_val = record["val_psnr"]
            self.last_gain = record["val_psnr"] - record.get("val_input_psnr", record["val_psnr"])
        assert self.log_file is not None
        self.log_file.write(json.dumps(record, allow_nan=True) + "\n")
        self.log_file.flush()
        step = int(record["step"])
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float) and math.isfinite(value):
                    self.tb.add_scalar(key.replace("_", "/", 1) if key.startswith(("val_", "loss_")) else key,
                                       value, step)
            self.tb.flush()
        parts = []
        if record.get("loss") is not None:
            parts.append(f"loss {record['loss']:.4f}")
        if record.get("lr") is not None:
            parts.append(f"lr {record['lr']:.2e}")
        if record.get("images_per_s") is not None:
            parts.append(f"{record['images_per_s']:.1f} img/s")
        if self.last_val is not None:
            parts.append(f"val {self.last_val:.2f} dB ({self.last_gain:+.2f} over input)")
        self._info, self._step = "  ".join(parts), step
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=self._info)
        else:
            self._line(f"  ssim {record['val_ssim']:.4f}" if record.get("val_ssim") is not None else "")

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
