"""Collect estimated and true kernels on a calibration set disjoint from the benchmark's draws.

The benchmark (`bench_inspect.py`) draws its kernels with seed 29; this uses seed 7, other crops
(the photo's left or top 3/4) and its own noise, so that a choice made here (how the reported
length is read off an estimated kernel) is not tuned on the cases it is judged by.

    python benchmarks/inspect/calibrate.py /tmp/calib.npz
"""

from __future__ import annotations

import sys

import numpy as np

from deblurcli import synth
from deblurcli.inspect import estimate_shake

PHOTOS = ("camera", "coffee", "chelsea", "rocket", "grass", "coins")
SIZES = (9, 15, 23, 33, 47, 59)
SEED = 7


def main(out: str) -> None:
    from skimage import data

    rng = np.random.default_rng(SEED)
    true, est, scale = [], [], []
    for name in PHOTOS:
        img = getattr(data, name)().astype(np.float32) / 255.0
        h, w = img.shape[:2]
        img = img[: h * 3 // 4] if h > w else img[:, : w * 3 // 4]
        for size in SIZES:
            k = synth.random_kernel(size, rng)
            b = synth.add_noise(synth.blur_image(img, k), rng, sigma=(0.002, 0.01))
            e, factor = estimate_shake(b)
            true.append(k)
            est.append(e.kernel)
            scale.append(factor)
            print(name, size, e.stats.extent_px, flush=True)
    np.savez(out, true=np.array(true, dtype=object), est=np.array(est, dtype=object), scale=np.array(scale))


if __name__ == "__main__":
    main(sys.argv[1])
