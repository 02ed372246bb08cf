"""The glue between `Deblurrer` and the blind deconvolution engine (`deblurcli.deconv`).

Three things use the engine through here: ``--model shake`` (estimate the camera-shake kernel,
deconvolve, no network), ``--kernel FILE`` (deconvolve with the user's kernel), and the embedded
default's hybrid path (estimate; if the estimate is trustworthy uniform shake, deconvolve;
otherwise the network alone, exactly as before). What happened to each photo is an `Outcome`:
which path ran, why, and the kernel's statistics for JSON output.

The engine's own colour entry points (``restore_rgb``, ``assess``) are being added in
``deblurcli/deconv`` at the same time as this module; until they land, the four functions under
"Engine adapter" below do the same with today's engine functions. They are the only place that
calls the engine, so switching to the real ones is a change there alone.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DeblurError, KernelError, OptionError

#: The registry name of the classical engine (``--model shake``).
SHAKE_MODEL = "shake"
#: ``--deconv`` values: ``auto`` lets the default model deconvolve shake it measured and trusts;
#: ``off`` is the network alone, as every version before the engine.
DECONV_CHOICES = ("auto", "off")
#: Smallest region side (px) worth estimating from: the engine's own floor.
MIN_REGION = 48

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class Verdict:
    """Whether an estimate is trustworthy uniform camera shake, and the reason in words."""

    trusted: bool
    reason: str


# --------------------------------------------------------------------------------------------
# Engine adapter: until deconv.restore_rgb / deconv.assess land, today's functions do the same.
# --------------------------------------------------------------------------------------------

#: Below this length (px) the adapter leaves the photo to the network: an estimate on a sharp
#: photo comes out as a 7-9 px blob (measured on scikit-image's astronaut and coffee), and the
#: default network was trained on 9-41 px shake, so it handles short shake itself.
_MIN_TRUSTED_PX = 10.0


def _estimate(pixels: np.ndarray, *, kernel_size: int | None, region: tuple[int, int, int, int] | None,
              progress: Progress | None) -> Any:
    """The camera-shake kernel of an sRGB photo, estimated on its luminance in linear light."""
    from .deconv import _ops, estimate_kernel

    work = _ops.srgb_to_linear(_ops.luminance(pixels))
    return estimate_kernel(work, max_size=kernel_size, region=region, progress=progress)


def _deconvolve(pixels: np.ndarray, kernel: np.ndarray, *, progress: Progress | None) -> np.ndarray:
    """Non-blind deconvolution of every colour channel, in linear light."""
    from .deconv import deconvolve

    return deconvolve(pixels, kernel, linear=True, progress=progress)


def _assess(estimate: Any) -> Verdict:
    """The engine's stated plausibility rule, plus a floor on the shake length (see above)."""
    d, s = estimate.diagnostics, estimate.stats
    if not d.plausible:
        return Verdict(False, "no uniform shake found (" + "; ".join(d.reasons) + ")")
    if s.extent_px < _MIN_TRUSTED_PX:
        return Verdict(False, f"shake of {s.extent_px:.0f} px at most, too short to deconvolve")
    return Verdict(True, f"camera shake {s.extent_px:.0f} px at {s.direction_deg:.0f}°")


