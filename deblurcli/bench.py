"""``deblur bench``: timings anyone can rerun — a model end to end, and the scan backends alone.

Timings take the median of repeats after a warm-up (the first call compiles numba kernels and
fills caches). CUDA work is asynchronous, so every timing is bracketed by synchronisation. Peak
memory is the process's peak resident set on CPU (reset before each measurement through
``/proc/self/clear_refs`` where Linux offers it) and ``max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from . import ssm
from .errors import OptionError

# The scan shapes the models really run (issue #2): ALGNet level 1 of a 256x256 tile, ALGNet's
# deepest level, EVSSM level 1 (grouped B/C), XYScanNet's row scans.
SCAN_SHAPES: dict[str, dict[str, Any]] = {
    "S1 algnet-l1": dict(b=1, d=64, n=32, l=65536, grouped=False),
    "S2 algnet-deep": dict(b=1, d=1024, n=32, l=256, grouped=False),
    "S3 evssm-l1": dict(b=1, d=96, n=8, l=65536, grouped=True),
    "S4 xyscan-rows": dict(b=256, d=144, n=16, l=256, grouped=False),
}


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise OptionError("size", "expected WxH, e.g. 1024x768", value=text) from None
    if w < 16 or h < 16:
        raise OptionError("size", "at least 16x16", value=text)
    return w, h


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_call(fn: Callable[[], Any], device: torch.device, repeat: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def bench_model(d: Any, w: int, h: int, *, repeat: int = 3) -> dict[str, Any]:
    """Median seconds for one WxH image through ``Deblurrer.restore`` (tiling included).

    Networks take the same time whatever the pixels, so they get a smooth random image; the shake
    engine (``--model shake``) gets dead leaves blurred by a camera path (see below).
    """
    rng = np.random.default_rng(0)
    # A smooth random image: realistic for the model's arithmetic, reproducible everywhere.
    small = rng.random((max(2, h // 32), max(2, w // 32), 3)).astype(np.float32)
    import cv2

    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1).astype(np.float32)
    if getattr(d, "classical", False):
        # The shake engine's time depends on what it finds (a smooth image sends its kernel-size
        # search to the top): time it on what it is for, edges shaken by a 21 px camera path.
        from .synth import blur_image, dead_leaves, random_kernel

        img = blur_image(dead_leaves((h, w), rng), random_kernel(21, rng, fill=0.9)).clip(0, 1).astype(np.float32)
    _reset_peak(d.device)
    times = time_call(lambda: d.restore(img), d.device, repeat)
    med = statistics.median(times)
    mp = w * h / 1e6
    info = d.describe()
    return {
        "model": d.name, "arch": info["arch"], "device": info["device"], "precision": info["precision"],
        "scan_backend": info["scan_backend"], "tile": d.tile_for(h, w), "width": w, "height": h,
        "seconds": med, "seconds_all": times, "megapixels_per_second": mp / med, "seconds_per_megapixel": med / mp,
        "peak_memory_mb": _peak_mb(d.device), "threads": torch.get_num_threads(),
    }


def scan_inputs(shape: dict[str, Any], device: torch.device, seed: int = 0) -> tuple[tuple[Any, ...], dict[str, Any]]:
    g = torch.Generator().manual_seed(seed)
    b, d, n, l = shape["b"], shape["d"], shape["n"], shape["l"]
    u = torch.randn(b, d, l, generator=g)
    delta = torch.randn(b, d, l, generator=g) * 0.5
    A = -torch.exp(torch.randn(d, n, generator=g) * 0.5)
    bc = (b, 1, n, l) if shape["grouped"] else (b, n, l)
    B, C = torch.randn(*bc, generator=g), torch.randn(*bc, generator=g)
    D, z, bias = torch.randn(d, generator=g), torch.randn(b, d, l, generator=g), torch.randn(d, generator=g) * 0.1
    args = tuple(t.to(device) for t in (u, delta, A, B, C, D))
    return args, {"z": z.to(device), "delta_bias": bias.to(device), "delta_softplus": True}


def bench_scans(device: torch.device, *, repeat: int = 3, shapes: dict[str, dict[str, Any]] | None = None,
                backends: list[str] | None = None, loop_repeat: int = 1) -> list[dict[str, Any]]:
    """Each available backend on each shape, with its ratio to the sequential Python loop."""
    usable = [b for b in (backends or ssm.available_backends())]
    if device.type == "cpu":
        usable = [b for b in usable if b not in ("cuda",) and not (b == "triton" and not _triton_on_cpu())]
    else:
        usable = [b for b in usable if b != "numba"]
    rows = []
    for name, shape in (shapes or SCAN_SHAPES).items():
        args, kw = scan_inputs(shape, device)
        secs: dict[str, float] = {}
        for be in usable:
            reps = loop_repeat if be == "reference" else repeat
            with torch.inference_mode():
                def call(be: str = be, args: tuple[Any, ...] = args, kw: dict[str, Any] = kw) -> Any:
                    return ssm.selective_scan(*args, **kw, backend=be)

                times = time_call(call, device, reps, warmup=0 if be == "reference" else 1)
            secs[be] = statistics.median(times)
        loop = secs.get("reference")
        rows.append({
            "shape": name, **shape, "seconds": secs,
            "ratio": {k: (loop / v if loop else None) for k, v in secs.items()},
        })
    return rows


def _triton_on_cpu() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"
