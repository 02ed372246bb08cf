"""Does running the model at a reduced scale help on blur larger than it was trained on?

Shake on a 12-24 MP photo spans 30-100 px, beyond the 7-41 px the default model trains on. A
photo downscaled by 2 (or 4) brings such blur back into range. This script measures, on held-out
photos (the evaluation set of ``evaluate.py``, 512 px crops) blurred with 41-81 px kernels in both
domains, PSNR of:

- ``full``: the model on the full-resolution photo (``deblur run --scale 1``);
- ``reduced``: downscale by ``s`` (area), restore, upscale (bicubic);
- ``merged``: the reduced-scale result's low frequencies plus the full-resolution result's high
  frequencies (those above the reduced scale's Nyquist), so fine detail is not lost;
- ``scaled``: what ``deblur run --scale S`` does (`deblurcli.multiscale`): the reduced-scale
  result with the blurry input's own high frequencies, a quarter of a full-resolution run instead
  of five quarters.

    python benchmarks/default_model/large_blur.py --model FILE [--scale 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
from evaluate import load_photos  # the script beside this one

from deblurcli.api import Deblurrer
from deblurcli.eval.metrics import psnr, to_uint8
from deblurcli.synth import blur_image, random_kernel

SEED = 20261206
VARIANTS = ("full", "reduced", "merged", "scaled")


def _down(img: np.ndarray, s: int) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (w // s, h // s), interpolation=cv2.INTER_AREA)


def _up(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return cv2.resize(img, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--kernels", type=int, default=2, help="kernels per photo and domain")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--kernel-sizes", default="41-81", help="LO-HI kernel sides in px (odd)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    d = Deblurrer(args.model, device="cpu", tile=0, scale=1, progress=False)
    d_scaled = Deblurrer(args.model, device="cpu", tile=0, scale=args.scale, progress=False)
    rng = np.random.default_rng(SEED)
    lo, hi = (int(v) for v in args.kernel_sizes.split("-"))
    rows = []
    for name, sharp in load_photos(args.size):
        gt = to_uint8(sharp)
        hw = sharp.shape[:2]
        for domain in ("linear", "srgb"):
            for _ in range(args.kernels):
                size = int(rng.integers(lo // 2, hi // 2 + 1)) * 2 + 1
                kernel = random_kernel(size, rng)
                blurred = blur_image(sharp, kernel, linear_light=domain == "linear")
                blurred = to_uint8(blurred + rng.normal(0, 0.005, sharp.shape).astype(np.float32)) / np.float32(255)
                full = np.clip(d.restore(blurred), 0, 1)
                reduced = np.clip(_up(d.restore(_down(blurred, args.scale)), hw), 0, 1)
                merged = np.clip(reduced + full - _up(_down(full, args.scale), hw), 0, 1)
                scaled = d_scaled.restore(blurred)
                row = {"photo": name, "domain": domain, "kernel_size": size, "blurry": psnr(to_uint8(blurred), gt),
                       **{k: psnr(to_uint8(v), gt) for k, v in (("full", full), ("reduced", reduced),
                                                               ("merged", merged),
                                                               ("scaled", scaled))}}
                rows.append(row)
                g = {k: row[k] - row["blurry"] for k in VARIANTS}
                print(f"{name:18s} {domain:6s} {size}px  blurry {row['blurry']:.2f}  "
                      + "  ".join(f"{k} {g[k]:+.2f}" for k in VARIANTS), flush=True)
    gains = {k: float(np.mean([r[k] - r["blurry"] for r in rows])) for k in VARIANTS}
    print("mean gain over the blurry input (dB):", {k: round(v, 2) for k, v in gains.items()})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scale": args.scale, "kernel_sizes": args.kernel_sizes, "gain_db": gains, "images": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
