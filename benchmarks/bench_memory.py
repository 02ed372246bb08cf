"""Peak memory of `deblur run` against image size at a fixed tile size.

The model only ever holds a batch of tiles, so its share of the peak does not grow with the
image; what grows is the image itself. This script runs the real command in a child process
per size, first on a 512x512 image (the baseline: runtime, model, one tile's activations) and
then on each size, and reports the child's peak RSS and what the image adds per pixel:
``(peak - baseline) / pixels``. The photo is kept as stored (3 bytes a pixel for 8-bit RGB)
and the result is written over it strip by strip; writing a JPEG/PNG through Pillow adds
Pillow's own 4-byte-a-pixel copy, so about 7 bytes a pixel is the expected peak for 8-bit.

``--model tiny`` (the default) uses a random ALGNet of width 4 without blocks (stem, down- and
up-sampling, head: about 0.5 CPU-seconds a megapixel), made on the spot: the memory of the
image path does not depend on the model, and it keeps a 100 MP run to minutes on a CPU.

    python benchmarks/bench_memory.py --sizes 2000x2000 6324x6324 10000x10000 --tile 512 --threads 1
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
    big = Image.fromarray(small).resize((w, h), Image.BICUBIC)
    big.save(path, **({"compress_level": 1} if path.suffix == ".png" else {"quality": 92}))


def tiny_model(folder: Path) -> Path:
    """A random ALGNet of width 4 without blocks, in our weights format: every code path real, the model fast."""
    import torch

    from deblurcli.models import create
    from deblurcli.weights import save_model

    config = {"width": 4, "middle_blk_num": 0, "enc_blk_nums": [0, 0, 0, 0], "dec_blk_nums": [0, 0, 0, 0],
              "d_state": 4}
    torch.manual_seed(0)
    path = folder / "tiny.safetensors"
    save_model(create("algnet", config, "plain"), path, arch="algnet", config=config, variant="plain")
    return path


def peak_of_child(cmd: list[str]) -> float:
    """Peak RSS (MB) of one child process, measured with wait4's rusage."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode() if proc.stderr else status}")
    return usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["2000x2000", "6324x6324", "10000x10000"])
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--model", default="tiny", help="tiny (a random width-4 ALGNet), or any --model value")
    ap.add_argument("--ext", default="jpg", help="input and output format (jpg, png, tif)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = str(tiny_model(Path(tmp))) if args.model == "tiny" else args.model

        def peak_for(size: str) -> float:
            w, h = (int(v) for v in size.split("x"))
            src = Path(tmp) / f"in_{size}.{args.ext}"
            make_image(src, w, h)
            cmd = [sys.executable, "-m", "deblurcli", "run", str(src), "-o", str(Path(tmp) / f"out_{size}.{args.ext}"),
                   "--tile", str(args.tile), "--quiet", "--allow-large", "--model", model, "--overwrite"]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            peak = peak_of_child(cmd)
            src.unlink()
            return peak

        base = peak_for("512x512")
        print(f"baseline (512x512, tile {args.tile}): peak RSS {base:.0f} MB", flush=True)
        for size in args.sizes:
            w, h = (int(v) for v in size.split("x"))
            peak = peak_for(size)
            per_px = (peak - base) * 2**20 / (w * h - 512 * 512)
            rows.append({"size": size, "megapixels": w * h / 1e6, "tile": args.tile, "format": args.ext,
                         "peak_rss_mb": peak, "baseline_mb": base, "image_bytes_per_pixel": per_px})
            print(f"{size:>11s} ({w * h / 1e6:5.1f} MP) tile {args.tile}: peak RSS {peak:7.0f} MB, "
                  f"{per_px:4.1f} bytes/pixel above the baseline", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
