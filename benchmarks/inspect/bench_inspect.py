"""Does `deblur inspect` tell blurred photos from sharp ones, and measure the shake? (issue #29)

Photos: scikit-image's data photographs (BSD-licensed, shipped with the package). Each photo is
used sharp in three forms (as shipped, with sensor noise, JPEG-compressed at quality 85) and
blurred by `deblurcli.synth`'s camera-shake kernels of support 5-59 px (linear light, then
sensor noise, every other one JPEG-compressed at quality 90). The true shake length is the
true kernel's support extent (`deblurcli.deconv.kernel_stats(...).extent_px`), the same
statistic `inspect` reports for its estimate.

Then one 12 MP photo (a scikit-image photo enlarged to 4000x3000 and blurred by a 41 px shake)
is timed: the verdict alone (`judge`) and the full report (`inspect`), decoding excluded.
Both wall and CPU seconds are recorded: on a shared machine the CPU time is the cost, the wall
time includes waiting for a busy core. Threads: whatever OMP_NUM_THREADS / torch allow.

    OMP_NUM_THREADS=1 python benchmarks/inspect/bench_inspect.py [--out FILE.json] [--quick]
    OMP_NUM_THREADS=1 python benchmarks/inspect/bench_inspect.py --timing-only --out /tmp/t.json  # speed alone

(default output: benchmarks/inspect/results/bench_inspect.json; bench_inspect_before_round3.json
is the same command on the code before round 3, commit 91c3877, run the same day, since the
shared estimator's lengths had moved since round 2's file). A length of None (no kernel: the
photo was judged sharp, or no estimate could be made) counts as a miss in ``length_within_25pct``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from deblurcli import synth
from deblurcli.deconv import kernel_stats
from deblurcli.inspect import DEFAULT_THRESHOLD, inspect, judge

PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "grass", "gravel", "coins",
          "moon", "brick")
SIZES = (5, 9, 15, 21, 31, 45, 59)
SEED = 29


def load(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    return img.astype(np.float32) / 255.0


def cases(quick: bool) -> list[dict]:
    rng = np.random.default_rng(SEED)
    out = []
    photos = PHOTOS[:4] if quick else PHOTOS
    sizes = (9, 25) if quick else SIZES
    for name in photos:
        sharp = load(name)
        out.append({"photo": name, "form": "sharp", "img": sharp, "true_px": 0.0})
        out.append({"photo": name, "form": "sharp+noise",
                    "img": synth.add_noise(sharp, rng, sigma=(0.003, 0.01)), "true_px": 0.0})
        out.append({"photo": name, "form": "sharp+jpeg85", "img": synth.jpeg(sharp, 85), "true_px": 0.0})
        for i, size in enumerate(sizes):
            k = synth.random_kernel(size, rng)
            b = synth.add_noise(synth.blur_image(sharp, k), rng, sigma=(0.002, 0.01))
            if i % 2:
                b = synth.jpeg(b, 90)
            st = kernel_stats(k)
            out.append({"photo": name, "form": f"shake{size}" + ("+jpeg90" if i % 2 else ""), "img": b,
                        "true_px": float(st.extent_px), "true_dir": float(st.direction_deg), "size": size})
    return out


def accuracy(rows: list[dict]) -> dict:
    right = [r["verdict_right"] for r in rows]
    sharp = [r for r in rows if r["true_px"] == 0]
    blurred = [r for r in rows if r["true_px"] > 0]
    measured = [r for r in blurred if r["true_px"] >= 9 and r["shake_px"] is not None]
    big = [r for r in blurred if r["true_px"] >= 9]
    within = [abs(r["shake_px"] - r["true_px"]) <= 0.25 * r["true_px"] for r in measured]
    return {
        "photos": len(rows), "sharp": len(sharp), "blurred": len(blurred),
        "verdict_right": round(sum(right) / len(right), 4),
        "sharp_judged_sharp": round(sum(r["verdict_right"] for r in sharp) / max(len(sharp), 1), 4),
        "blurred_judged_blurred": round(sum(r["verdict_right"] for r in blurred) / max(len(blurred), 1), 4),
        "shake_ge_9px": len(big),
        "length_within_25pct": round(sum(within) / max(len(big), 1), 4),
        "median_length_error_pct": round(100 * statistics.median(
            [abs(r["shake_px"] - r["true_px"]) / r["true_px"] for r in measured]), 1) if measured else None,
    }


def _timed(fn, *args) -> tuple[float, float]:
    """(wall, CPU) seconds of one call: on a shared machine the CPU time is the cost, the wall time
    what a user would have waited with the other core busy."""
    t, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t, time.process_time() - c


def time_12mp(repeats: int) -> dict:
    """The 12 MP timings, on arrays (decoding excluded) and on a JPEG file (decoding included)."""
    import tempfile

    import cv2

    base = load("astronaut")
    big = cv2.resize(base, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(SEED)
    k = synth.random_kernel(41, rng)
    big = synth.add_noise(synth.blur_image(np.clip(big, 0, 1), k), rng,
                          sigma=(0.003, 0.003))
    u8 = np.round(np.clip(big, 0, 1) * 255).astype(np.uint8)
    del big
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "12mp.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        judge(u8)  # warm-up: imports, torch's first FFT plans
        inspect(u8)
        runs: dict[str, list[tuple[float, float]]] = {"verdict": [], "full": [], "verdict_file": [], "full_file": []}
        for _ in range(repeats):
            runs["verdict"].append(_timed(judge, u8))
            runs["full"].append(_timed(inspect, u8))
            runs["verdict_file"].append(_timed(judge, path))
            runs["full_file"].append(_timed(inspect, path))
        rec = inspect(u8)
    out: dict = {"size": "4000x3000", "repeats": repeats, "blurred": rec.blurred, "shake_px": rec.shake_px,
                 "true_shake_px": float(kernel_stats(k).extent_px)}
    for name, times in runs.items():
        out[f"{name}_wall_s_median"] = round(statistics.median(t for t, _ in times), 3)
        out[f"{name}_wall_s_min"] = round(min(t for t, _ in times), 3)
        out[f"{name}_cpu_s_median"] = round(statistics.median(c for _, c in times), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_inspect.json")
    ap.add_argument("--quick", action="store_true", help="4 photos, 2 shakes: a smoke test")
    ap.add_argument("--timing-only", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    result: dict = {"threshold_px": DEFAULT_THRESHOLD, "machine": platform.processor() or platform.machine(),
                    "cpu_threads": torch.get_num_threads(), "affinity_cores": len(os.sched_getaffinity(0))}
    if not args.timing_only:
        rows = []
        for c in cases(args.quick):
            t = time.perf_counter()
            rec = inspect(c["img"])
            row = {k: v for k, v in c.items() if k != "img"}
            row.update(blurred=rec.blurred, confidence=round(rec.confidence, 3), edge_px=round(rec.edge_px, 2),
                       sharpness=round(rec.sharpness, 4),
                       shake_px=None if rec.shake_px is None else round(rec.shake_px, 2),
                       direction_deg=rec.direction_deg, seconds=round(time.perf_counter() - t, 2))
            row["verdict_right"] = rec.blurred == (c["true_px"] > 0)
            rows.append(row)
            print(json.dumps(row), flush=True)
        result["accuracy"] = accuracy(rows)
        result["rows"] = rows
        print(json.dumps(result["accuracy"]), flush=True)
    result["timing_12mp"] = time_12mp(args.repeats)
    print(json.dumps(result["timing_12mp"]), flush=True)
    result["load_average"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
