"""Seconds for `restore_rgb` end to end (estimate + deconvolve, colour) on a 1 MP and a 12 MP photo.

    OMP_NUM_THREADS=2 python benchmarks/realshake/speed.py [--sizes 1,12]

The photos are scikit-image's astronaut and coffee, enlarged to 1000x1000 and 4000x3000 and
blurred in linear light by a camera-shake kernel of 1/40 of the long side (25 and 101 px): the
timing depends on the pixel count and the kernel size, not on the content. Targets (issue 26):
<= 10 s for 1 MP and <= 40 s for 12 MP on 2 cores. Results go to results/speed.json; cpu_seconds
is the process's CPU time (with one thread: what a dedicated core takes, on a shared machine).

History (CPU seconds with one thread, ``OMP_NUM_THREADS=1``, 1 MP / 12 MP): 17.2 / 242 before issue
26's work; 6.1 / 42.5 after it, and with 2 threads 4.4 / 31.8 s wall (load average ~1.7, i.e. one
other busy process on the 2 cores; results/speed.json). What bought it: 4 FFTs per masked TV step
instead of 5, one FFT per L0 latent step instead of three, the kernel's conjugate gradients on a
grid of twice the kernel instead of the image (exact: no image-sized FFT inside the CG loop), the
TV continuation ending at rho = 2 instead of 100 (13 steps instead of 19, same PSNR), L0 beta up to
1e4 instead of 1e5 (-0.006 dB on Levin's set), and colour photos of 1 MP or more solving the colour
differences at half resolution (half the deconvolution; see nonblind.HALF_CHROMA_PIXELS), and the
kernel estimation pinned to one thread (estimate.one_thread). Then glibc keeping freed memory
(`deblurcli.allocator`, which `Deblurrer` and this script turn on): 12 MP, 2 threads, idle machine,
from the JPEG of the same photo: 40.8 s (22 s of it system time, faulting pages in) -> 29.3 s.
Tried and dropped (PSNR means with the true kernels, Levin / colour photos, against 33.558 / 29.173
dB; or blind Levin against 32.119): TV growth rate 2.83 (33.454 / 29.014), TV start at 2 lam
(33.450 / 29.038), rate 4 (- / 28.846); L0 kappa 3 (blind 31.37), 4 alternations per level (31.84),
beta up to 1e3 (32.077).
Quality after all of it: Levin blind 32.097 dB (was 32.119), error ratio <= 3 on 96.9% (same);
true kernels 33.558 / 29.163 dB (was 33.558 / 29.173); default_hybrid.py's 60 shaken colour
photos, deconvolution alone, blind: linear light 24.25 dB (was 24.26), sRGB blur 24.48 (was
23.97; blind estimates swing by dB per image with any rounding change, medians -0.04 / +0.03).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from deblurcli.allocator import keep_freed_memory
from deblurcli.deconv import restore_rgb
from deblurcli.fsutil import atomic_write
from deblurcli.synth import blur_image, random_kernel

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {1: (1000, 1000, 25), 12: (3000, 4000, 101)}


def photo(h: int, w: int) -> np.ndarray:
    from skimage import data

    src = data.astronaut() if h * w < 4e6 else data.coffee()
    return cv2.resize(src, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,12", help="megapixels to time, from 1 and 12")
    ap.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. what else ran)")
    args = ap.parse_args(argv)
    keep_freed_memory()  # as Deblurrer does, so the figures are the CLI's
    rows = []
    for mp in (int(v) for v in args.sizes.split(",")):
        h, w, ks = SIZES[mp]
        kernel = random_kernel(ks, np.random.default_rng(mp), fill=0.9)
        blurred = blur_image(photo(h, w), kernel, linear_light=True)
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        _, est = restore_rgb(blurred)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        # The load average says how far wall seconds are from an idle machine's (on 2 cores,
        # anything above 1 besides this process slows it down).
        row = {"megapixels": round(h * w / 1e6, 2), "true_kernel_px": ks, "kernel_px": int(est.kernel.shape[0]),
               "estimate_seconds": round(est.seconds, 2), "total_seconds": round(seconds, 2),
               "cpu_seconds": round(cpu, 2), "sizes_tried": est.sizes_tried, "linear_light": est.linear_light,
               "threads": torch.get_num_threads(),
               "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    atomic_write(args.out, json.dumps({"cpu_count": os.cpu_count(), "note": args.note, "rows": rows}, indent=1) + "\n",
                 make_parents=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
