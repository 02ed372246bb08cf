"""The glue between `Deblurrer` and the blind deconvolution engine (`deblurcli.deconv`).

Three things use the engine through here: ``--model shake`` (estimate the camera-shake kernel,
deconvolve, no network), ``--kernel FILE`` (deconvolve with the user's kernel), and the embedded
default's hybrid path (estimate; if the estimate is trustworthy uniform shake, deconvolve;
otherwise the network alone, exactly as before). What happened to each photo is an `Outcome`:
which path ran, why, and the kernel's statistics for JSON output.

The functions under "The engine" below are the only calls into the engine's restoring functions
(`deblurcli.deconv.restore_rgb` and `deblurcli.deconv.assess`; the default model runs
``restore_rgb``'s estimation and deconvolution as two steps, so it deconvolves only what it trusts).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DeblurError, KernelError, OptionError

if TYPE_CHECKING:
    from .deconv import Verdict

#: The registry name of the classical engine (``--model shake``).
SHAKE_MODEL = "shake"
#: ``--deconv`` values: ``auto`` lets the default model deconvolve shake it measured and trusts;
#: ``off`` is the network alone, as every version before the engine.
DECONV_CHOICES = ("auto", "off")
#: Smallest region side (px) worth estimating from: the engine's own floor.
MIN_REGION = 48

Progress = Callable[[float, str], None]


# --------------------------------------------------------------------------------------------
# The engine: the only calls into deblurcli.deconv's restoring functions
# --------------------------------------------------------------------------------------------


def _restore(pixels: np.ndarray, *, kernel: np.ndarray | None = None, kernel_size: int | None = None,
             region: tuple[int, int, int, int] | None = None, progress: Progress | None = None
             ) -> tuple[np.ndarray, Any]:
    """Deconvolve an sRGB photo with ``kernel``, or with the kernel the engine estimates from it.

    The engine estimates on the luminance, recognises blur made on sRGB values rather than light,
    and deconvolves the whole photo per channel (`deblurcli.deconv.restore_rgb`)."""
    from .deconv import restore_rgb

    return restore_rgb(pixels, kernel=kernel, kernel_size=kernel_size, region=region, progress=progress)


def _estimate(pixels: np.ndarray, *, kernel_size: int | None, region: tuple[int, int, int, int] | None,
              progress: Progress | None) -> Any:
    """`restore_rgb`'s estimation without its deconvolution, for the default model, which asks
    `assess` first: on a photo it leaves to the network, deconvolving the whole photo would be
    wasted (about half the engine's time on a 1 MP photo, measured). The same steps as `restore_rgb`, which a
    test holds this to: estimate in linear light; if the blur re-fits better on sRGB values,
    estimate again there."""
    from .deconv import _ops, estimate_kernel
    from .deconv.trust import blur_light

    lum = _ops.luminance(np.asarray(pixels, dtype=np.float32))
    work = _ops.srgb_to_linear(lum)
    est = estimate_kernel(work, max_size=kernel_size, region=region, progress=progress)
    linear, ratio = blur_light(lum, est)
    if not linear:
        est = estimate_kernel(lum, max_size=kernel_size, region=est.region)
    est.linear_light, est.light_fit_ratio = linear, ratio
    return est


def _deconvolve(pixels: np.ndarray, est: Any, *, progress: Progress | None) -> np.ndarray:
    """The whole photo deconvolved per channel with an estimate, in the light its blur was made in."""
    from .deconv import deconvolve

    return deconvolve(np.asarray(pixels, dtype=np.float32), est.kernel, linear=est.linear_light, progress=progress)


def _assess(estimate: Any, **evidence: Any) -> Verdict:
    """The engine's measured trust rule (`deblurcli.deconv.assess`): uniform camera shake or not.
    With ``blurred``, ``network`` and ``deconvolved`` it asks the network's output as a referee,
    and compares kernels estimated from the region's corners where that could change the verdict
    (the kernel's own checks do not tell rotation or moving objects from shake). ``features``: an
    earlier verdict's measurements, not measured again."""
    from .deconv import assess

    return assess(estimate, **evidence)


def _load_kernel(path: str | os.PathLike[str], image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    from .deconv import load_kernel

    return load_kernel(path, image_shape=image_shape)


# --------------------------------------------------------------------------------------------
# What the front ends use
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the engine did to one photo: ``path`` is ``deconvolved`` (blind, trusted), ``kernel``
    (the user's kernel), ``network`` (the estimate was not trusted, or none could be made),
    ``sharp`` (the default judged the photo sharp and left it as it is) or ``shake`` (``--model
    shake``, whatever the verdict: it has no network to fall back on)."""

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


def _shake_words(est: Any) -> str:
    """The shake in a user's words, for notes: its length and direction."""
    return f"camera shake {est.stats.extent_px:.0f} px at {est.stats.direction_deg:.0f}°"


def _outcome(path: str, note: str, est: Any = None, verdict: Verdict | None = None,
             kernel: np.ndarray | None = None) -> Outcome:
    return Outcome(path, note, kernel=est.kernel if est is not None else kernel, estimate=est, verdict=verdict)


def run_shake(pixels: np.ndarray, *, kernel: np.ndarray | None = None, kernel_size: int | None = None,
              region: tuple[int, int, int, int] | None = None, progress: Progress | None = None
              ) -> tuple[np.ndarray, Outcome]:
    """``--model shake``: deconvolve with ``kernel``, or with the kernel estimated from the photo.

    An untrusted estimate is still used (there is nothing else to fall back on) but the note says
    what was wrong with it, so the user knows to try ``--kernel-size`` or ``--region``.
    """
    out, est = _restore(pixels, kernel=kernel, kernel_size=kernel_size, region=region, progress=progress)
    if est is None:
        return out, _outcome("kernel", f"deconvolved with the given kernel ({kernel.shape[0]} px)", kernel=kernel)
    verdict = _assess(est)
    note = f"{_shake_words(est)}: deconvolved" if verdict.trusted else \
        f"deconvolved, but the kernel is doubtful: {verdict.reason}"
    return out, _outcome("shake", note, est, verdict)


#: Above this many pixels the referee reads the estimation region only: the network and the re-blur
#: run on the whole photo would cost more than the estimate itself (12 MP: tens of seconds).
REFEREE_WHOLE_MAX_PIXELS = 1_100_000


def try_deconvolve(pixels: np.ndarray, *, network: Callable[[np.ndarray], np.ndarray],
                   kernel: np.ndarray | None = None, kernel_size: int | None = None,
                   region: tuple[int, int, int, int] | None = None, progress: Progress | None = None
                   ) -> tuple[np.ndarray | None, Outcome]:
    """The default model's decision: the photo deconvolved when the shake is trusted, else the
    network's output, or None for "run the network yourself"; a photo judged sharp comes back
    as it is (`_judged_sharp`), unless a kernel size or region was asked for.

    First the checks that need no deconvolution (`assess` on the estimate: the kernel's shape and
    fit); only if they pass is the photo deconvolved, so that `assess` can hold the deconvolution
    against ``network``'s output (the caller's network, sRGB in, sRGB out), and estimate the
    region's corners only if their agreement could still change its verdict. On photos over
    `REFEREE_WHOLE_MAX_PIXELS` the referee reads the estimation region only, and a rejected
    photo goes back to the caller's own (streamed) network run. A photo with nothing to estimate
    from (flat, tiny) is no error here: it goes to the network, and the note says why.

    Up to `REFEREE_WHOLE_MAX_PIXELS`, with more than one thread allowed (`thread_budget`), the
    network runs on the whole photo from the start, on another thread beside the estimate (which
    keeps one thread by design): its output is needed whatever the verdict, as the referee or as
    the answer, and it takes less time than the estimate (1 MP, one thread each: 2.3 against 3.2
    CPU s; speed_hybrid.py). Then ``network`` may be called from that thread. One thread allowed:
    one step after another, as before.
    """
    if kernel is not None:
        out, _ = _restore(pixels, kernel=kernel, progress=progress)
        return out, _outcome("kernel", f"deconvolved with the given kernel ({kernel.shape[0]} px)", kernel=kernel)
    if kernel_size is None and region is None:
        sharp = _judged_sharp(pixels)
        if sharp is not None:
            return pixels.copy(), sharp
    from .deconv.engine import start_pinned, thread_budget

    whole = pixels.shape[0] * pixels.shape[1] <= REFEREE_WHOLE_MAX_PIXELS
    threads = thread_budget()
    if not whole or threads < 2:
        return _decide(pixels, network, None, whole, kernel_size, region, progress)
    import torch

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deblur-network")
    try:
        # One thread for the estimate, the others for the network while it runs.
        ahead = start_pinned(pool, network, pixels, threads=threads - 1)
        return _decide(pixels, network, ahead, whole, kernel_size, region, progress)
    finally:
        pool.shutdown(wait=True)  # on an error too: no network run outlives the call
        torch.set_num_threads(threads)  # what threads started later begin with, as before the call


def _judged_sharp(pixels: np.ndarray) -> Outcome | None:
    """The ``sharp`` outcome when `deblurcli.inspect.judge` calls the photo sharp, else None.

    The network sharpens whatever it is given: on a sharp photo it costs 15.8 dB
    (`benchmarks/realshake/default_hybrid.py`, five photos with noise only). The verdict costs
    0.1 s on 12 MP and, measured there, judged none of the 112 blurred images sharp (shake, GoPro-
    style, blended, defocus, Levin's) and four of the five sharp ones sharp. Asking for a kernel
    size or a region says the photo is blurred, so the caller skips this then.
    """
    from .inspect import DEFAULT_THRESHOLD, judge
    from .quality import sharp_note

    try:
        seen = judge(pixels)
    except DeblurError:  # too small to judge: the estimate's own checks will say what to do
        return None
    if seen.blurred:
        return None
    return Outcome("sharp", f"{sharp_note(seen.blur_px, DEFAULT_THRESHOLD)}: left as it is "
                   "(--deconv off runs the network on it anyway)")


def _decide(pixels: np.ndarray, network: Callable[[np.ndarray], np.ndarray], ahead: Future[np.ndarray] | None,
            whole: bool, kernel_size: int | None, region: tuple[int, int, int, int] | None,
            progress: Progress | None) -> tuple[np.ndarray | None, Outcome]:
    """`try_deconvolve`'s steps; ``ahead``: the network's run on the whole photo, when it was started
    beside them (then every verdict returns its output, and it is not run again)."""
    stage = (lambda lo, hi: None) if progress is None else \
        (lambda lo, hi: lambda f, text: progress(lo + (hi - lo) * f, text))

    def network_only() -> np.ndarray | None:
        return None if ahead is None else ahead.result()

    try:
        est = _estimate(pixels, kernel_size=kernel_size, region=region, progress=stage(0.0, 0.5))
    except KernelError as exc:
        if region is not None:  # the user's own region: theirs to hear about
            raise
        return network_only(), Outcome("network", f"no shake estimate ({exc}): network only")
    verdict = _assess(est, blurred=pixels)
    if not verdict.trusted:
        return network_only(), _outcome("network", f"{verdict.reason}: network only", est, verdict)
    # The bar stops short of the end: the referee (and the corners, where they could change the
    # verdict: seconds on a 1 MP photo) still run after the deconvolution.
    out = _deconvolve(pixels, est, progress=stage(0.5, 0.9))
    if whole:
        net = ahead.result() if ahead is not None else network(pixels)
        verdict = _assess(est, blurred=pixels, network=net, deconvolved=out, features=verdict.features)
    else:
        x, y, w, h = est.region
        box = (slice(y, y + h), slice(x, x + w))
        net = None
        verdict = _assess(est, blurred=pixels[box], network=network(np.ascontiguousarray(pixels[box])),
                          deconvolved=out[box], features=verdict.features)
    if progress is not None:
        progress(1.0, "checked")
    if not verdict.trusted:
        return net, _outcome("network", f"{verdict.reason}: network only", est, verdict)
    return out, _outcome("deconvolved", f"{_shake_words(est)}: deconvolved", est, verdict)


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
