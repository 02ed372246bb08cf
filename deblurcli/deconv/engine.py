"""From a photo to a kernel and back: region choice, kernel size ladder, diagnostics, colour."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch

from ..errors import KernelError
from . import _ops
from .estimate import EstimatorSettings, PyramidResult, estimate_pyramid, kernel_step, one_thread
from .kernels import KernelStats, check_fits, clean_kernel, kernel_stats, load_kernel, normalise
from .nonblind import SATURATED, deconvolve

Progress = Callable[[float, str], None]
T = TypeVar("T")
R = TypeVar("R")

REGION_MAX = 512  # side of the estimation window, at working scale
WORK_MAX_SIDE = 1600  # photos whose long side exceeds this are estimated at reduced scale
FIRST_SIZE = 35  # kernel size (working scale) tried first
SIZE_STEP = 1.4  # growth of the size ladder
MIN_SIDE = 48  # smallest image side worth estimating from
MIN_TEXTURE = 2e-3  # mean gradient magnitude below which an image is too flat


@dataclass(frozen=True)
class Diagnostics:
    """Evidence for deciding whether an estimate is trustworthy uniform camera shake.

    ``residual``: share of the blurred image's gradient energy the latent image and kernel leave
    unexplained at the finest level (low is a good fit); ``scale_agreement``: normalised
    correlation (best over small shifts) between the finest kernel and the previous pyramid
    level's, enlarged (a real shake is stable across scales, noise is not); ``size_agreement``:
    the same between the kernels of the last two sizes tried (None when only one was);
    ``noise_sigma``: measured noise; ``texture``: mean gradient magnitude of the region;
    ``plausible``: the stated rule below; ``reasons``: which parts of it failed.

    Rule: plausible when the kernel is one stroke or nearly (at most 3 pieces), covers at most
    35% of its window, is not cut by the window (border mass < 5%), and agrees with the coarser
    level (scale_agreement >= 0.5).
    """

    residual: float
    scale_agreement: float
    size_agreement: float | None
    noise_sigma: float
    texture: float
    plausible: bool
    reasons: tuple[str, ...] = ()


@dataclass
class KernelEstimate:
    """A blind estimate: the convolution kernel at the photo's full resolution and how it was got.

    ``region``: (x, y, w, h) of the photo it was estimated from; ``scale``: working scale of the
    estimation (1 = full resolution); ``sizes_tried``: the kernel sizes of the ladder at working
    scale, in the order tried (the chosen one is the kernel's); ``seconds``: wall time; ``linear_light``: whether the
    blur was found to be made in linear light (`restore_rgb` sets it and ``light_fit_ratio``).
    """

    kernel: np.ndarray
    region: tuple[int, int, int, int]
    scale: float
    sizes_tried: list[int]
    stats: KernelStats
    diagnostics: Diagnostics
    seconds: float
    latent: np.ndarray | None = field(default=None, repr=False)
    linear_light: bool = True
    light_fit_ratio: float | None = None

    def as_dict(self) -> dict:
        d = self.diagnostics
        return {"kernel_size": int(self.kernel.shape[0]), "region": list(self.region), "scale": self.scale,
                "linear_light": self.linear_light,
                "light_fit_ratio": None if self.light_fit_ratio is None else round(self.light_fit_ratio, 4),
                "sizes_tried": self.sizes_tried, "seconds": round(self.seconds, 3), "stats": self.stats.as_dict(),
                "diagnostics": {"residual": round(d.residual, 4), "scale_agreement": round(d.scale_agreement, 4),
                                "size_agreement": None if d.size_agreement is None else round(d.size_agreement, 4),
                                "noise_sigma": round(d.noise_sigma, 5), "texture": round(d.texture, 5),
                                "plausible": d.plausible, "reasons": list(d.reasons)}}


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------


def thread_budget() -> int:
    """How many cores the caller lets this work use: torch's intra-op thread count in the calling
    thread, which ``--threads`` and ``OMP_NUM_THREADS`` set (1: everything runs in the caller's
    thread, one step after another, as before the engine had threads)."""
    return max(1, torch.get_num_threads())


def start_pinned(pool: ThreadPoolExecutor, fn: Callable[..., R], *args: object, threads: int = 1) -> Future[R]:
    """``fn(*args)`` on one of ``pool``'s threads, with torch on ``threads`` intra-op threads there.

    torch's thread count belongs to each thread (OpenMP's per-thread setting; torch's own
    process-wide figure is only what threads started later begin with), so pinning a worker
    leaves the caller's thread as it was. One kernel estimate is thousands of small operations
    and runs on one thread by design (`estimate.one_thread`); two of them on two threads run
    side by side, as torch releases the GIL inside each operation (1 MP photo, four corner
    estimates two at a time: bit-identical kernels, about 10% more CPU seconds, so a little over
    half the wall time on two free cores; on a machine busy with other work, no gain).
    """

    def pinned() -> R:
        torch.set_num_threads(threads)
        return fn(*args)

    return pool.submit(pinned)


def map_threads(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, up to ``workers`` (default `thread_budget`) at a time, each on
    its own thread pinned to one torch thread; results in order, the first error raised.

    With one worker it is the plain loop in the caller's thread. The caller's thread count is
    set again afterwards, so threads started later begin with it and not with the workers' one.
    """
    todo = list(items)
    n = min(thread_budget() if workers is None else workers, len(todo))
    if n <= 1:
        return [fn(x) for x in todo]
    caller = torch.get_num_threads()
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="deblur-estimate")
    try:
        futures = [start_pinned(pool, fn, x) for x in todo]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, no worker outlives the call
        torch.set_num_threads(caller)


