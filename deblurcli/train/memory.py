"""How much memory a training step will take, known before the first step is taken.

A run that does not fit must stop with numbers and a fix, not be found by the kernel's OOM killer
minutes in (the paper's ALGNet recipe on a 24 GB laptop did exactly that, leaving its data-loader
workers behind). So the trainer runs one small pass of the real network and loss at batch 1
(the pass it needs anyway to find unused parameters), counting the bytes autograd keeps for the
backward pass, and scales that by the pixels of the largest crop batch the run will use.
Activations grow with pixels for every network here (convolutions, and scans along rows and
columns), which is what makes the scaling sound; the headroom factor covers what the count cannot
see: the backward pass's own temporaries, the allocator's slack, and state that custom autograd
functions keep on ``ctx`` rather than saving.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: Multiplies the counted activations. Calibrated on this project's CPU runs: the measured peak
#: rise of two real steps was 2.1x the bytes autograd saved for ScanUNet at 128 and 256 px x 8
#: (its numba scan keeps state on ``ctx``) and 1.5x for ALGNet at 64 and 128 px x 2.
HEADROOM = 2.1
#: A data-loader worker's own memory (Python, torch, OpenCV, a decoded photo): what a forkserver
#: worker of this project measures on Linux, rounded up.
WORKER_BYTES = 350 << 20
#: Refuse a run whose estimate exceeds this share of the memory it may use: the rest is for the
#: operating system, the page cache the photos are read through, and the estimate's own error.
USABLE_SHARE = 0.85

GB = float(1 << 30)


@dataclass(frozen=True)
class StepMemory:
    """A run's memory as a function of its crop batch (bytes)."""

    state: int  # weights, gradients, Adam's two moments and the EMA copy
    per_pixel: float  # activations kept for backward per crop pixel, headroom included
    workers: int  # data-loader worker processes (CPU memory only)
    device: str = "cpu"

    @classmethod
    def from_probe(cls, model: nn.Module, saved: int, *, side: int, device: str, ema: bool,
                   workers: int) -> StepMemory:
        """From the bytes saved by a batch-1 pass at ``side`` x ``side`` (:func:`saved_activations`)."""
        params = list(model.parameters())
        weights = sum(p.numel() * p.element_size() for p in params)
        trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
        state = weights * (2 if ema else 1) + trainable * 3  # + gradients and Adam's exp_avg, exp_avg_sq
        per_pixel = HEADROOM * saved / float(side * side) + 2 * 3 * 4  # + the float32 blurred and sharp crops
        return cls(state=state, per_pixel=per_pixel, workers=workers, device=device)

    def activations(self, patch: int, batch: int) -> int:
        return int(self.per_pixel * patch * patch * batch)

    def total(self, patch: int, batch: int) -> int:
        extra = self.workers * WORKER_BYTES if self.device == "cpu" else 0
        return self.state + self.activations(patch, batch) + extra

    def largest_fitting(self, available: int, patch: int, batch: int, multiple: int) -> tuple[int, int] | None:
        """The largest (patch, batch) at or below the asked ones that fits, trying batch first:
        a smaller batch keeps the crop size the network learns context from."""
        budget = available * USABLE_SHARE
        for b in range(batch, 0, -1):
            if self.total(patch, b) <= budget:
                return patch, b
        p = patch - multiple
        while p >= max(multiple, 32):
            if self.total(p, 1) <= budget:
                return p, 1
            p -= multiple
        return None


def available_bytes(device: torch.device) -> int:
    """What this process may still allocate: free GPU memory, or RAM the system and this
    process's cgroup (a container's or a batch job's limit) both still allow."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    avail = _meminfo_available()
    limit = _cgroup_room()
    return min(avail, limit) if limit is not None else avail


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30  # unknown: a laptop's worth, so the check still catches the paper recipes


def _cgroup_room() -> int | None:
    """Room left under cgroup v2's memory.max, which MemAvailable knows nothing about."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            raw = f.read().strip()
        if raw == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        return max(0, int(raw) - used)
    except (OSError, ValueError):
        return None


def _storage_bytes(t: Tensor) -> tuple[int, int]:
    try:
        storage = t.untyped_storage()
        return storage.data_ptr(), storage.nbytes()
    except (RuntimeError, NotImplementedError):  # tensors without storage (sparse, meta, ...)
        return id(t), t.numel() * t.element_size()


class SavedBytes:
    """Bytes of distinct storages autograd saved for backward, parameters left out."""

    def __init__(self, model: nn.Module) -> None:
        self._params = {_storage_bytes(p)[0] for p in model.parameters()}
        self._seen: dict[int, int] = {}

    def pack(self, t: Tensor) -> Tensor:
        ptr, nbytes = _storage_bytes(t)
        if ptr not in self._params:
            self._seen[ptr] = max(self._seen.get(ptr, 0), nbytes)
        return t

    @property
    def bytes(self) -> int:
        return sum(self._seen.values())


@contextlib.contextmanager
def saved_activations(model: nn.Module) -> Iterator[SavedBytes]:
    """Count what autograd keeps for the backward pass of everything run inside."""
    counter = SavedBytes(model)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        yield counter


def describe(mem: StepMemory, patch: int, batch: int) -> str:
    """``3.2 GB (weights, gradients, Adam, EMA 0.6 GB; activations at 256 px x 8 2.3 GB; ...)``."""
    parts = [f"weights, gradients, Adam and EMA {mem.state / GB:.1f} GB",
             f"activations at {patch} px x {batch} {mem.activations(patch, batch) / GB:.1f} GB"]
    if mem.device == "cpu" and mem.workers:
        parts.append(f"{mem.workers} data workers {mem.workers * WORKER_BYTES / GB:.1f} GB")
    return f"{mem.total(patch, batch) / GB:.1f} GB ({'; '.join(parts)})"
