"""Non-blind deconvolution that survives real photos: noise, clipped highlights, JPEG, borders, gamma.

Total-variation regularised least squares, solved by half-quadratic splitting (Krishnan & Fergus
2009 style continuation) with closed-form FFT steps, all colour channels in one batch:

- borders: the image is extended to the FFT grid with a seamless periodic extension, so the
  circular convolution meets no jump and does not ring at the edges;
- noise: sigma is measured on the photo and sets the TV weight, so clean photos keep detail and
  noisy ones are not amplified into grain;
- clipped highlights: their pixels break the linear blur model, so they (and the border extension)
  are taken out of the data term via an extra splitting variable (u = k * x), which keeps every
  step closed-form;
- JPEG: 8x8 block edges are gradients the kernel never made; when they are measurably present the
  block seams are smoothed before deconvolution and the TV weight raised;
- gamma: with ``linear=True`` the blur is undone in linear light, where a moving camera averages
  photons, and the result is encoded back to sRGB.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import _ops

Tensor = torch.Tensor

SATURATED = 0.98  # sRGB value from which a pixel is treated as clipped


def tv_weight(sigma: float) -> float:
    """TV weight for noise level ``sigma`` (on [0, 1] values).

    About 7e-4 is best on clean 8-bit images (measured on Levin's set with the true kernels, with
    the masked data term below, whose coupling weight 1 halves the effective data weight), and
    the weight must grow with the noise variance to keep amplified noise down. The same weight
    serves blind kernels: scaled for them (after `engine.refine_kernel`), Levin's 32 gave 32.35 dB
    at 1x, 32.49 at 0.7x, 32.49 at 0.5x, 32.01 at 1.5x, but evaluate.py's 60 shaken colour photos
    lost 0.29 / 0.27 dB (linear / sRGB-applied blur) at 0.7x and 0.64 / 0.59 at 0.5x.
    """
    return float(min(7e-4 + 8.0 * sigma * sigma, 0.05))


def blockiness(gray: np.ndarray) -> float:
    """Ratio of mean |horizontal+vertical difference| across 8-px block seams to elsewhere.

    About 1 for a photo that was never JPEG-compressed (or was, at high quality); clearly above 1
    when block edges show.
    """
    g = np.asarray(gray, dtype=np.float32)
    if min(g.shape) < 32:
        return 1.0
    dx = np.abs(np.diff(g, axis=1))
    dy = np.abs(np.diff(g, axis=0))
    cols = np.arange(dx.shape[1])
    rows = np.arange(dy.shape[0])
    seam_x, seam_y = (cols % 8) == 7, (rows % 8) == 7
    seam = dx[:, seam_x].mean() + dy[seam_y, :].mean()
    other = dx[:, ~seam_x].mean() + dy[~seam_y, :].mean()
    return float(seam / max(other, 1e-8))


def deblock(img: np.ndarray) -> np.ndarray:
    """Soften 8x8 JPEG block seams only: average the two pixels on each side of every seam with
    their neighbours, leaving the inside of blocks (the real detail) untouched."""
    out = np.array(img, dtype=np.float32, copy=True)
    h, w = out.shape[:2]
    for axis, n in ((1, w), (0, h)):
        seams = np.arange(7, n - 1, 8)
        if seams.size == 0:
            continue
        a = out.take(seams, axis=axis)
        b = out.take(seams + 1, axis=axis)
        lo = out.take(np.maximum(seams - 1, 0), axis=axis)
        hi = out.take(np.minimum(seams + 2, n - 1), axis=axis)
        new_a = 0.25 * lo + 0.5 * a + 0.25 * b
        new_b = 0.25 * a + 0.5 * b + 0.25 * hi
        if axis == 1:
            out[:, seams], out[:, seams + 1] = new_a, new_b
        else:
            out[seams, :], out[seams + 1, :] = new_a, new_b
    return out


def tv_deconvolve(y: Tensor, kernel: Tensor, lam: float, *, mask: Tensor | None = None,
                  rate: float = 2.0, rho_max: float = 2.0, mu: float = 1.0, rho0: float | None = None,
                  inner: int = 2, progress: Callable[[float], None] | None = None) -> Tensor:
    """min_x ||M (k * x - y)||^2 + lam ||grad x||_1 on a periodic grid (``y``: C x H x W, padded).

    Without ``mask`` (M = 1) each step is one FFT solve; with it, u = k * x is split off so the
    masked pixels are fitted by nothing but the prior (weight ``mu`` on that coupling).
    With holes in the mask the split pair (u, x) needs ``inner`` alternations per penalty value to
    agree: with one, the doubling schedule leaves the data behind clipped highlights unfitted (a
    lamp test scene: 26.2 dB far from the lamp with 1, 27.6 with 2).

    Schedule (measured with the true kernels on Levin's 32 images and on the 60 shaken colour
    photos of benchmarks/default_model/evaluate.py, PSNR means): the penalty rho doubles from
    lam / 2 up to ``rho_max`` = 2 (13 steps at the clean-image weight); the old end at 100 (19
    steps) gave 33.558 dB and 29.173 dB, ending at 25 / 6.25 / 1.56 gives 33.558 / 33.558 /
    33.558 and 29.172 / 29.170 / 29.161: past rho ~ 1 x hardly moves. The low end is what
    matters: starting at 2 lam instead (2 steps fewer) costs 0.11 and 0.14 dB, and a growth
    rate of 2.83 instead of 2 costs 0.10 and 0.16 dB.

    Cost: 4 real FFTs per alternation with a mask. x's spectrum X is kept from the previous
    solve, so k * x is one inverse FFT; u = k * x + c with c = M (y - k * x) / (M + mu), hence
    U = K X + FFT(c), and the x step's numerator mu conj(K) U + rho FFT(div) needs only the
    FFTs of c and of the shrunk gradients' divergence (`_ops.div_adjoint`), then one inverse.
    """
    shape = tuple(y.shape[-2:])
    otf = _ops.psf2otf(kernel, shape)
    dx, dy = _ops.grad_otfs(shape)
    den_k = otf.real ** 2 + otf.imag ** 2
    den_d = dx.real ** 2 + dx.imag ** 2 + dy.real ** 2 + dy.imag ** 2
    rho = lam / 2.0 if rho0 is None else rho0
    n_steps = max(1, math.ceil(math.log(rho_max / rho) / math.log(rate)))
    step = 0
    if mask is None:
        x = y.clone()
        num0 = otf.conj() * torch.fft.rfft2(y)
        while rho < rho_max:
            gx, gy = _ops.grad(x)
            t = lam / (2.0 * rho)
            div = _ops.div_adjoint(F.softshrink(gx, t), F.softshrink(gy, t))
            x = torch.fft.irfft2((num0 + rho * torch.fft.rfft2(div)) / (den_k + rho * den_d), s=shape)
            rho *= rate
            step += 1
            if progress is not None:
                progress(step / n_steps)
        return x
    weight = mask / (mask + mu)  # c = weight * (y - k * x)
    otf_c = otf.conj() * mu
    den_km = den_k * mu
    x = y.clone()
    spec = torch.fft.rfft2(x)
    while rho < rho_max:
        t = lam / (2.0 * rho)
        inv = 1.0 / (den_km + rho * den_d)
        for _ in range(inner):
            c = torch.fft.irfft2(otf * spec, s=shape)
            torch.sub(y, c, out=c).mul_(weight)
            gx, gy = _ops.grad(x)
            div = _ops.div_adjoint(F.softshrink(gx, t), F.softshrink(gy, t))
            num = den_km * spec
            num.addcmul_(otf_c, torch.fft.rfft2(c))
            num.add_(torch.fft.rfft2(div), alpha=rho)
            spec = num.mul_(inv)
            x = torch.fft.irfft2(spec, s=shape)
        rho *= rate
        step += 1
        if progress is not None:
            progress(step / n_steps)
    return x


def half_kernel(kernel: np.ndarray) -> np.ndarray:
    """The blur ``kernel`` as seen at half resolution (after 2x2 averaging), centre kept in place.

    Each tap at offset d (full-resolution pixels) is splatted linearly onto offset d / 2: an exact
    factor of 2 (a resize to an odd side would be off by up to one pixel in 25) and the [1/2, 1, 1/2]
    tent as the anti-alias filter.
    """
    k = np.asarray(kernel, dtype=np.float64)

    def weights(n: int) -> np.ndarray:
        c = n // 2
        half = (c + 1) // 2
        d = np.arange(-c, c + 1) / 2.0
        a = np.arange(-half, half + 1)[:, None]
        return np.maximum(0.0, 1.0 - np.abs(d[None, :] - a))

    out = weights(k.shape[0]) @ k @ weights(k.shape[1]).T
    return (out / out.sum()).astype(np.float32)


def _halve(planes: np.ndarray) -> np.ndarray:
    """2x2 box average of the last two axes (an odd side is first extended by its last row/column)."""
    h, w = planes.shape[-2:]
    p = np.pad(planes, [(0, 0)] * (planes.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
    return 0.25 * (p[..., 0::2, 0::2] + p[..., 1::2, 0::2] + p[..., 0::2, 1::2] + p[..., 1::2, 1::2])


def _double(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear enlargement by exactly 2 (half-resolution pixel j is centred on full-resolution
    2j + 1/2, as `_halve` made it), cropped to ``size``."""
    t = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
    up = F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)[0]
    return up[..., :size[0], :size[1]].numpy()


