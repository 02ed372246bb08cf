"""The embedded default model's quality on photos it never saw, beside non-blind baselines.

Held-out data: scikit-image's bundled colour photographs (never used in training), each blurred
in linear light with camera-shake kernels of 9-25 px drawn from a seed stream training never
used, with mild sensor noise (Gaussian, sigma 0.01 by default), then saved to 8 bits as a camera
would. Scores are PSNR on 8-bit RGB, all pixels.

Beside the blind model we report two classical deconvolutions that are handed the TRUE kernel
(an advantage no real photo gives): Wiener (noise-to-signal ratio picked per image as the best
of a small grid — an oracle choice) and Richardson-Lucy (30 iterations), both in linear light
with reflect padding.

    pip install scikit-image
    python benchmarks/default_model/evaluate.py [--model weights/default.safetensors] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from deblurcli.api import Deblurrer
from deblurcli.eval.metrics import psnr, to_uint8
from deblurcli.synth import blur_image, linear_to_srgb, random_kernel, random_kernel_size, srgb_to_linear

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
SEED = 20261124  # not a seed training uses


def load_photos(max_side: int) -> list[tuple[str, np.ndarray]]:
    from skimage import data

    out = []
    for name in PHOTOS:
        img = getattr(data, name)()
        if img.ndim != 3 or img.shape[2] != 3:
            continue
        h, w = img.shape[:2]
        s = min(max_side, h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        out.append((name, img[y0:y0 + s, x0:x0 + s].astype(np.float32) / 255.0))
    return out


def _pad(img: np.ndarray, p: int) -> np.ndarray:
    return np.pad(img, ((p, p), (p, p), (0, 0)), mode="reflect")


def _otf(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    k = np.zeros(shape, np.float64)
    kh, kw = kernel.shape
    k[:kh, :kw] = kernel
    k = np.roll(k, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.rfft2(k)


def wiener(blurred: np.ndarray, kernel: np.ndarray, nsr: float) -> np.ndarray:
    p = kernel.shape[0]
    lin = _pad(srgb_to_linear(blurred), p)
    H = _otf(kernel, lin.shape[:2])
    G = np.conj(H) / (np.abs(H) ** 2 + nsr)
    out = np.stack([np.fft.irfft2(np.fft.rfft2(lin[..., c]) * G, s=lin.shape[:2]) for c in range(3)], -1)
    return linear_to_srgb(np.clip(out[p:-p, p:-p], 0, 1).astype(np.float32))


def richardson_lucy(blurred: np.ndarray, kernel: np.ndarray, iterations: int = 30) -> np.ndarray:
    p = kernel.shape[0]
    lin = np.clip(_pad(srgb_to_linear(blurred), p).astype(np.float64), 1e-4, 1)
    H = _otf(kernel, lin.shape[:2])
    out = np.empty_like(lin)
    for c in range(3):
        obs, est = lin[..., c], lin[..., c].copy()
        for _ in range(iterations):
            conv = np.fft.irfft2(np.fft.rfft2(est) * H, s=obs.shape)
            ratio = obs / np.maximum(conv, 1e-6)
            est = est * np.fft.irfft2(np.fft.rfft2(ratio) * np.conj(H), s=obs.shape)
        out[..., c] = est
    return linear_to_srgb(np.clip(out[p:-p, p:-p], 0, 1).astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="default: the embedded model")
    ap.add_argument("--kernels", type=int, default=4, help="kernels per photo")
    ap.add_argument("--size", type=int, default=384, help="centre crop side")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--variant", default=None)
    ap.add_argument("--noise", type=float, default=0.01, help="sensor noise sigma (sRGB, 0..1)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    d = Deblurrer(args.model, device="cpu", tile=0, threads=args.threads, variant=args.variant, progress=False)
    rng = np.random.default_rng(SEED)
    rows = []
    t_model = 0.0
    for name, sharp in load_photos(args.size):
        gt = to_uint8(sharp)
        for k in range(args.kernels):
            kernel = random_kernel(random_kernel_size(rng, 9, 25), rng)
            blurred = blur_image(sharp, kernel) + rng.normal(0, args.noise, sharp.shape).astype(np.float32)
            blurred = to_uint8(blurred).astype(np.float32) / 255.0  # as a camera saves it
            t0 = time.perf_counter()
            restored = d.restore(blurred)
            t_model += time.perf_counter() - t0
            wien = max((wiener(blurred, kernel, nsr) for nsr in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)),
                       key=lambda x: psnr(to_uint8(x), gt))
            rl = richardson_lucy(blurred, kernel)
            row = {
                "photo": name, "kernel": k, "kernel_size": int(kernel.shape[0]),
                "blurry": psnr(to_uint8(blurred), gt), "model": psnr(to_uint8(restored), gt),
                "wiener_true_kernel": psnr(to_uint8(wien), gt), "rl_true_kernel": psnr(to_uint8(rl), gt),
            }
            rows.append(row)
            print(f"{name:22s} k{k} {row['kernel_size']:2d}px  blurry {row['blurry']:.2f}  model {row['model']:.2f}  "
                  f"wiener {row['wiener_true_kernel']:.2f}  RL {row['rl_true_kernel']:.2f}", flush=True)
    mean = {key: float(np.mean([r[key] for r in rows])) for key in ("blurry", "model", "wiener_true_kernel",
                                                                     "rl_true_kernel")}
    summary = {
        "images": len(rows), "mean_psnr": mean,
        "gain_db": {k: mean[k] - mean["blurry"] for k in ("model", "wiener_true_kernel", "rl_true_kernel")},
        "model_seconds_per_image": t_model / max(1, len(rows)), "model": d.describe(), "noise": args.noise,
        "kernel_sizes": "9-25", "seed": SEED, "crop": args.size,
    }
    # Mild and strong blur apart: a blind model's typical failure is over-sharpening mild blur.
    buckets = {"9-13 px": (9, 13), "15-19 px": (15, 19), "21-25 px": (21, 25)}
    summary["gain_db_by_kernel_size"] = {
        label: float(np.mean([r["model"] - r["blurry"] for r in rows if lo <= r["kernel_size"] <= hi]))
        for label, (lo, hi) in buckets.items() if any(lo <= r["kernel_size"] <= hi for r in rows)}
    summary["images_improved"] = sum(r["model"] > r["blurry"] for r in rows)
    print(json.dumps(summary["gain_db"], indent=1))
    print("model gain by kernel size:", {k: round(v, 2) for k, v in summary["gain_db_by_kernel_size"].items()},
          f"- better than the blurry input on {summary['images_improved']} of {len(rows)} images")
    gain = summary["gain_db"]
    print(f"mean PSNR: blurry {mean['blurry']:.2f} dB, model {mean['model']:.2f} dB ({gain['model']:+.2f}), "
          f"Wiener (true kernel) {gain['wiener_true_kernel']:+.2f}, "
          f"Richardson-Lucy (true kernel) {gain['rl_true_kernel']:+.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "images": rows}, f, indent=1)


if __name__ == "__main__":
    main()
