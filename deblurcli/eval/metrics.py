"""Image-quality metrics computed the way the deblurring papers compute them.

How each number is computed, and how far it is known to differ from the official scripts
----------------------------------------------------------------------------------------

Every score is taken on the restored image *after* it has been clamped to [0, 1] and rounded to
8 bits (``round(255 * x)``, halves rounded up, as MATLAB's ``im2uint8`` and RealBlur's ``im2uint8``
do), i.e. on exactly the pixels a saved PNG holds, against the 8-bit ground truth. A dataset's
score is the mean of the per-image scores, as the official scripts average them.

GoPro, HIDE and plain folder pairs (protocol ``matlab``) follow ``evaluate_GOPRO_HIDE.m`` (MPRNet,
reused by most later papers), which calls MATLAB's ``psnr(A, ref)`` and ``ssim(A, ref)`` on the
uint8 HxWx3 images:

- ``psnr``: RGB, every pixel, no border crop, no Y channel, peak 255, in float64. This is MATLAB's
  ``psnr`` on uint8 images; the only difference is floating-point summation order (~1e-12 dB).
- ``ssim``: MATLAB's ``ssim`` given an HxWx3 array treats it as a *volume*: its local statistics use
  a 3-D Gaussian (sigma 1.5 on every axis, 2*ceil(3*sigma)+1 = 11 taps, ``imgaussfilt3`` with
  ``'replicate'`` padding) over rows, columns *and channels*. With 3 channels the 11-tap window is
  padded by replicating the first/last channel, so every channel's statistics mix in the other two
  with fixed weights. C1 = (0.01*255)^2, C2 = (0.03*255)^2, and the score is the mean over all
  H*W*3 voxels (no crop). Implemented with separable filters (OpenCV along rows and columns, a 3x3
  channel-mixing matrix derived from the replicate-padded kernel along channels), in float64. It
  matches a direct 3-D ``scipy.ndimage.gaussian_filter(mode='nearest')`` implementation to ~1e-15
  in the tests (asserted to 1e-10); it has not been compared with MATLAB itself here (no MATLAB licence), so the
  residual difference to MATLAB is unverified but expected to be floating-point noise only (MATLAB's
  ssim converts integer input to double, as done here). Only
  MATLAB releases whose ``ssim`` accepts volumes compute this number. It is not the same number as
  the per-channel 2-D SSIM below (they can differ in the third decimal, either way), which is one
  reason Python and MATLAB tables disagree.
- ``ssim_2d`` (secondary, labelled): the usual Wang et al. per-channel SSIM: 11x11 Gaussian
  (sigma 1.5) per channel, only windows that lie wholly inside the image ("valid", i.e. a 5-pixel
  border is not scored), mean over pixels and channels. This is BasicSR's ``calculate_ssim``
  (``crop_border=0``, ``test_y_channel=False``) and scikit-image's ``structural_similarity(
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2)``
  in float64; the tests hold it to ~1e-10 of scikit-image.

RealBlur-J / RealBlur-R (protocol ``realblur``) follow the authors' ``evaluation_RealBlur_ecc.py``:

1. images as float32 in [0, 1]; the restored image ``z`` is intensity-matched to the ground truth
   ``x`` by a single least-squares *scale* (``z * sum(x*z) / sum(z*z)``, no offset);
2. a homography is estimated with ``cv2.findTransformECC`` on the grey versions (ground truth as
   template), ``MOTION_HOMOGRAPHY``, identity start, 100 iterations, eps 0, ``gaussFiltSize`` 5;
3. the scaled image is warped with ``INTER_CUBIC | WARP_INVERSE_MAP`` and ``BORDER_REFLECT``; a mask
   of the pixels the warp covered comes from warping ones with ``INTER_NEAREST`` and a zero
   constant border; both images are multiplied by the mask;
4. ``psnr`` = 10*log10(1 / (sum of squared errors / number of unmasked samples));
5. ``ssim`` = scikit-image 0.17.2's per-channel Gaussian SSIM map (reflect-padded, data range 1,
   float64) of the masked images, multiplied by the mask, 5-pixel border cropped, summed per
   channel and divided by the mask's sum there, then averaged over channels.

   ``ssim_2d`` is not defined for this protocol (reported as null): the RealBlur SSIM already is
   the per-channel 2-D SSIM. Each image also reports ``ecc``, the final ECC correlation.

   Known differences: the authors pin OpenCV 4.2.0 and scikit-image 0.17.2. The SSIM here is a
   re-implementation (OpenCV reflect-border filtering equals ``ndimage``'s ``'reflect'``) and agrees
   with scikit-image to ~1e-10. ECC is whatever OpenCV is installed; its iterations can converge to
   slightly different homographies across OpenCV versions and CPUs, which moves single images'
   scores slightly; how much against 4.2.0 has not been measured here. An ECC failure
   (``cv2.error``) marks that image as failed instead of aborting the run as the authors' script
   would; failed images are left out of the means and counted in ``summary.failed``, so a run with
   failures is not comparable to a published number.

LPIPS (only when the optional ``lpips`` package and its AlexNet backbone weights are already on
disk; nothing is ever downloaded) uses ``lpips.LPIPS(net='alex')`` (v0.1) on the unaligned 8-bit
images scaled to [-1, 1]. Papers differ on the backbone; compare LPIPS only with the same settings.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DeblurError

__all__ = [
    "PROTOCOLS",
    "AlignmentError",
    "LpipsMetric",
    "MetricError",
    "RealBlurAlignment",
    "load_lpips",
    "psnr",
    "realblur_align",
    "realblur_scores",
    "score_image",
    "ssim_2d",
    "ssim_matlab",
    "to_uint8",
]

PROTOCOLS: tuple[str, ...] = ("matlab", "realblur")

SIGMA = 1.5
RADIUS = 5  # MATLAB: ceil(3 * sigma); scikit-image/ndimage: int(3.5 * sigma + 0.5). Both give 5.
K1, K2 = 0.01, 0.03


class MetricError(DeblurError):
    """An image that cannot be scored (size mismatch, too small, alignment failure)."""


class AlignmentError(MetricError):
    """RealBlur's ECC alignment did not converge for one image."""