def _data_mask(shape: tuple[int, int], clipped: np.ndarray) -> tuple[Tensor, bool]:
    """Weight of each FFT-grid pixel in the data term: 1 on the photo, 0 on the grid's extension
    and on clipped pixels with a 1-px rim. Returns (mask, whether the photo had clipped pixels)."""
    h, w = clipped.shape
    # The data term covers the photo only: the extension to the FFT grid is free to be whatever
    # the blur of the estimate makes it (no wrap-around, no guessed border), which on Levin's set
    # is worth up to 5 dB on the largest kernels over a fixed seamless extension.
    m = np.zeros(shape, dtype=np.float32)
    m[:h, :w] = 1.0
    sat = bool(clipped.any())
    if sat:
        # A clipped pixel is a lower bound, not a measurement: drop it and a 1-px rim from the fit.
        c = clipped.copy()
        c[1:, :] |= clipped[:-1, :]
        c[:-1, :] |= clipped[1:, :]
        c[:, 1:] |= c[:, :-1].copy()
        c[:, :-1] |= c[:, 1:].copy()
        m[:h, :w][c] = 0.0
    return torch.from_numpy(m), sat


def _solve(planes: np.ndarray, k: np.ndarray, weight: float, clipped: np.ndarray,
           tick: Callable[[float], None] | None) -> np.ndarray:
    """`tv_deconvolve` of C x H x W planes (in the light the blur happened in) on a padded grid."""
    h, w = planes.shape[-2:]
    shape = _ops.padded_shape(h, w, max(k.shape))
    y = torch.from_numpy(_ops.wrap_pad(np.ascontiguousarray(planes), shape))
    mask, sat = _data_mask(shape, clipped)
    # Holes inside the photo (clipped pixels) need two u/x alternations per penalty value to be
    # filled; a mask over the FFT grid's extension alone converges with one (and blind results on
    # Levin's set are 0.15 dB better with one: 32.12 against 31.97 dB).
    x = tv_deconvolve(y, torch.from_numpy(np.ascontiguousarray(k)), weight, mask=mask, inner=2 if sat else 1,
                      progress=tick)
    return x[..., :h, :w].numpy()


