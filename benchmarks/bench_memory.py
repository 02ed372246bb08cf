"""Peak memory of `deblur run` against image size at a fixed tile size.

The model only ever holds a batch of tiles, so its share of the peak must not grow with the
image; what does grow is the decoded photo and the float32 accumulation buffers (about 28 bytes
per pixel: input, output and blending weights). This script runs the real command in a child
process per size and reports the child's peak RSS beside that image-buffer estimate.

    python benchmarks/bench_memory.py --sizes 2000x2000 6324x6324 --tile 512 [--model M]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def make_image(path: Path, w: int, h: int) -> None:
    rng = np.random.default_rng(0)
    small = (rng.random((max(2, h // 64), max(2, w // 64), 3)) * 255).astype(np.uint8)
    Image.fromarray(small).resize((w, h), Image.BICUBIC).save(path, compress_level=1)


def peak_of_child(cmd: list[str]) -> float:
    """Peak RSS (MB) of one child process, measured with wait4's rusage."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else status}")
    return usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["2000x2000", "6324x6324"])
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            src = Path(tmp) / f"in_{size}.png"
            make_image(src, w, h)
            cmd = [sys.executable, "-m", "deblurcli", "run", str(src), "-o", str(Path(tmp) / f"out_{size}.png"),
                   "--tile", str(args.tile), "--quiet", "--allow-large"]
            if args.model:
                cmd += ["--model", args.model]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            peak = peak_of_child(cmd)
            buffers = w * h * 28 / 2**20
            rows.append({"size": size, "megapixels": w * h / 1e6, "tile": args.tile, "peak_rss_mb": peak,
                         "image_buffers_mb": buffers, "peak_minus_buffers_mb": peak - buffers})
            print(f"{size:>11s} ({w * h / 1e6:5.1f} MP) tile {args.tile}: peak RSS {peak:7.0f} MB, "
                  f"image buffers ~{buffers:6.0f} MB, the rest {peak - buffers:6.0f} MB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