def _gaussian_kernel(sigma: float = SIGMA, radius: int = RADIUS) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return k / k.sum()


_KERNEL = _gaussian_kernel()


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise a [0, 1] float image as saving a PNG does, so scores describe the saved file.

    Halves round up (MATLAB ``im2uint8``, RealBlur's ``im2uint8``); NaN becomes 0 so a broken
    output scores badly instead of raising.
    """
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    a = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
    return np.floor(np.clip(a, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def _check_pair(restored: np.ndarray, reference: np.ndarray) -> None:
    if restored.shape != reference.shape:
        raise MetricError(
            f"restored image is {_shape_text(restored.shape)} but the ground truth is "
            f"{_shape_text(reference.shape)}; the model must return an image of its input's size"
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    if len(shape) >= 2:
        extra = f"x{shape[2]}" if len(shape) == 3 else ""
        return f"{shape[1]}x{shape[0]}{extra}"
    return str(shape)


def psnr(restored: np.ndarray, reference: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR over every sample (all channels, no crop), as MATLAB's ``psnr``; inf when identical."""
    _check_pair(restored, reference)
    diff = restored.astype(np.float64) - reference.astype(np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def _as_hwc(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim != 3:
        raise MetricError(f"expected an HxW or HxWxC image, got an array of shape {a.shape}")
    return a


def _filter_rows_cols(a: np.ndarray, border: int) -> np.ndarray:
    """Gaussian-filter each channel of HxWxC float64 along rows and columns (OpenCV is fast and exact)."""
    h, w, c = a.shape
    if c <= 4:
        out = cv2.sepFilter2D(a, cv2.CV_64F, _KERNEL, _KERNEL, borderType=border)
        return out.reshape(h, w, c)
    planes = [cv2.sepFilter2D(np.ascontiguousarray(a[:, :, i]), cv2.CV_64F, _KERNEL, _KERNEL,
                              borderType=border) for i in range(c)]
    return np.stack(planes, axis=2)


def _replicate_mixing(channels: int) -> np.ndarray:
    """The channel-axis filter as a CxC matrix: 11 taps over C channels padded by replication.

    Row c holds the weight each input channel gets in output channel c; taps that fall beyond the
    first/last channel land on that edge channel, which is what replicate padding means.
    """
    m = np.zeros((channels, channels), dtype=np.float64)
    for c in range(channels):
        for t, weight in enumerate(_KERNEL):
            m[c, min(max(c + t - RADIUS, 0), channels - 1)] += weight
    return m


def _ssim_map(x: np.ndarray, y: np.ndarray, data_range: float, blur) -> np.ndarray:
    """Wang et al.'s SSIM map with local moments taken by ``blur`` (the only thing that varies)."""
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    mux, muy = blur(x), blur(y)
    mux2, muy2, muxy = mux * mux, muy * muy, mux * muy
    sx2 = blur(x * x) - mux2
    sy2 = blur(y * y) - muy2
    sxy = blur(x * y) - muxy
    return ((2.0 * muxy + c1) * (2.0 * sxy + c2)) / ((mux2 + muy2 + c1) * (sx2 + sy2 + c2))


def ssim_matlab(restored: np.ndarray, reference: np.ndarray, data_range: float = 255.0) -> float:
    """MATLAB's ``ssim`` on an HxWxC array: volumetric 11x11x11 Gaussian, replicate padding, mean.

    An HxW (grey) input gives MATLAB's 2-D ``ssim`` (the channel matrix is then the identity).
    """
    _check_pair(restored, reference)
    x, y = _as_hwc(restored), _as_hwc(reference)
    mix = _replicate_mixing(x.shape[2])

    def blur(a: np.ndarray) -> np.ndarray:
        f = _filter_rows_cols(a, cv2.BORDER_REPLICATE)
        if f.shape[2] == 1:
            return f
        return cv2.transform(f, mix).reshape(f.shape) if f.shape[2] <= 4 else f @ mix.T

    return float(np.mean(_ssim_map(x, y, data_range, blur)))


def ssim_2d(restored: np.ndarray, reference: np.ndarray, data_range: float = 255.0) -> float:
    """Per-channel Gaussian SSIM over 'valid' windows (BasicSR / scikit-image), mean of channels."""
    _check_pair(restored, reference)
    x, y = _as_hwc(restored), _as_hwc(reference)
    if min(x.shape[0], x.shape[1]) < 2 * RADIUS + 1:
        raise MetricError(
            f"image is {_shape_text(restored.shape)}: SSIM needs at least 11x11 pixels"
        )
    # Reflect padding then cropping the radius equals 'valid' filtering: the kept windows never
    # reach the padding.
    s = _ssim_map(x, y, data_range, lambda a: _filter_rows_cols(a, cv2.BORDER_REFLECT))
    return float(np.mean(s[RADIUS:-RADIUS, RADIUS:-RADIUS, :]))


# --------------------------------------------------------------------------- RealBlur


@dataclass(frozen=True)
class RealBlurAlignment:
    """The restored image brought onto the ground truth's grid, as RealBlur's script scores it."""

    restored: np.ndarray  # float32 HxWx3, scaled, warped and masked
    reference: np.ndarray  # float32 HxWx3, masked
    mask: np.ndarray  # float32 HxWx3, 1 where the warp covered the pixel
    warp: np.ndarray  # 3x3 float32 homography (inverse map, ground truth -> restored)
    ecc: float  # final enhanced correlation coefficient


def realblur_align(restored: np.ndarray, reference: np.ndarray) -> RealBlurAlignment:
    """Scale, ECC-homography-align and mask ``restored`` (uint8 RGB) against ``reference``.

    Works in float32 throughout because the authors' script does; their scale is a plain
    least-squares gain (no offset). Raises AlignmentError when OpenCV's ECC does not converge.
    """
    _check_pair(restored, reference)
    if restored.ndim != 3 or restored.shape[2] != 3:
        raise MetricError(f"RealBlur scoring needs RGB images, got shape {restored.shape}")
    z = restored.astype(np.float32) / np.float32(255.0)
    x = reference.astype(np.float32) / np.float32(255.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = (np.sum(x * z) / np.sum(z * z)) * z
    warp = np.eye(3, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 0)
    try:
        ecc, warp = cv2.findTransformECC(
            cv2.cvtColor(x, cv2.COLOR_RGB2GRAY),
            cv2.cvtColor(zs, cv2.COLOR_RGB2GRAY),
            warp,
            cv2.MOTION_HOMOGRAPHY,
            criteria,
            None,
            5,
        )
    except cv2.error as exc:
        raise AlignmentError(f"ECC alignment failed ({_opencv_reason(exc)})") from exc
    h, w = x.shape[:2]
    zr = cv2.warpPerspective(zs, warp, (w, h), flags=cv2.INTER_CUBIC + cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpPerspective(np.ones_like(zs, dtype=np.float32), warp, (w, h),
                               flags=cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return RealBlurAlignment(zr * mask, x * mask, mask, warp, float(ecc))


def _opencv_reason(exc: Exception) -> str:
    """OpenCV's own words without its build paths: 'Iterations do not converge: NaN encountered.'."""
    text = " ".join(str(exc).split())
    found = re.search(r"error: \(-?\d+:([^)]*)\)\s*(.*?)\s*(?:in function\b.*)?$", text)
    if found:
        return f"{found.group(1).strip()}: {found.group(2).strip()}".rstrip(": ")
    return text or type(exc).__name__


def _masked_psnr(a: RealBlurAlignment) -> float:
    diff = a.reference - a.restored  # float32 like the authors; the sum is float64
    err = float(np.sum(diff * diff, dtype=np.float64)) / float(np.sum(a.mask))
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(1.0 / err)


def _masked_ssim(a: RealBlurAlignment) -> float:
    s = _ssim_map(a.reference.astype(np.float64), a.restored.astype(np.float64), 1.0,
                  lambda v: _filter_rows_cols(v, cv2.BORDER_REFLECT))
    s = (s * a.mask)[RADIUS:-RADIUS, RADIUS:-RADIUS, :]
    m = a.mask[RADIUS:-RADIUS, RADIUS:-RADIUS, :]
    covered = m.sum(axis=(0, 1))
    if np.any(covered == 0):
        raise AlignmentError("ECC alignment left no pixel of some channel inside the image")
    return float(np.mean(s.sum(axis=(0, 1)) / covered))


def realblur_scores(restored: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """RealBlur's aligned, masked PSNR and SSIM (data range 1) plus the ECC correlation."""
    a = realblur_align(restored, reference)
    if min(a.mask.shape[:2]) <= 2 * RADIUS:
        raise MetricError(f"image is {_shape_text(restored.shape)}: RealBlur SSIM needs more than 10x10")
    return {"psnr": _masked_psnr(a), "ssim": _masked_ssim(a), "ecc": a.ecc}


def score_image(restored: np.ndarray, reference: np.ndarray, protocol: str) -> dict[str, float | None]:
    """All of a protocol's numbers for one uint8 image pair (keys: psnr, ssim, ssim_2d[, ecc])."""
    if protocol == "matlab":
        return {
            "psnr": psnr(restored, reference),
            "ssim": ssim_matlab(restored, reference),
            "ssim_2d": ssim_2d(restored, reference),
        }
    if protocol == "realblur":
        r = realblur_scores(restored, reference)
        return {"psnr": r["psnr"], "ssim": r["ssim"], "ssim_2d": None, "ecc": r["ecc"]}
    raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


# --------------------------------------------------------------------------- LPIPS


class LpipsMetric:
    """LPIPS (AlexNet, v0.1) on 8-bit RGB images; build it with ``load_lpips``."""

    def __init__(self, model: Any, device: str) -> None:
        self._model = model
        self.device = device

    def __call__(self, restored: np.ndarray, reference: np.ndarray) -> float:
        import torch

        _check_pair(restored, reference)

        def tensor(a: np.ndarray) -> Any:
            t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()
            return (t / 127.5 - 1.0).to(self.device)

        with torch.no_grad():
            return float(self._model(tensor(restored), tensor(reference)).item())


def _alexnet_weights_file() -> Path | None:
    """Where torchvision would look for the AlexNet weights, so we can refuse to download them."""
    import torch

    url = None
    try:
        from torchvision.models import AlexNet_Weights

        url = AlexNet_Weights.IMAGENET1K_V1.url
    except ImportError:
        try:
            from torchvision.models.alexnet import model_urls  # older torchvision

            url = model_urls["alexnet"]
        except (ImportError, KeyError):
            return None
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_lpips(device: str | None = None) -> tuple[LpipsMetric | None, str | None]:
    """LPIPS if it can run without any download, else ``(None, reason)``.

    The ``lpips`` package ships its linear heads but fetches the AlexNet backbone through
    torchvision on first use; a benchmark run must never reach the network, so the backbone file
    has to be in the torch hub cache already.
    """
    if importlib.util.find_spec("lpips") is None:
        return None, "LPIPS skipped: the optional 'lpips' package is not installed (pip install lpips)"
    if importlib.util.find_spec("torchvision") is None:
        return None, "LPIPS skipped: 'lpips' needs torchvision, which is not installed"
    try:
        import lpips  # type: ignore[import-not-found]
    except Exception as exc:  # a broken optional install must not stop the benchmark
        return None, f"LPIPS skipped: importing 'lpips' failed ({exc})"
    head = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    if not head.is_file():
        return None, f"LPIPS skipped: the lpips package lacks its weights file {head}"
    backbone = _alexnet_weights_file()
    if backbone is None or not backbone.is_file():
        where = backbone if backbone is not None else "the torch hub cache"
        return None, (f"LPIPS skipped: AlexNet backbone weights not found at {where} "
                      "(offline; copy alexnet-owt-*.pth there to enable LPIPS)")
    import torch

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = lpips.LPIPS(net="alex", version="0.1", verbose=False).to(dev).eval()
    except Exception as exc:
        return None, f"LPIPS skipped: building the model failed ({exc})"
    return LpipsMetric(model, dev), None