LUMA = _ops.LUMA
# Photos from this many pixels up have their colour differences solved at half resolution. Below
# it a photo is a crop or a thumbnail whose colour detail is per pixel (on the 256 px crops of
# benchmarks/default_model/evaluate.py's shaken set, halving costs 0.48 dB with the true kernels:
# 29.17 -> 28.70) and the solve takes under a second anyway; camera photos carry colour at half
# resolution at best (a Bayer sensor samples red and blue on every other row and column, JPEG's
# 4:2:0 stores them at half resolution), and there the halving halves the time.
HALF_CHROMA_PIXELS = 1_000_000


def _solve_luma_chroma(chw: np.ndarray, k: np.ndarray, weight: float, clipped: np.ndarray,
                       tick: Callable[[float], None] | None) -> np.ndarray:
    """Deconvolve 3 channels as luma at full resolution and two colour differences at half.

    Blur commutes with any fixed linear mix of the channels, so Y = luma(R, G, B), B - Y and
    R - Y are blurred by the same kernel; the differences carry little fine detail (in photos and
    in what eyes see), so at half resolution, with the kernel halved too (`half_kernel`), they
    cost a quarter each: 1.5 channel-solves instead of 3.
    """
    h, w = chw.shape[-2:]
    luma = np.tensordot(LUMA, chw, axes=1)
    diffs = np.stack((chw[2] - luma, chw[0] - luma))

    def part(lo: float, hi: float) -> Callable[[float], None] | None:
        return None if tick is None else (lambda f: tick(lo + (hi - lo) * f))

    y = _solve(luma[None], k, weight, clipped, part(0.0, 2 / 3))[0]
    clipped_half = _halve(clipped.astype(np.float32)) > 0
    d = _double(_solve(_halve(diffs), half_kernel(k), weight, clipped_half, part(2 / 3, 1.0)), (h, w))
    b, r = y + d[0], y + d[1]
    g = (y - LUMA[0] * r - LUMA[2] * b) / LUMA[1]
    return np.stack((r, g, b))