# --------------------------------------------------------------------------------------------
# Region
# --------------------------------------------------------------------------------------------


def _box_sum(a: np.ndarray, size: int) -> np.ndarray:
    """Sum over every size x size window (valid positions), via an integral image."""
    c = np.pad(a.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def choose_region(gray: np.ndarray, side: int = REGION_MAX) -> tuple[int, int, int, int]:
    """The ``side`` x ``side`` window (or the whole image, if smaller) richest in usable edges.

    Score = sum of gradient magnitudes of unclipped pixels, with pixels near clipping (<= 2% or
    >= 98%) counted as a loss: clipped areas break the blur model, and edges in every direction
    are what pin the kernel down. Windows nearer the centre win ties, as in Photoshop's
    estimation region, because lenses are sharpest and shake is most uniform there.
    """
    h, w = gray.shape
    if h <= side and w <= side:
        return 0, 0, w, h
    sh, sw = min(side, h), min(side, w)
    step = 4 if max(h, w) > 1024 else 2  # score at reduced resolution: only the window matters
    g = gray[::step, ::step]
    gx = np.abs(np.diff(g, axis=1, append=g[:, -1:]))
    gy = np.abs(np.diff(g, axis=0, append=g[-1:, :]))
    bad = (g >= SATURATED) | (g <= 0.02)
    score_map = np.where(bad, -0.05, gx + gy)
    bh, bw = max(sh // step, 1), max(sw // step, 1)
    if bh > g.shape[0] or bw > g.shape[1]:
        return 0, 0, w, h
    sums = _box_sum(score_map, bh) if bh == bw else _box_sum(score_map, min(bh, bw))
    sums = sums[: g.shape[0] - bh + 1, : g.shape[1] - bw + 1]
    yy, xx = np.indices(sums.shape)
    cy, cx = (sums.shape[0] - 1) / 2, (sums.shape[1] - 1) / 2
    dist = np.hypot(yy - cy, xx - cx) / max(np.hypot(cy, cx), 1)
    sums = sums * (1 - 0.1 * dist) if sums.max() > 0 else sums
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    x0, y0 = min(int(ix) * step, w - sw), min(int(iy) * step, h - sh)
    return x0, y0, sw, sh


# --------------------------------------------------------------------------------------------
# Estimation
# --------------------------------------------------------------------------------------------


def _ncc_aligned(a: np.ndarray, b: np.ndarray, max_shift: int = 3) -> float:
    """Normalised correlation of two kernels after the best integer shift (kernels are known only
    up to translation)."""
    n = max(a.shape[0], b.shape[0]) + 2 * max_shift
    pa = np.zeros((n, n), np.float64)
    pb = np.zeros((n, n), np.float64)
    oa, ob = (n - a.shape[0]) // 2, (n - b.shape[0]) // 2
    pa[oa:oa + a.shape[0], oa:oa + a.shape[1]] = a
    pb[ob:ob + b.shape[0], ob:ob + b.shape[1]] = b
    na, nb = np.linalg.norm(pa), np.linalg.norm(pb)
    if na == 0 or nb == 0:
        return 0.0
    best = -1.0
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            best = max(best, float((pa * np.roll(pb, (dy, dx), (0, 1))).sum()))
    return best / (na * nb)


def kernel_similarity(a: np.ndarray, b: np.ndarray, max_shift: int = 3) -> float:
    """Public form of the shift-tolerant normalised correlation (1 = same shape)."""
    return _ncc_aligned(np.asarray(a, np.float64), np.asarray(b, np.float64), max_shift)


def _scale_agreement(res: PyramidResult) -> float:
    if len(res.levels) < 2:
        return 1.0
    prev, last = res.levels[-2].kernel, res.levels[-1].kernel
    up = _ops.resize(torch.from_numpy(np.ascontiguousarray(prev)), last.shape).numpy()
    return _ncc_aligned(normalise(up), last)


def touches_border(k: np.ndarray) -> bool:
    """The stated size criterion: a kernel is cut by its window if > 3% of its mass lies in the
    window's outer 2 px (a kernel that fits leaves that frame empty, since it is centred)."""
    frame = np.ones_like(k, dtype=bool)
    frame[2:-2, 2:-2] = False
    return float(k[frame].sum()) > 0.03


def _upscale_kernel(k: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return k
    n = _ops.odd(k.shape[0] * factor)
    up = _ops.resize(torch.from_numpy(np.ascontiguousarray(k)), (n, n)).numpy()
    return clean_kernel(up, rel_threshold=0.02, min_mass=0.0)


def _estimation_patch(gray: np.ndarray, region: tuple[int, int, int, int] | None
                      ) -> tuple[np.ndarray, tuple[int, int, int, int], float, float]:
    """(the luminance patch to estimate from, at working scale; its region in the photo; that
    scale; its texture), refusing a photo or region too small or too flat to measure shake in."""
    g = _ops.luminance(np.asarray(gray, dtype=np.float32))
    h, w = g.shape
    if min(h, w) < MIN_SIDE:
        raise KernelError(f"the image ({w}x{h}) is too small to estimate camera shake from; "
                          f"it needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if region is not None:
        x0, y0, rw, rh = (int(v) for v in region)
        if rw < MIN_SIDE or rh < MIN_SIDE or x0 < 0 or y0 < 0 or x0 + rw > w or y0 + rh > h:
            raise KernelError(f"region {x0},{y0},{rw},{rh} must lie inside the {w}x{h} image and be at "
                              f"least {MIN_SIDE}x{MIN_SIDE}")
    scale = 1.0
    if max(h, w) > WORK_MAX_SIDE:
        # Large photos: shake and edges are both many pixels wide, half resolution keeps them,
        # and each level of the pyramid costs a quarter as much.
        scale = 0.5
    if region is None:
        region = choose_region(g, side=int(REGION_MAX / scale))
    x0, y0, rw, rh = region
    patch = g[y0:y0 + rh, x0:x0 + rw]
    if scale != 1.0:
        patch = _ops.resize(torch.from_numpy(np.ascontiguousarray(patch)),
                            (max(round(rh * scale), 8), max(round(rw * scale), 8))).numpy()
    gx, gy = np.diff(patch, axis=1), np.diff(patch, axis=0)
    texture = float(np.abs(gx).mean() + np.abs(gy).mean())
    if texture < MIN_TEXTURE:
        raise KernelError("the image is too flat to estimate camera shake from (no edges to measure it by)")
    return patch, (x0, y0, rw, rh), scale, texture


def implausibility(stats: KernelStats, scale_agreement: float, *, cut: str) -> list[str]:
    """Why an estimated kernel does not look like one camera shake (empty: it does): many pieces,
    spread over its window, cut by the window (``cut`` names the likely cause), or unstable
    between the pyramid's last two scales. `estimate_kernel` and ``deblur inspect`` share it."""
    reasons = []
    if stats.components > 3:
        reasons.append(f"{stats.components} separate pieces")
    if stats.support_fraction > 0.35:
        reasons.append(f"diffuse: covers {stats.support_fraction:.0%} of its window")
    if stats.border_mass >= 0.05:
        reasons.append(f"cut by its window ({cut})")
    if scale_agreement < 0.5:
        reasons.append(f"unstable across scales (agreement {scale_agreement:.2f})")
    return reasons


def estimate_kernel(gray: np.ndarray, *, max_size: int | None = None,
                    region: tuple[int, int, int, int] | None = None, progress: Progress | None = None,
                    settings: EstimatorSettings | None = None) -> KernelEstimate:
    """Estimate the camera-shake kernel of a grey (or RGB, reduced to luminance) image in [0, 1].

    ``max_size``: largest kernel side in full-resolution pixels (default: a third of the
    estimation region's short side, at most 101 px). ``region``: (x, y, w, h) to estimate from
    instead of the automatic choice (`choose_region`). The size is chosen by a stated criterion:
    from 35 px (at working scale) upward by x1.4 while the kernel is cut by its window (more than
    3% of its mass in the outer 2 px, `touches_border`), up to ``max_size``.
    Raises `KernelError` for an image too small or too flat to estimate from.
    """
    t0 = time.perf_counter()
    st = settings or EstimatorSettings()
    patch, (x0, y0, rw, rh), scale, texture = _estimation_patch(gray, region)
    limit = min(patch.shape) // 3
    if max_size is not None:
        if max_size < 3:
            raise KernelError(f"max_size={max_size} is too small: a kernel needs at least 3 px")
        limit = min(limit, max(3, int(max_size * scale)))
    else:
        limit = min(limit, int(101 * scale))
    limit = limit if limit % 2 else limit - 1
    size = min(_ops.odd(FIRST_SIZE), limit)
    tried: list[int] = []
    results: list[PyramidResult] = []

    def run(n: int) -> PyramidResult:
        tried.append(n)

        def sub(f: float, text: str, _n: int = len(tried)) -> None:
            if progress is not None:
                progress(min(0.99, (_n - 1 + f) / (_n + 1)), text)

        r = estimate_pyramid(patch, n, st, sub if progress else None)
        results.append(r)
        return r

    # Grow while the kernel is cut by its window (`touches_border`). Shrinking was measured and
    # dropped: re-estimating at the support's bounding box plus 25% + 4 px, kept when its gradient
    # residual was no worse, changed 5 of Levin's 32 images and lowered the mean (32.04 against
    # 32.12 dB) for 50% more time; a window larger than the path costs little once it holds it.
    res = run(size)
    while size < limit and touches_border(res.kernel):
        size = min(_ops.odd(size * SIZE_STEP), limit)
        res = run(size)
    res = results[-1]
    if res.kernel_steps == 0:
        raise KernelError("no edge in the image stands out from its noise: nothing to estimate camera shake from")
    kernel = _upscale_kernel(refine_kernel(patch, res.kernel, st), 1.0 / scale)
    stats = kernel_stats(kernel)
    size_agreement = _ncc_aligned(results[-2].kernel, res.kernel) if len(results) > 1 else None
    scale_agreement = _scale_agreement(res)
    reasons = implausibility(stats, scale_agreement, cut="shake larger than max_size?")
    diag = Diagnostics(residual=res.residual, scale_agreement=scale_agreement, size_agreement=size_agreement,
                       noise_sigma=_ops.noise_sigma(patch), texture=texture, plausible=not reasons,
                       reasons=tuple(reasons))
    if progress is not None:
        progress(1.0, "kernel estimated")
    return KernelEstimate(kernel=kernel, region=(x0, y0, rw, rh), scale=scale, sizes_tried=tried, stats=stats,
                          diagnostics=diag, seconds=time.perf_counter() - t0, latent=res.latent)


def refine_kernel(patch: np.ndarray, kernel: np.ndarray, settings: EstimatorSettings) -> np.ndarray:
    """The pyramid's final ``kernel`` stepped once more (`kernel_step`) against the TV deconvolution
    of the estimation ``patch`` with it, on one thread like the pyramid (the same kernel whatever
    the thread count); ``kernel`` as it is where ``settings.refine_select`` is None.

    Why: the pyramid's last kernel step reads an L0 latent, a cartoon whose flattened texture
    carries no evidence; the TV deconvolution keeps it. Chosen on Levin's 32 (blind, mean PSNR):
    edges above half of Cho & Lee's threshold 32.35 dB against 32.10 without the step; the full
    threshold 32.06, twice it 32.02, two rounds at the full threshold 32.19; no edge selection
    -0.01 dB on the first 8. Then checked on benchmarks/default_model/evaluate.py's 60 shaken
    colour photos (deconvolution alone): 24.25 -> 24.71 dB on linear-light blur, 24.48 -> 24.92
    dB on sRGB-applied blur; calibrate_trust.py's 58 shaken crops of ten other photos +0.26 dB
    (better on 28, worse on 19). About 0.2 CPU s on a 512 px window.
    """
    if settings.refine_select is None:
        return kernel
    with one_thread():
        latent = deconvolve(patch, kernel, linear=False)
        return kernel_step(latent, patch, kernel, settings, select=settings.refine_select)


def deblur_shake(rgb: np.ndarray, *, max_size: int | None = None, region: tuple[int, int, int, int] | None = None,
                 kernel: np.ndarray | str | os.PathLike[str] | None = None, progress: Progress | None = None,
                 linear: bool = True, noise_sigma: float | None = None) -> tuple[np.ndarray, KernelEstimate | None]:
    """Remove uniform camera shake from an sRGB image (HxW or HxWx3 float32 in [0, 1]).

    With ``kernel`` (an array or a PNG/NPY path) only the non-blind step runs and the estimate
    returned is None; otherwise the kernel is estimated (`estimate_kernel`) on the luminance, in
    the same light as the deconvolution (``linear``), and the whole image is deconvolved.
    """
    img = np.asarray(rgb, dtype=np.float32)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"image must be HxW or HxWx3, got shape {img.shape}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]

    def stage(lo: float, hi: float) -> Progress | None:
        if progress is None:
            return None
        return lambda f, text: progress(lo + (hi - lo) * f, text)

    if kernel is not None:
        if isinstance(kernel, (str, os.PathLike)):
            k = load_kernel(kernel, image_shape=img.shape)
        else:
            k = normalise(np.asarray(kernel, dtype=np.float32))
            if k.ndim != 2 or k.sum() <= 0:
                raise KernelError("kernel must be a 2-D array of non-negative weights with a positive sum")
            check_fits(k, img.shape)
        return deconvolve(img, k, linear=linear, noise_sigma=noise_sigma, progress=stage(0, 1)), None
    lum = _ops.luminance(img)
    work = _ops.srgb_to_linear(lum) if linear else lum
    est = estimate_kernel(work, max_size=max_size, region=region, progress=stage(0.0, 0.7))
    out = deconvolve(img, est.kernel, linear=linear, noise_sigma=noise_sigma, progress=stage(0.7, 1.0))
    if progress is not None:
        progress(1.0, "done")
    return out, est
