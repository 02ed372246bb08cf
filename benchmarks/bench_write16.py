"""16-bit PNG/TIFF write speed: our encoders against Pillow's at its default level.

Pillow cannot write 16-bit colour, so its side is timed on the same samples laid out as one
16-bit grey image three times as wide (mode I;16: the same bytes to filter and deflate), as a
PNG at its default compression (level 6) and as an Adobe-Deflate TIFF (libtiff's default level).
Three kinds of 16-bit content, since deflate's speed depends on it: ``noisy`` (smooth content
with sensor-like noise in the low bits, as a real 16-bit photo has), ``smooth`` (the example
photo scaled up in float, no noise) and ``from8bit`` (an 8-bit photo times 257, as converters
write). Best of `--repeat` runs, wall and CPU time (all threads), in memory (no disk).

    python benchmarks/bench_write16.py --size 4000x3000 [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

from deblurcli.imageio.writers import Encoding, write_png, write_tiff


def photo16(w: int, h: int, kind: str = "noisy") -> np.ndarray:
    if kind in ("smooth", "from8bit"):
        example = cv2.imread(str(Path(__file__).parent.parent / "examples" / "blurry.jpg"))[..., ::-1]
        if kind == "from8bit":
            return cv2.resize(example, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.uint16) * 257
        big = cv2.resize(example.astype(np.float32) * 257, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip(big, 0, 65535).astype(np.uint16)
    rng = np.random.default_rng(0)
    small = (rng.random((max(2, h // 32), max(2, w // 32), 3)) * 65535).astype(np.float32)
    arr = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    arr += rng.normal(0.0, 60.0, arr.shape).astype(np.float32)  # about 0.25/255 of noise
    return np.clip(arr, 0, 65535).astype(np.uint16)


def best_of(fn: Callable[[io.BytesIO], None], repeat: int) -> tuple[float, float, int]:
    wall, cpu, size = float("inf"), float("inf"), 0
    for _ in range(repeat):
        buf = io.BytesIO()
        t0, c0 = time.perf_counter(), time.process_time()
        fn(buf)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
        size = buf.tell()
    return wall, cpu, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kinds", nargs="+", default=["noisy", "smooth", "from8bit"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    rows = []
    print(f"{w}x{h} 16-bit RGB ({w * h / 1e6:.1f} MP, {w * h * 6 / 2**20:.0f} MB of samples), "
          f"{os.cpu_count()} CPUs, best of {args.repeat}")
    for kind in args.kinds:
        arr = photo16(w, h, kind)
        grey = PILImage.fromarray(np.ascontiguousarray(arr.reshape(h, w * 3)))  # I;16, same bytes
        cases: dict[str, Callable[[io.BytesIO], None]] = {
            "PNG   deblurcli": lambda b, arr=arr: write_png(b, arr, Encoding()),
            "PNG   Pillow (I;16, default level)": lambda b, grey=grey: grey.save(b, "PNG"),
            "TIFF  deblurcli": lambda b, arr=arr: write_tiff(b, arr, Encoding()),
            "TIFF  Pillow (I;16, Adobe Deflate)":
                lambda b, grey=grey: grey.save(b, "TIFF", compression="tiff_adobe_deflate"),
        }
        for name, fn in cases.items():
            wall, cpu, size = best_of(fn, args.repeat)
            rows.append({"content": kind, "case": name, "seconds": wall, "cpu_seconds": cpu,
                         "megabytes": size / 2**20})
            print(f"  {kind:9s} {name:36s} {wall:6.2f} s wall {cpu:6.2f} s CPU {size / 2**20:6.1f} MB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"size": args.size, "cpus": os.cpu_count(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
