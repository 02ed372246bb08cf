"""Time every selective-scan backend on the shapes our models actually run.

S1  b=1,   d=64,   n=32, l=65536  ALGNet level 1 on a 256x256 tile
S2  b=1,   d=1024, n=32, l=256    ALGNet deepest level
S3  b=1,   d=96,   n=8,  l=65536  EVSSM level 1, grouped B/C (g=1)
S4  b=256, d=144,  n=16, l=256    XYScanNet row scans

Every call is the models' call: D, z, delta_bias and softplus on, float32, no autograd. Each
(backend, shape) gets one warm-up call (numba compiles there) and then the median of up to
``--repeats`` timed calls, stopping early past ``--max-seconds`` so the Python loop on S1 does
not take minutes. One thread by default, so numbers compare across machines of different sizes.

``--training-shapes`` times training instead: the forward under autograd and forward + backward
on the scans of one step of the embedded model (ALGNet width 8, d_state 16, batch 8 of 128x128
crops; T1..T5 below, each run several times per step), with the inputs laid out as the Mamba
block passes them (views of time-major projections, so the backend's layout handling counts).
Backends default to numba there: the loop and torch backends take minutes per step.

T1  b=8, d=16,  n=16, l=16384    T4  b=8, d=128, n=16, l=256
T2  b=8, d=32,  n=16, l=4096     T5  b=8, d=256, n=16, l=64
T3  b=8, d=64,  n=16, l=1024

    python benchmarks/bench_scan.py [--threads N] [--repeats 5] [--json out.json] [--training-shapes]
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
TRAINING_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "T1": (8, 16, 16, 16384), "T2": (8, 32, 16, 4096), "T3": (8, 64, 16, 1024),
    "T4": (8, 128, 16, 256), "T5": (8, 256, 16, 64),
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
    p.add_argument("--training-shapes", action="store_true",
                   help="time forward and forward+backward on the embedded model's training scans (T1..T5)")
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


def make_training_inputs(b: int, d: int, n: int, l: int, device: str) -> dict[str, Any]:
    """Leaves of a Mamba block's scan call, laid out as ``Mamba._forward`` makes them.

    u is the fresh (b, d, l) output of the depthwise conv and SiLU; z, delta, B and C are
    channel-major views of the time-major (b, l, features) in_proj, dt_proj and x_proj outputs.
    Values follow the block's initialisation: S4D-real A, step sizes around 0.001..0.1.
    """
    import torch

    g = torch.Generator().manual_seed(0)
    rank = 1
    leaves = {
        "u": torch.randn(b, d, l, generator=g),
        "xz": torch.randn(b, l, 2 * d, generator=g),
        "x_dbl": torch.randn(b, l, rank + 2 * n, generator=g),
        "delta": torch.randn(b, l, d, generator=g) * 0.1,
        "A_log": torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1),
        "D": torch.ones(d),
        "delta_bias": torch.rand(d, generator=g) * -4.0 - 2.5,
    }
    return {k: v.to(device).requires_grad_() for k, v in leaves.items()}


def training_call(fn: Callable[..., Any], t: dict[str, Any], n: int) -> Any:
    """The block's scan call on views of the leaves, as ``Mamba._forward`` makes it."""
    import torch

    z = t["xz"].transpose(1, 2).chunk(2, dim=1)[1]
    _, Bm, Cm = torch.split(t["x_dbl"], [t["x_dbl"].shape[-1] - 2 * n, n, n], dim=-1)
    return fn(t["u"], t["delta"].transpose(1, 2), -torch.exp(t["A_log"]), Bm.transpose(1, 2),
              Cm.transpose(1, 2), t["D"], z, t["delta_bias"], True, False)


def run_training_shapes(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Forward (autograd on) and forward + backward of each training scan, per backend."""
    import torch

    wanted = args.backends.split(",") if args.backends else ["numba"]
    runnable = {name: fb for name in wanted if (fb := backend_fn(name)) is not None}
    results["skipped_backends"] = [name for name in wanted if name not in runnable]
    results["training"] = {}
    for key, (b, d, n, l) in TRAINING_SHAPES.items():
        row: dict[str, Any] = {"b": b, "d": d, "n": n, "l": l, "forward": {}, "forward_backward": {}}
        for name, (fn, device) in runnable.items():
            t = make_training_inputs(b, d, n, l, device)
            # the loss weights the output token-major, as out_proj does: its gradient arrives
            # as a (b, d, l) view of a (b, l, d) tensor, like the block's
            w = torch.randn(b, l, d, generator=torch.Generator().manual_seed(1)).to(device)

            def forward(fn: Callable[..., Any] = fn, t: dict[str, Any] = t, n: int = n) -> Any:
                return training_call(fn, t, n)

            def step(fn: Callable[..., Any] = fn, t: dict[str, Any] = t, w: Any = w, n: int = n) -> None:
                for v in t.values():
                    v.grad = None
                (training_call(fn, t, n).transpose(1, 2) * w).sum().backward()

            row["forward"][name], _ = time_call(forward, device, args.repeats, args.max_seconds)
            row["forward_backward"][name], _ = time_call(step, device, args.repeats, args.max_seconds)
            print(f"  {key} {name:<9} forward {row['forward'][name]:8.4f} s  "
                  f"forward+backward {row['forward_backward'][name]:8.4f} s", file=sys.stderr, flush=True)
        results["training"][key] = row
    print(format_training_table(results))


def _table_head(title: str, head: list[str]) -> list[str]:
    """A title line and the header of a Markdown table."""
    return [title, "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]


def format_training_table(results: dict[str, Any]) -> str:
    """Markdown: ms per call forward and forward+backward, and backward / forward."""
    names: list[str] = []
    for row in results["training"].values():
        names += [n for n in row["forward"] if n not in names]
    head = ["shape", "(b, d, n, l)"]
    for n in names:
        head += [f"{n} fwd ms", f"{n} fwd+bwd ms", f"{n} bwd/fwd"]
    lines = _table_head(f"selective scan training calls, float32, {results['threads']} thread(s), "
                        f"{results['device']}: median ms per call, forward with autograd on", head)
    totals = {n: [0.0, 0.0] for n in names}
    for key, row in results["training"].items():
        cells = [key, f"{row['b']}, {row['d']}, {row['n']}, {row['l']}"]
        for n in names:
            f, fb = row["forward"][n], row["forward_backward"][n]
            totals[n][0] += f
            totals[n][1] += fb
            cells += [f"{f * 1e3:.1f}", f"{fb * 1e3:.1f}", f"{(fb - f) / f:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["total", ""]
    for n in names:
        f, fb = totals[n]
        cells += [f"{f * 1e3:.1f}", f"{fb * 1e3:.1f}", f"{(fb - f) / f:.2f}"]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    if args.training_shapes:
        results: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__, "device": _device_name()}
        run_training_shapes(args, results)
        _write_json(args, results)
        return 0
    wanted = args.backends.split(",") if args.backends else list(CPU_BACKENDS + GPU_BACKENDS)
    runnable = {name: fb for name in wanted if (fb := backend_fn(name)) is not None}
    skipped = [name for name in wanted if name not in runnable]
    results = {
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
    _write_json(args, results)
    return 0


def _write_json(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if args.json:
        text = json.dumps(results, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")


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
    lines = _table_head(f"selective scan, float32, {results['threads']} thread(s), {results['device']}: "
                        "median seconds per call (x = speed-up over the Python loop)", head)
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
