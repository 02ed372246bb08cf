"""Shared numerical pieces: FFT operators, boundary padding, colour transfer, noise level.

Everything heavy runs in float32 torch so that real FFTs use every thread torch was given; the
callers hand numpy arrays in and get numpy arrays out.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .. import quality as _quality

Tensor = torch.Tensor


def as_tensor(a: np.ndarray | Tensor) -> Tensor:
    if isinstance(a, Tensor):
        return a.to(torch.float32)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def fft_size(n: int) -> int:
    """The next length >= n whose only prime factors are 2, 3 and 5.

    pocketfft is several times slower on lengths with large prime factors; a few padded pixels
    cost far less than that.
    """
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def psf2otf(kernel: Tensor, shape: tuple[int, int]) -> Tensor:
    """Half-spectrum transfer function of ``kernel`` on a periodic grid of ``shape``.

    The kernel's centre goes to index (0, 0) so that convolving does not translate the image.
    """
    kh, kw = kernel.shape[-2:]
    pad = kernel.new_zeros(*kernel.shape[:-2], *shape)
    pad[..., :kh, :kw] = kernel
    pad = torch.roll(pad, (-(kh // 2), -(kw // 2)), (-2, -1))
    return torch.fft.rfft2(pad)


def otf2psf(spectrum: Tensor, shape: tuple[int, int], ksize: tuple[int, int]) -> Tensor:
    """The ``ksize`` window around offset 0 of the periodic signal with half-spectrum ``spectrum``.

    This is the adjoint of `psf2otf`: it restricts a full-grid correlation to a kernel's support.
    """
    kh, kw = ksize
    full = torch.fft.irfft2(spectrum, s=shape)
    full = torch.roll(full, (kh // 2, kw // 2), (-2, -1))
    return full[..., :kh, :kw]


def grad_otfs(shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Transfer functions of the periodic forward differences x[j+1] - x[j] along width and height."""
    dx = torch.zeros(shape)
    dx[0, 0], dx[0, -1] = -1.0, 1.0
    dy = torch.zeros(shape)
    dy[0, 0], dy[-1, 0] = -1.0, 1.0
    return torch.fft.rfft2(dx), torch.fft.rfft2(dy)


def grad(x: Tensor) -> tuple[Tensor, Tensor]:
    """Periodic forward differences, matching `grad_otfs`.

    Written with slices into preallocated outputs rather than ``torch.roll(x, -1) - x``: the
    same numbers without a rolled copy of the image per axis (these run every solver step).
    """
    gx = torch.empty_like(x)
    torch.sub(x[..., 1:], x[..., :-1], out=gx[..., :-1])
    torch.sub(x[..., :1], x[..., -1:], out=gx[..., -1:])
    gy = torch.empty_like(x)
    torch.sub(x[..., 1:, :], x[..., :-1, :], out=gy[..., :-1, :])
    torch.sub(x[..., :1, :], x[..., -1:, :], out=gy[..., -1:, :])
    return gx, gy


def div_adjoint(wx: Tensor, wy: Tensor) -> Tensor:
    """Adjoint of `grad` (a negative divergence): its spectrum is conj(dx) Wx + conj(dy) Wy, so
    one FFT of this image replaces the FFTs of both gradient fields."""
    out = torch.empty_like(wx)
    torch.sub(wx[..., :-1], wx[..., 1:], out=out[..., 1:])
    torch.sub(wx[..., -1:], wx[..., :1], out=out[..., :1])
    out[..., 1:, :] += wy[..., :-1, :]
    out[..., 1:, :] -= wy[..., 1:, :]
    out[..., :1, :] += wy[..., -1:, :]
    out[..., :1, :] -= wy[..., :1, :]
    return out


def _blend_extension(img: np.ndarray, pad: int, axis: int) -> np.ndarray:
    """Extend ``img`` by ``pad`` samples along ``axis`` so that its periodic repetition is seamless.

    The extension starts as the mirror image of the far edge and ends as the mirror image of the
    near edge, cross-faded by a raised cosine: both seams are continuous, so the FFT sees no jump
    and the deconvolution rings at no border.
    """
    if pad <= 0:
        return img
    n = img.shape[axis]
    widths = [(0, 0)] * img.ndim
    widths[axis] = (0, pad)
    after = np.pad(img, widths, mode="symmetric").take(np.arange(n, n + pad), axis=axis)
    widths[axis] = (pad, 0)
    before = np.pad(img, widths, mode="symmetric").take(np.arange(pad), axis=axis)
    t = (np.arange(pad, dtype=np.float32) + 0.5) / pad
    s = (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
    shape = [1] * img.ndim
    shape[axis] = pad
    s = s.reshape(shape)
    return np.concatenate([img, (1 - s) * after + s * before], axis=axis)


def wrap_pad(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pad the last two axes of ``img`` up to ``shape`` with a seamless periodic extension."""
    h, w = img.shape[-2:]
    out = _blend_extension(np.asarray(img, dtype=np.float32), shape[1] - w, img.ndim - 1)
    return _blend_extension(out, shape[0] - h, img.ndim - 2)


def padded_shape(h: int, w: int, ksize: int) -> tuple[int, int]:
    """FFT grid for an h x w image blurred by a ksize kernel: room for the blur's spill, fast sizes."""
    extra = max(ksize, 8)
    return fft_size(h + extra), fft_size(w + extra)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Decode sRGB to linear light, where blur from a moving camera adds up like photons do."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / np.float32(12.92),
                    ((x + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4)).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Encode linear light back to sRGB."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * np.float32(12.92),
                    np.float32(1.055) * x ** np.float32(1 / 2.4) - np.float32(0.055)).astype(np.float32)


LUMA = _quality.LUMA  # Rec. 709, the one definition (numpy only, for the torch-free verdict)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """The `LUMA` mix of an HxWx3 image (an HxW one is already grey)."""
    if rgb.ndim == 2:
        return np.asarray(rgb, dtype=np.float32)
    return np.asarray(rgb[..., :3], dtype=np.float32) @ LUMA


def noise_sigma(gray: np.ndarray) -> float:
    """Standard deviation of white noise in ``gray``, from the median of its diagonal Haar details.

    Blur removes most fine diagonal detail, so what is left in that band is mostly noise; the
    median ignores the few edges that survive (Donoho's MAD estimator).
    """
    g = np.asarray(gray, dtype=np.float32)
    h, w = (g.shape[0] // 2) * 2, (g.shape[1] // 2) * 2
    if h < 4 or w < 4:
        return 0.0
    g = g[:h, :w]
    d = (g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) * 0.5
    return float(np.median(np.abs(d)) / 0.6745)


def resize(img: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bilinear resize of the last two axes (a Gaussian-like prefilter when shrinking)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    lead = img.shape[:-2]
    x = img.reshape(1, -1, *img.shape[-2:])
    antialias = size[0] < img.shape[-2] or size[1] < img.shape[-1]
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)
    return out.reshape(*lead, *size)


def odd(n: float) -> int:
    m = int(math.ceil(n))
    return m if m % 2 else m + 1
