"""Blind kernel estimation: coarse to fine, L0-sparse latent gradients, least-squares kernel.

The method follows the published recipe (Pan et al. 2014/2016, Anger et al. IPOL 2019; facts in
docs of the shared workspace): at each pyramid level alternate (a) a latent image whose gradients
are L0-sparse, solved by half-quadratic splitting with closed-form FFT steps, and (b) the kernel
that best maps the latent's strong gradients onto the blurred image's, by conjugate gradients
with a Tikhonov term and the kernel's support as a hard constraint. Sparse gradients are what
make the problem solvable: a blurred image explained by a sharp one with few edges has one kernel
that does it, while the blurry image itself (the trivial solution) has dense gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from . import _ops
from .kernels import clean_kernel, drop_small_components, normalise

Tensor = torch.Tensor
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class EstimatorSettings:
    """Every number the estimator uses; one set for all images (no per-image tuning).

    ``lam_grad``: L0 weight on latent gradients at the coarsest level, divided by ``lam_decay``
    after each alternation down to ``lam_min`` (strong sparsity first, detail later);
    ``iters``: alternations per level; ``gamma``: Tikhonov weight of the kernel step;
    ``beta_max``/``kappa``: the splitting penalty's end and growth; ``ratio``: pyramid scale step;
    ``edge_select``: keep only the strongest latent gradients (Cho & Lee), which makes early,
    poor latents usable; ``k_thresh``: final kernel values under max/k_thresh are dropped;
    ``pixel_gamma``: power applied to the image before estimation (Pan's demo uses 0.8), which
    lifts shadows' edges.

    Measured on Levin's 32 images (blind, mean PSNR; speed from fewer L0 steps): ``beta_max``
    1e5 (Pan's value) 32.119 dB, 1e4 32.113 (3 of ~26 steps fewer per latent), 1e3 32.077;
    ``kappa`` 3 instead of 2: 31.37; ``iters`` 4 instead of 5: 31.84.

    ``refine_select``: `deblurcli.deconv.estimate_kernel` ends with one more kernel step
    (`kernel_step`) against the TV deconvolution of its region, keeping the latent's gradients
    above this share of Cho & Lee's threshold (None: no such step). Why: the L0 latent is a
    cartoon whose flattened texture the last kernel step cannot use; the TV latent keeps it.
    """

    lam_grad: float = 4e-3
    lam_decay: float = 1.1
    lam_min: float = 1e-4
    iters: int = 5
    gamma: float = 2.0
    cg_iters: int = 20
    beta_max: float = 1e4
    kappa: float = 2.0
    ratio: float = math.sqrt(0.5)
    coarsest: int = 5
    edge_select: bool = True
    k_thresh: float = 20.0
    pixel_gamma: float = 1.0
    refine_select: float | None = 0.5


@dataclass
class LevelTrace:
    """The kernel and fit at the end of one pyramid level, kept for diagnostics."""

    size: int
    image_hw: tuple[int, int]
    kernel: np.ndarray
    residual: float


@dataclass
class PyramidResult:
    kernel: np.ndarray
    latent: np.ndarray
    residual: float
    levels: list[LevelTrace] = field(default_factory=list)
    #: Kernel updates made (a step with no edge left to learn from keeps the kernel as it was): 0
    #: means the kernel is still the initial streak, which no photo evidence shaped.
    kernel_steps: int = 0


def _latent_l0(blur_otf_num: Tensor, den_k: Tensor, den_d: Tensor, dx: Tensor, dy: Tensor, start: Tensor,
               lam: float, beta_max: float, kappa: float) -> Tensor:
    """min_S ||k*S - B||^2 + lam ||grad S||_0 by half-quadratic splitting.

    With the auxiliary gradients (h, v) fixed the S step is a closed-form division in Fourier
    space; with S fixed, (h, v) is a hard threshold at sqrt(lam / beta). Raising beta from 2 lam
    makes the gradients sparse gradually, as the L0 homotopy needs.
    """
    shape = tuple(start.shape[-2:])
    s = start
    beta = 2.0 * lam
    while beta < beta_max:
        h, v = _ops.grad(s)
        # Zeroing by a 0/1 float mask (``ge_`` writes it into the squared magnitudes): the same
        # numbers as masked_fill_ with a boolean one, at half its cost (it was a sixth of an estimate).
        keep = torch.mul(h, h).addcmul_(v, v).ge_(lam / beta)
        h.mul_(keep)
        v.mul_(keep)
        # conj(dx) H + conj(dy) V is the spectrum of div_adjoint(h, v): one FFT instead of two.
        num = torch.add(blur_otf_num, torch.fft.rfft2(_ops.div_adjoint(h, v)), alpha=beta)
        s = torch.fft.irfft2(num.div_(torch.add(den_k, den_d, alpha=beta)), s=shape)
        beta *= kappa
    return s


def _valid_grads(img: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences inside the image only (no wrap), cropped to a common (H-1, W-1)."""
    gx = img[..., :-1, 1:] - img[..., :-1, :-1]
    gy = img[..., 1:, :-1] - img[..., :-1, :-1]
    return gx, gy


def _edge_threshold(gx: Tensor, gy: Tensor, ksize: int) -> float:
    """Squared-gradient threshold keeping at least ~20*ksize pixels in each of four orientations.

    Cho & Lee's rule: enough strong edges in every direction to constrain every part of the
    kernel, and no more (weak gradients are mostly blur and noise).
    """
    mag = (gx * gx + gy * gy).flatten()
    ang = torch.atan2(gy, gx).flatten()
    ang = torch.where(ang < 0, ang + math.pi, ang)  # an edge's orientation is modulo 180 degrees
    need = max(20 * ksize, 10)
    best = math.inf
    for i in range(4):
        sel = mag[(ang >= i * math.pi / 4) & (ang < (i + 1) * math.pi / 4)]
        if sel.numel() < need:
            return 0.0
        best = min(best, float(torch.topk(sel, need).values[-1]))
    return best if math.isfinite(best) else 0.0


def _kernel_ls(sx: Tensor, sy: Tensor, bx: Tensor, by: Tensor, k0: Tensor, gamma: float, iters: int) -> Tensor:
    """min_k sum_d ||k * dS - dB||^2 + gamma ||k||^2 over a fixed support, by conjugate gradients.

    The gradients are zero-padded to a grid with room for the kernel, so the correlations are
    linear, not circular: an edge at one border does not pretend to explain the opposite one.
    """
    ks = tuple(k0.shape)
    shape = (_ops.fft_size(sx.shape[0] + ks[0]), _ops.fft_size(sx.shape[1] + ks[1]))
    f = torch.fft.rfft2(torch.stack((sx, sy, bx, by)), s=shape)
    m = (f[0].abs() ** 2 + f[1].abs() ** 2).to(f.dtype)
    b = _ops.otf2psf(f[0].conj() * f[2] + f[1].conj() * f[3], shape, ks)
    # The normal operator only needs the gradients' autocorrelation at lags within +-(ks - 1)
    # (exact: the grid leaves ks of zero padding, so those lags do not wrap). Applying it on a
    # grid of twice the kernel's side gives the same numbers as on the image's grid, without
    # two image-sized FFTs per conjugate-gradient step.
    lags = (2 * ks[0] - 1, 2 * ks[1] - 1)
    small = (_ops.fft_size(2 * ks[0]), _ops.fft_size(2 * ks[1]))
    m_small = _ops.psf2otf(_ops.otf2psf(m, shape, lags), small)

    def apply(k: Tensor) -> Tensor:
        return _ops.otf2psf(m_small * _ops.psf2otf(k, small), small, ks) + gamma * k

    x = k0.clone()
    r = b - apply(x)
    p = r.clone()
    rs = float((r * r).sum())
    tol = 1e-10 * max(float((b * b).sum()), 1e-30)
    for _ in range(iters):
        if rs <= tol:
            break
        ap = apply(p)
        alpha = rs / max(float((p * ap).sum()), 1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = float((r * r).sum())
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x


def kernel_step(latent: np.ndarray, blurred: np.ndarray, kernel: np.ndarray,
                settings: EstimatorSettings = EstimatorSettings(), select: float = 1.0) -> np.ndarray:
    """One kernel step from a given ``latent`` (the sharp image's estimate) and the ``blurred``
    image: the least-squares kernel on the latent's strongest gradients (``select`` times Cho &
    Lee's threshold for ``kernel``'s size), from ``kernel`` as the start, pruned and cleaned as the
    pyramid's final kernel is."""
    lt = torch.from_numpy(np.ascontiguousarray(latent, dtype=np.float32))
    bt = torch.from_numpy(np.ascontiguousarray(blurred, dtype=np.float32))
    sx, sy = _valid_grads(lt)
    bx, by = _valid_grads(bt)
    thr = _edge_threshold(sx, sy, kernel.shape[0]) * select
    if thr > 0:
        weak = (sx * sx + sy * sy) < thr
        sx, sy = sx.masked_fill(weak, 0.0), sy.masked_fill(weak, 0.0)
    k = _kernel_ls(sx, sy, bx, by, torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32)),
                   settings.gamma, settings.cg_iters)
    if not (bool(torch.isfinite(k).all()) and float(k.max()) > 0):
        return kernel  # nothing to learn from: keep the kernel, as the pyramid's steps do
    return clean_kernel(_prune(k).numpy(), rel_threshold=1.0 / settings.k_thresh, min_mass=0.0)


def _prune(k: Tensor) -> Tensor:
    """After each kernel step: values under 5% of the peak and pieces under 10% of the mass go."""
    arr = k.numpy().astype(np.float32)
    arr = np.maximum(arr, 0)
    if arr.max() <= 0:
        return k
    arr[arr < 0.05 * arr.max()] = 0
    arr = drop_small_components(normalise(arr), 0.1)
    return torch.from_numpy(normalise(arr))


def _resize_kernel(k: np.ndarray, size: int) -> np.ndarray:
    """Carry a kernel to the next pyramid level: enlarge by the scale step, fit into ``size``."""
    h = k.shape[0]
    scaled = _ops.odd(h * size / max(h, 1)) if size > h else size
    up = _ops.resize(torch.from_numpy(np.ascontiguousarray(k)), (scaled, scaled)).numpy()
    up = np.maximum(up, 0)
    out = np.zeros((size, size), dtype=np.float32)
    if scaled >= size:
        o = (scaled - size) // 2
        out[:] = up[o:o + size, o:o + size]
    else:
        o = (size - scaled) // 2
        out[o:o + scaled, o:o + scaled] = up
    return normalise(out)


def _initial_kernel(size: int) -> np.ndarray:
    """A two-pixel horizontal streak at the centre: no direction preferred but not a delta (a delta
    is the trivial fixed point the alternation could not leave)."""
    k = np.zeros((size, size), dtype=np.float32)
    c = size // 2
    k[c, max(c - 1, 0):c + 1] = 0.5
    return normalise(k)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside, restoring the caller's count after.

    The pyramid works on images of at most ~600 px a side, thousands of small operations: on
    the 2-core machine a second thread bought nothing (1 MP photo, three runs each: 2.4-2.7 s
    with one thread, 2.3-2.9 s with two) and, when another process held a core, cost up to 5x
    (12.2 s), each operation waiting for the descheduled thread. Deconvolving whole photos does
    gain from threads, so only this part is pinned.
    """
    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


def estimate_pyramid(gray: np.ndarray, ksize: int, settings: EstimatorSettings = EstimatorSettings(),
                     progress: Progress | None = None) -> PyramidResult:
    """Estimate a ``ksize`` x ``ksize`` convolution kernel from a grey image in [0, 1]."""
    with one_thread():
        return _estimate_pyramid(gray, ksize, settings, progress)


def _estimate_pyramid(gray: np.ndarray, ksize: int, settings: EstimatorSettings,
                      progress: Progress | None) -> PyramidResult:
    st = settings
    y = np.asarray(gray, dtype=np.float32)
    if st.pixel_gamma != 1.0:
        y = np.power(np.clip(y, 0, None), st.pixel_gamma)
    H, W = y.shape
    n_levels = max(int(math.floor(math.log(st.coarsest / ksize) / math.log(st.ratio))), 0) + 1
    y_t = torch.from_numpy(np.ascontiguousarray(y))
    k = None
    lam = st.lam_grad
    threshold = 0.0
    levels: list[LevelTrace] = []
    latent = y
    residual = 1.0
    total_steps = n_levels * st.iters
    step = 0
    kernel_steps = 0
    for s in range(n_levels - 1, -1, -1):
        scale = st.ratio ** s
        kl = _ops.odd(ksize * scale)
        hl, wl = max(round(H * scale), kl + 2), max(round(W * scale), kl + 2)
        ys = _ops.resize(y_t, (hl, wl))
        k = _initial_kernel(kl) if k is None else _resize_kernel(k, kl)
        shape = _ops.padded_shape(hl, wl, kl)
        yp = torch.from_numpy(_ops.wrap_pad(ys.numpy(), shape))
        fy = torch.fft.rfft2(yp)
        dx, dy = _ops.grad_otfs(shape)
        den_d = dx.abs() ** 2 + dy.abs() ** 2
        bx, by = _valid_grads(ys)
        if s == n_levels - 1 and st.edge_select:
            threshold = _edge_threshold(bx, by, kl)
        thr = threshold
        kt = torch.from_numpy(k)
        for _ in range(st.iters):
            otf = _ops.psf2otf(kt, shape)
            latent_t = _latent_l0(otf.conj() * fy, otf.abs() ** 2, den_d, dx, dy, yp, lam, st.beta_max, st.kappa)
            lat = latent_t[:hl, :wl]
            sx, sy = _valid_grads(lat)
            if st.edge_select and thr > 0:
                weak = (sx * sx + sy * sy) < thr
                if bool(weak.all()):
                    thr *= 0.81
                    weak = (sx * sx + sy * sy) < thr
                sx, sy = sx.masked_fill(weak, 0.0), sy.masked_fill(weak, 0.0)
                thr /= 1.1
            k_new = _kernel_ls(sx, sy, bx, by, kt, st.gamma, st.cg_iters)
            # No edge survived the selection (a faint, low-contrast photo): there is no evidence
            # to move the kernel by, and a step on nothing zeroes it (then the next latent step
            # divides by it, and NaN spreads to every level). The kernel stays as it was.
            if bool(torch.isfinite(k_new).all()) and float(k_new.max()) > 0:
                kt = _prune(k_new)
                kernel_steps += 1
            lam = max(lam / st.lam_decay, st.lam_min)
            step += 1
            if progress is not None:
                progress(step / total_steps, f"estimating the blur kernel ({kl} px)")
        k = clean_kernel(kt.numpy(), rel_threshold=0.0, min_mass=0.0)
        # Fit of the final latent through the kernel, on gradients: how much the model explains.
        sx, sy = _valid_grads(lat)
        shape_r = (_ops.fft_size(sx.shape[0] + kl), _ops.fft_size(sx.shape[1] + kl))
        fk = _ops.psf2otf(torch.from_numpy(k), shape_r)
        pred = torch.fft.irfft2(torch.fft.rfft2(torch.stack((sx, sy)), s=shape_r) * fk, s=shape_r)
        pred = pred[:, :sx.shape[0], :sx.shape[1]]
        m = kl // 2 + 1
        inner = (slice(m, -m or None), slice(m, -m or None))
        err = float(((pred[0] - bx)[inner] ** 2).sum() + ((pred[1] - by)[inner] ** 2).sum())
        ref = float((bx[inner] ** 2).sum() + (by[inner] ** 2).sum())
        residual = err / max(ref, 1e-12)
        levels.append(LevelTrace(size=kl, image_hw=(hl, wl), kernel=k.copy(), residual=residual))
        latent = lat.numpy()
    final = clean_kernel(k, rel_threshold=1.0 / st.k_thresh, min_mass=0.0)
    return PyramidResult(kernel=final, latent=latent, residual=residual, levels=levels, kernel_steps=kernel_steps)