def deconvolve(rgb: np.ndarray, kernel: np.ndarray, *, noise_sigma: float | None = None, linear: bool = True,
               lam: float | None = None, progress: Callable[[float, str], None] | None = None,
               full_chroma: bool = False) -> np.ndarray:
    """Undo blur by ``kernel`` (a convolution kernel) in an HxW or HxWx3 float image in [0, 1].

    ``noise_sigma``: noise of the input on [0, 1] values (measured when None); ``lam`` overrides
    the TV weight derived from it. ``linear``: the input is sRGB and the blur happened in linear
    light. A colour photo of ``HALF_CHROMA_PIXELS`` or more is solved as luma at full resolution
    and colour differences at half (`_solve_luma_chroma`, half the time) unless ``full_chroma``
    (every channel at full resolution, as smaller images always are). Returns float32 of the
    input's shape, clipped to [0, 1].
    """
    img = np.asarray(rgb, dtype=np.float32)
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be HxW or HxWxC, got shape {img.shape}")
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim != 2 or k.sum() <= 0:
        raise ValueError("kernel must be a 2-D array with a positive sum")
    k = k / k.sum()
    grey = img.ndim == 2
    chw = img[None] if grey else np.moveaxis(img, -1, 0)
    clipped = (chw >= SATURATED).any(axis=0)
    lum = _ops.luminance(img)
    if blockiness(lum) > 1.15:
        chw = np.moveaxis(deblock(np.moveaxis(chw, 0, -1)), -1, 0)
        jpeg_boost = 2.0
    else:
        jpeg_boost = 1.0
    if noise_sigma is None:
        noise_sigma = _ops.noise_sigma(lum)
    weight = tv_weight(noise_sigma) * jpeg_boost if lam is None else lam
    if linear:
        chw = _ops.srgb_to_linear(chw)

    def tick(f: float) -> None:
        if progress is not None:
            progress(f, "deconvolving")

    h, w = chw.shape[-2:]
    if chw.shape[0] == 3 and not full_chroma and h * w >= HALF_CHROMA_PIXELS and min(h, w) >= 2 * max(k.shape):
        out = _solve_luma_chroma(chw, k, weight, clipped, tick)
    else:
        out = _solve(chw, k, weight, clipped, tick)
    if linear:
        out = _ops.linear_to_srgb(out)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if clipped.any():
        # Where the photo itself was clipped the scene was at least that bright: keep it so.
        src = img[None] if grey else np.moveaxis(img, -1, 0)
        out = np.where(clipped[None], np.maximum(out, src), out)
    return out[0] if grey else np.moveaxis(out, 0, -1)
