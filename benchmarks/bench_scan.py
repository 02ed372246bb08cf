"""Time every selective-scan backend on the shapes our models actually run.

S1  b=1,   d=64,   n=32, l=65536  ALGNet level 1 on a 256x256 tile
S2  b=1,   d=1024, n=32, l=256    ALGNet deepest level
S3  b=1,   d=96,   n=8,  l=65536  EVSSM level 1, grouped B/C (g=1)
S4  b=256, d=144,  n=16, l=256    XYScanNet row scans

Every call is the models' call: D, z, delta_bias and softplus on, float32, no autograd. Each
(backend, shape) gets one warm-up call (numba compiles there) and then the median of up to
``--repeats`` timed calls, stopping early past ``--max-seconds`` so the Python loop on S1 does
not take minutes. One thread by default, so numbers compare across machines of different sizes.

    python benchmarks/bench_scan.py [--threads N] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

SCENARIOS: dict[str, dict[str, Any]] = {
    "S1": {"b": 1, "d": 64, "n": 32, "l": 65536, "groups": None, "what": "ALGNet level 1, 256x256"},
    "S2": {"b": 1, "d": 1024, "n": 32, "l": 256, "groups": None, "what": "ALGNet deepest"},
    "S3": {"b": 1, "d": 96, "n": 8, "l": 65536, "groups": 1, "what": "EVSSM level 1 (grouped)"},
    "S4": {"b": 256, "d": 144, "n": 16, "l": 256, "groups": None, "what": "XYScanNet rows"},
}
CPU_BACKENDS = ("reference", "torch", "numba")
GPU_BACKENDS = ("triton", "cuda")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="torch (and numba) threads (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    p.add_argument("--max-seconds", type=float, default=20.0, help="stop repeating past this much time")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of S1..S4")
    p.add_argument("--backends", default=None, help="comma-separated subset (default: all that run here)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this path ('-': stdout)")
    return p.parse_args(argv)


def make_inputs(spec: dict[str, Any], device: str) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    b, d, n, l, groups = spec["b"], spec["d"], spec["n"], spec["l"], spec["groups"]
    shape_bc = (b, n, l) if groups is None else (b, groups, n, l)
    t = {
        "u": torch.randn(b, d, l, generator=g),
        "delta": torch.randn(b, d, l, generator=g) * 0.5 - 1.0,
        "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),  # Mamba's S4D-real init
        "B": torch.randn(*shape_bc, generator=g),
        "C": torch.randn(*shape_bc, generator=g),
        "D": torch.ones(d),
        "z": torch.randn(b, d, l, generator=g),
        "delta_bias": torch.rand(d, generator=g) * 0.5,
    }
    return {k: v.to(device) for k, v in t.items()}


def backend_fn(name: str) -> tuple[Callable[..., Any], str] | None:
    """A call of ``name`` through the public dispatch, and its device; None if it cannot run here."""
    import functools

    import torch

    from deblurcli.ssm import available_backends, selective_scan

    if name not in available_backends():
        return None
    if name in GPU_BACKENDS and not torch.cuda.is_available():
        return None
    return functools.partial(selective_scan, backend=name), "cuda" if name in GPU_BACKENDS else "cpu"


def time_call(fn: Callable[[], Any], device: str, repeats: int, max_seconds: float) -> tuple[float, Any]:
    import torch

    def once() -> tuple[float, Any]:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    _, out = once()  # warm-up: compilation, caches, allocator
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < max_seconds):
        dt, out = once()
        times.append(dt)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    wanted = args.backends.split(",") if args.backends else list(CPU_BACKENDS + GPU_BACKENDS)
    runnable = {name: fb for name in wanted if (fb := backend_fn(name)) is not None}
    skipped = [name for name in wanted if name not in runnable]
    results: dict[str, Any] = {
        "threads": args.threads, "torch": torch.__version__, "device": _device_name(),
        "skipped_backends": skipped, "scenarios": {},
    }
    for key in args.scenarios.split(","):
        spec = SCENARIOS[key]
        row: dict[str, Any] = {k: spec[k] for k in ("b", "d", "n", "l", "groups", "what")}
        row["seconds"], row["max_rel_diff_vs_loop"] = {}, {}
        y_ref = None
        for name, (fn, device) in runnable.items():
            inputs = make_inputs(spec, device)

            def call(fn: Callable[..., Any] = fn, t: dict[str, Any] = inputs) -> Any:
                return fn(t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["delta_bias"],
                          True, False)

            with torch.no_grad():
                seconds, y = time_call(call, device, args.repeats, args.max_seconds)
            row["seconds"][name] = seconds
            y = y.float().cpu()
            if y_ref is None:
                y_ref = y
            row["max_rel_diff_vs_loop"][name] = ((y - y_ref).abs().max() / y_ref.abs().max()).item()
            print(f"  {key} {name:<9} {seconds:9.4f} s", file=sys.stderr, flush=True)
        loop = row["seconds"].get("reference")
        row["speedup_vs_loop"] = {k: loop / v for k, v in row["seconds"].items()} if loop else {}
        results["scenarios"][key] = row
    print(format_table(results))
    if args.json:
        text = json.dumps(results, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
    return 0


def _device_name() -> str:
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        return f"{cpu} + {torch.cuda.get_device_name()}"
    return cpu


def format_table(results: dict[str, Any]) -> str:
    """Markdown: seconds per call, and in brackets how many times faster than the Python loop."""
    names: list[str] = []
    for row in results["scenarios"].values():
        names += [n for n in row["seconds"] if n not in names]
    head = ["scenario", "shape (b, d, n, l)"] + [("loop" if n == "reference" else n) for n in names]
    lines = [
        f"selective scan, float32, {results['threads']} thread(s), {results['device']}: "
        "median seconds per call (x = speed-up over the Python loop)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for key, row in results["scenarios"].items():
        cells = [f"{key}: {row['what']}", f"{row['b']}, {row['d']}, {row['n']}, {row['l']}"]
        for n in names:
            s = row["seconds"].get(n)
            x = row["speedup_vs_loop"].get(n)
            cells.append("-" if s is None else (f"{s:.4f}" if x is None or n == "reference" else f"{s:.4f} ({x:.1f}x)"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