def _load_kernel(path: str | os.PathLike[str], image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    from .deconv import load_kernel

    return load_kernel(path, image_shape=image_shape)


# --------------------------------------------------------------------------------------------
# What the front ends use
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the engine did to one photo: ``path`` is ``deconvolved`` (blind, trusted), ``kernel``
    (the user's kernel), ``network`` (the estimate was not trusted, or none could be made) or
    ``shake`` (``--model shake``, whatever the verdict: it has no network to fall back on)."""

    path: str
    note: str
    kernel: np.ndarray | None = None
    estimate: Any = None
    verdict: Verdict | None = None

    def stats(self) -> dict[str, Any] | None:
        """The kernel's figures for JSON output (None when no kernel was estimated or given)."""
        if self.kernel is None:
            return None
        from .deconv import kernel_stats

        s = self.estimate.stats if self.estimate is not None else kernel_stats(self.kernel)
        out: dict[str, Any] = {"path": self.path, "shake_px": round(float(s.extent_px), 1),
                               "direction_deg": round(float(s.direction_deg), 1),
                               "kernel_size": int(self.kernel.shape[0]),
                               "trusted": True if self.verdict is None else self.verdict.trusted}
        if self.estimate is not None:
            out["region"] = list(self.estimate.region)
        if self.verdict is not None:
            out["reason"] = self.verdict.reason
        return out


def _stage(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    if progress is None:
        return None
    return lambda f, text: progress(lo + (hi - lo) * f, text)


def estimate(pixels: np.ndarray, *, kernel_size: int | None = None,
             region: tuple[int, int, int, int] | None = None, progress: Progress | None = None
             ) -> tuple[Any, Verdict]:
    """Estimate the kernel of an HxWx3 sRGB photo in [0, 1] and judge it."""
    est = _estimate(pixels, kernel_size=kernel_size, region=region, progress=progress)
    return est, _assess(est)


def run_shake(pixels: np.ndarray, *, kernel: np.ndarray | None = None, kernel_size: int | None = None,
              region: tuple[int, int, int, int] | None = None, progress: Progress | None = None
              ) -> tuple[np.ndarray, Outcome]:
    """``--model shake``: deconvolve with ``kernel``, or with the kernel estimated from the photo.

    An untrusted estimate is still used (there is nothing else to fall back on) but the note says
    what was wrong with it, so the user knows to try ``--kernel-size`` or ``--region``.
    """
    if kernel is not None:
        out = _deconvolve(pixels, kernel, progress=progress)
        return out, Outcome("kernel", f"deconvolved with the given kernel ({kernel.shape[0]} px)", kernel=kernel)
    est, verdict = estimate(pixels, kernel_size=kernel_size, region=region, progress=_stage(progress, 0.0, 0.6))
    out = _deconvolve(pixels, est.kernel, progress=_stage(progress, 0.6, 1.0))
    note = f"{verdict.reason}: deconvolved" if verdict.trusted else \
        f"deconvolved, but the kernel is doubtful: {verdict.reason}"
    return out, Outcome("shake", note, kernel=est.kernel, estimate=est, verdict=verdict)


def try_deconvolve(pixels: np.ndarray, *, kernel: np.ndarray | None = None, kernel_size: int | None = None,
                   region: tuple[int, int, int, int] | None = None, progress: Progress | None = None
                   ) -> tuple[np.ndarray | None, Outcome]:
    """The default model's decision: the deconvolved photo when the shake is trusted, else None.

    ``None`` means the caller runs its network as if nothing had happened. A photo with nothing
    to estimate from (flat, tiny) is no error here: it goes to the network, and the note says why.
    """
    if kernel is not None:
        out = _deconvolve(pixels, kernel, progress=progress)
        return out, Outcome("kernel", f"deconvolved with the given kernel ({kernel.shape[0]} px)", kernel=kernel)
    try:
        est, verdict = estimate(pixels, kernel_size=kernel_size, region=region, progress=_stage(progress, 0.0, 0.6))
    except KernelError as exc:
        if region is not None:  # the user's own region: that is their mistake to hear about
            raise
        return None, Outcome("network", f"no shake estimate ({exc}): network only")
    if not verdict.trusted:
        return None, Outcome("network", f"{verdict.reason}: network only", kernel=est.kernel, estimate=est,
                             verdict=verdict)
    out = _deconvolve(pixels, est.kernel, progress=_stage(progress, 0.6, 1.0))
    return out, Outcome("deconvolved", f"{verdict.reason}: deconvolved", kernel=est.kernel, estimate=est,
                        verdict=verdict)


def load_kernel(path: str | os.PathLike[str], image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The user's kernel file (PNG or NPY), checked; a bad one is a `KernelError` naming it."""
    return _load_kernel(path, image_shape)


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    """``X,Y,W,H`` (pixels of the upright photo) as a tuple; a malformed one names ``--region``."""
    if text is None or str(text).strip() == "":
        return None
    parts = str(text).replace(" ", "").split(",")
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise OptionError("region", "expected X,Y,W,H in pixels, e.g. 100,80,512,512", value=text) from None
    if x < 0 or y < 0 or w < MIN_REGION or h < MIN_REGION:
        raise OptionError("region", f"X and Y must be >= 0, W and H at least {MIN_REGION} px", value=text)
    return x, y, w, h


def check_region(region: tuple[int, int, int, int] | None, width: int, height: int, label: str) -> None:
    """Refuse a region that leaves the photo, before any work is done on it."""
    if region is None:
        return
    x, y, w, h = region
    if x + w > width or y + h > height:
        raise OptionError("region", f"{label} is {width}x{height}: the region must lie inside it",
                          value=f"{x},{y},{w},{h}")


def kernel_png(kernel: np.ndarray) -> bytes:
    """The kernel as a grey PNG a person can read (white trail on black, enlarged)."""
    from PIL import Image as PILImage

    from .deconv import kernel_image

    buf = io.BytesIO()
    PILImage.fromarray(kernel_image(kernel)).save(buf, format="PNG")
    return buf.getvalue()


def save_kernel(kernel: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write the kernel picture atomically (a reader never sees half a PNG)."""
    from .fsutil import atomic_write

    try:
        atomic_write(Path(path), kernel_png(kernel))
    except OSError as exc:
        raise DeblurError(f"{path}: cannot write the kernel picture ({exc.strerror or exc})") from None


def kernel_panel(kernel: np.ndarray, height: int) -> np.ndarray:
    """The kernel picture as an HxWx3 float panel ``height`` px tall, for a --compare image."""
    from .deconv import kernel_image

    img = kernel_image(kernel).astype(np.float32) / 255.0
    side = max(1, min(height, 256))
    zoom = max(1, side // img.shape[0])
    img = np.repeat(np.repeat(img, zoom, axis=0), zoom, axis=1)[:side, :side]
    panel = np.zeros((height, img.shape[1], 3), np.float32)
    panel[: img.shape[0], :, :] = img[..., None]
    return panel
