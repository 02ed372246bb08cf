"""Training pairs for the network as a refiner: (blind deconvolution of a shaken crop, sharp crop).

The default model's hybrid path deconvolves trusted camera shake with the kernel it *estimated*;
what is left is ringing, amplified noise and the estimate's own small errors, not blur. The
network was trained on blur, and run after a deconvolution it lowered PSNR (README, "--refine").
These pairs teach it the second job. Each is made as the hybrid would make it: a crop of one of
the training photographs (never the evaluation photos), uniform shake of 7-41 px from
`deblurcli.synth.degrade` (half in linear light, half on sRGB values, sensor and sRGB noise,
JPEG), then `deblurcli.deconv.restore_rgb` blind, with no knowledge of the true kernel.

Every pair is written; ``kept`` in the log marks the deconvolutions that beat their blurred input.
At run time the trust rule stands between a wrong kernel and the refiner, so training may select
on ``kept`` (the true PSNR is used only to select training data, never at run time).

    python benchmarks/default_model/prepare_photos.py runs/photos
    python benchmarks/refiner/make_pairs.py runs/photos runs/refiner_pairs --count 500 [--shard 0/2]
    python benchmarks/refiner/make_pairs.py --split runs/refiner_pairs

``--split`` links the kept pairs into ``train/`` and ``val/`` (every `VAL_EVERY`-th pair by index
is validation: never a training crop, though the photos are shared).

Writes ``OUT/input/NAME.png`` (deconvolved) and ``OUT/target/NAME.png`` (sharp), the layout
`deblur train` and `deblur eval` read, plus ``OUT/pairs.jsonl`` (per pair: photo, kernel size,
light, PSNR of the input and the deconvolution, seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

CROP = 288
SEED = 4242
VAL_EVERY = 8
#: Mean absolute luminance gradient (per pixel, both directions) a crop needs; Levin's photos have
#: 0.043-0.061, scikit-image's evaluation photos 0.032-0.058, the wallpapers' skies under 0.01.
MIN_TEXTURE = 0.04


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    d = np.round(np.clip(a, 0, 1) * 255.0) - np.round(np.clip(b, 0, 1) * 255.0)
    mse = float(np.mean(d * d))
    return 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _u8(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8))


def split(out: Path) -> None:
    """Link the kept pairs into ``out/train`` and ``out/val`` (input|target layout each)."""
    rows = [json.loads(line) for log in sorted(out.glob("pairs.*.jsonl")) for line in log.open()]
    kept = sorted((r["name"] for r in rows if r.get("kept")), key=lambda n: int(n[1:6]))
    for part in ("train", "val"):
        for sub in ("input", "target"):
            (out / part / sub).mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "val": 0}
    for name in kept:
        part = "val" if int(name[1:6]) % VAL_EVERY == VAL_EVERY - 1 else "train"
        counts[part] += 1
        for sub in ("input", "target"):
            link = out / part / sub / name
            if not link.exists():
                link.symlink_to(Path("..", "..", sub, name))
    print(f"{len(rows)} pairs made, {len(kept)} kept: {counts}")


def _textured_crop(img: np.ndarray, rng: np.random.Generator, tries: int = 12) -> np.ndarray:
    """A `CROP`-px crop at a random scale, redrawn (up to ``tries`` times) while it is nearly
    flat: blind estimation needs edges, and the wallpapers' skies and walls would otherwise make
    most pairs ones the trust rule never lets through to the refiner."""
    h, w = img.shape[:2]
    best, best_texture = None, -1.0
    for _ in range(tries):
        side = min(max(CROP, int(CROP / float(rng.uniform(0.35, 1.0)))), h, w)
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = np.asarray(Image.fromarray(np.round(img[y:y + side, x:x + side] * 255).astype(np.uint8))
                          .resize((CROP, CROP), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
        g = crop.mean(axis=2)
        texture = float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())
        if texture > best_texture:
            best, best_texture = crop, texture
        if texture >= MIN_TEXTURE:
            break
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", type=Path, nargs="?")
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--shard", default="0/1", help="I/N: make every N-th pair from the I-th")
    ap.add_argument("--split", type=Path, metavar="OUT", help="link the kept pairs into OUT/train and OUT/val")
    args = ap.parse_args(argv)
    if args.split:
        split(args.split)
        return 0
    if args.photos is None or args.out is None:
        ap.error("give PHOTOS and OUT (or --split OUT)")

    import torch

    from deblurcli.deconv import restore_rgb
    from deblurcli.errors import KernelError
    from deblurcli.synth import degrade

    torch.set_num_threads(1)
    index, shards = (int(v) for v in args.shard.split("/"))
    photos = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not photos:
        raise SystemExit(f"{args.photos}: no photos (run prepare_photos.py first)")
    (args.out / "input").mkdir(parents=True, exist_ok=True)
    (args.out / "target").mkdir(parents=True, exist_ok=True)
    log = open(args.out / f"pairs.{index}.jsonl", "a")
    cache: dict[Path, np.ndarray] = {}
    for i in range(index, args.count, shards):
        name = f"r{i:05d}.png"
        if (args.out / "target" / name).exists():
            continue
        rng = np.random.default_rng((SEED, i))
        path = photos[int(rng.integers(len(photos)))]
        if path not in cache:
            cache[path] = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
        img = cache[path]
        sharp = _textured_crop(img, rng)
        blurred, kernel = degrade(sharp, rng, kernel_size=(7, 41), spatially_varying_p=0.0, noise_p=0.5,
                                  noise_sigma=(0.0002, 0.004), noise_shot=(0.0, 0.004), jpeg_p=0.2,
                                  highlight_p=0.1, linear_p=0.5, srgb_noise_p=0.3)
        blurred = np.round(np.clip(blurred, 0, 1) * 255.0).astype(np.float32) / 255.0
        t0 = time.process_time()
        try:
            out, est = restore_rgb(blurred)
        except (KernelError, ValueError) as exc:  # ValueError: an all-zero estimate before 2490243
            log.write(json.dumps({"name": name, "skipped": str(exc)}) + "\n")
            continue
        row = {"name": name, "photo": path.name, "kernel_size": int(kernel.shape[-1]),
               "input": round(_psnr(blurred, sharp), 3), "deconv": round(_psnr(out, sharp), 3),
               "linear_light": bool(est.linear_light), "seconds": round(time.process_time() - t0, 2)}
        row["kept"] = row["deconv"] > row["input"]
        for sub, arr in (("input", out), ("target", sharp)):
            tmp = args.out / sub / f".{name}.tmp.png"
            _u8(arr).save(tmp)
            os.replace(tmp, args.out / sub / name)
        log.write(json.dumps(row) + "\n")
        log.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
