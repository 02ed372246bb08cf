"""Which photos are blurred, and how: the library behind ``deblur inspect`` (issue #29).

Two costs for two uses. `judge` is the verdict alone, for ``deblur batch --only-blurry`` over a
whole camera roll: it measures edge width on a few hundred textured tiles, weighted by how
directional it is (`deblurcli.quality.EdgeWidth.blur_px`), and never builds a full-resolution
float copy of the photo. `inspect` adds the blur trace: the camera-shake kernel
(`deblurcli.deconv`'s estimator, on a half-scale copy: `estimate_shake`), its length and
direction, and the command to run. The verdict is the same number in both, so a photo that
``inspect`` calls blurred is one ``batch --only-blurry`` processes.

Why one estimate (a second only for a blob on a dim photo: `estimate_shake`) and not a consensus
of several (round 3, ``calibrate.py --consensus``): a blob kernel (the moon, brick) reads two or
three times too long, and estimates at other scales and windows make other mistakes, so the
length two of three agree on was tried: 79% of the calibration lengths within 25% against 70%,
but on the benchmark 69% against 73% for the single estimate, for 0.5-0.9 s more CPU on a 12 MP
photo and over 3 s when the third estimate is needed.

Why the verdict does not come from the kernel: the estimator, given a sharp photo, still returns
a blob as long as a real shake (8-23 px long on the calibration set's sharp photos, and 40-55 px
on scikit-image's brick, a soft texture that edge width also calls blurred; ``calibrate.py
--verdict-kernels``), so the kernel's length neither clears a soft photo nor flags a shaken one
that edge width misses. Edge width costs about a twentieth as much on a 12 MP photo (the
benchmark: 0.12 against 2.4 s of CPU); the kernel is estimated only for photos judged blurred,
where its length means something.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DeblurError
from .quality import EdgeWidth, edge_width, luma

#: Edge width (px) above which a photo is judged blurred, compared with the width weighted by how
#: directional it is (`deblurcli.quality.EdgeWidth.blur_px`): inside the range of thresholds
#: (1.90-1.91 with the anisotropy's power 0.3; 1.85-2.0 for the plain width, round 1) that separate
#: sharp from shaken best on the calibration set (``benchmarks/inspect/calibrate.py --verdict``;
#: benchmarks/inspect/results/calibrate_verdict.json), disjoint from the benchmark.
DEFAULT_THRESHOLD = 1.9
#: The share of the kernel's weight whose span along the shake is reported as its length. The
#: estimate's faint halo makes a threshold-based support overshoot; among the central shares of the
#: weight, 85% put the most calibration lengths within 25% with the half-scale estimate (70% of 53
#: shakes of 9 px or more on the 11 photos, against 64% for 80%, 68% for 90%, 62% for 95%; median
#: error -5.5%; ``calibrate.py --length`` then ``--rules``: results/calibrate_length.json, rerun
#: in round 3 with the estimator as it is now: round 2's run had 76%, 68%, 66% and 57%).
LENGTH_MASS = 0.85
#: How sure the verdict is as a function of log(width / threshold): 0.5 at the threshold, 0.9 at
#: about 1.3x (or 1/1.3x) it.
_CONFIDENCE_SCALE = 0.12
#: Side of the estimation window, at the estimation scale (see REDUCTION): 256 px there is 512 px
#: of the working image, the engine's own window, for the cost of a 256 px one.
REGION_SIDE = 256
#: Photos whose long side exceeds this are brought to half resolution first (the working scale), as
#: the engine does.
FULL_RES_MAX_SIDE = 1600
#: The kernel is estimated at 1/REDUCTION of the working scale. Why: at the working scale long
#: shakes fold inside their kernel window and read short (the benchmark's 59 px shakes, 29-49 px of
#: support: 2 of 11 within 25%), while halved they are strokes of 15-25 px, which the estimator
#: resolves; it also costs less (1.9 against 2.6 s of CPU for a 12 MP photo's report). On the
#: calibration set (11 photos x 6 shakes, 53 of 9 px or more) 76% of lengths came within 25%,
#: against 55% at the working scale from the 49 px ladder start (62% with its best length rule,
#: 95% of the weight): results/calibrate_length.json, calibrate_length_reduction1.json. Photos too
#: small to halve (under 2 * MIN_SIDE) are estimated at the working scale.
REDUCTION = 2
#: First kernel window of the size ladder, at the estimation scale: the engine's 35 px, which at
#: half the working scale spans 70 px of it (grown by x1.4 while the kernel is cut by its window).
FIRST_SIZE = 35
#: First kernel window when the estimate falls back to the working scale (`estimate_shake`): the
#: start that put the most calibration lengths within 25% there (73%; ``calibrate.py --sizes``).
WORKING_FIRST_SIZE = 49
#: The contrast (0.5-99.5 percentile range of the working grey, linear light) an implausible or
#: blob estimate is retried at (`estimate_shake`), where the photo's own is lower: of the targets
#: tried on the calibration cases (0.6, 0.8, 1.0), the best both raising every photo and retrying.
RETRY_RANGE = 0.8
#: An estimate wider than this (`stroke_width`, px) is a blob, not a camera path, and is retried like
#: an implausible one: the middle of the widths (4-7 px) that put the most calibration lengths
#: within 25% (``calibrate.py --contrast``).
RETRY_WIDTH = 5.5
VIDEO_FRAMES = 3


@dataclass
class Inspection:
    """One photo's (or video's) report; ``as_dict`` is what ``--json`` prints.

    ``shake_px`` and ``direction_deg`` are None when no kernel was estimated: the photo was judged
    sharp, or only the verdict was asked for (`judge`). ``kernel_plausible`` says whether the
    kernel looks like uniform camera shake (one stroke, stable across scales); ``suggestion`` is a
    command to run, or None for a sharp photo.
    """

    file: str
    blurred: bool
    confidence: float
    sharpness: float
    edge_px: float
    #: What the verdict compares with ``--blur-threshold``: ``edge_px`` weighted by how directional
    #: the blur is (`deblurcli.quality.EdgeWidth.blur_px`), so a report shows the number it was judged by.
    blur_px: float = 0.0
    shake_px: float | None = None
    direction_deg: float | None = None
    kernel_plausible: bool | None = None
    suggestion: str | None = None
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    frames: list[dict[str, Any]] | None = None
    note: str | None = None
    kernel: np.ndarray | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "file": self.file, "blurred": self.blurred, "confidence": round(self.confidence, 3),
            "shake_px": None if self.shake_px is None else round(self.shake_px, 1),
            "direction_deg": None if self.direction_deg is None else round(self.direction_deg, 1),
            "sharpness": round(self.sharpness, 4), "edge_px": round(self.edge_px, 2),
            "blur_px": round(self.blur_px, 2), "kernel_plausible": self.kernel_plausible, "suggestion": self.suggestion,
            "width": self.width, "height": self.height, "seconds": round(self.seconds, 3),
        }
        if self.frames is not None:
            d["frames"] = self.frames
        if self.note:
            d["note"] = self.note
        return d


def verdict(width_px: float, threshold: float = DEFAULT_THRESHOLD) -> tuple[bool, float]:
    """(blurred, confidence) from the verdict's edge width (`EdgeWidth.blur_px`): a logistic in
    log(width / threshold)."""
    if threshold <= 0:
        raise ValueError(f"threshold must be a positive edge width in pixels, got {threshold}")
    z = math.log(max(width_px, 1e-6) / threshold) / _CONFIDENCE_SCALE
    p = 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))
    blurred = width_px > threshold
    return blurred, p if blurred else 1.0 - p


def _samples(src: Any, allow_large: bool = False) -> tuple[np.ndarray, str]:
    """Pixels (as stored: uint8/uint16/float) and a label, from a path, an Image or an array."""
    from .imageio import Image, read_image

    if isinstance(src, Image):
        return src.samples, str(src.source or src.name)
    if isinstance(src, np.ndarray):
        return src, "<array>"
    if isinstance(src, (str, os.PathLike)):
        img = read_image(src, allow_large=allow_large)
        return img.samples, str(src)
    raise TypeError(f"expected a path, an Image or an array, got {type(src).__name__}")


def _measure(arr: np.ndarray, label: str) -> EdgeWidth:
    try:
        return edge_width(arr)
    except ValueError:
        raise DeblurError(f"{label}: the image ({arr.shape[1]}x{arr.shape[0]}) is too small to judge its "
                          "sharpness; it needs at least 36x36 pixels") from None


def judge(src: Any, threshold: float = DEFAULT_THRESHOLD, *, allow_large: bool = False) -> Inspection:
    """Blurred or not, cheaply (no kernel): for a path, a decoded `Image` or an HxW(xC) array.

    Cost is a few hundred 32 px tiles whatever the photo's size (well under a second for 12 MP on
    one core, decoding aside). Unreadable files raise the same one-line `ImageError` as ``deblur run``.
    """
    t0 = time.perf_counter()
    arr, label = _samples(src, allow_large)
    ew = _measure(arr, label)
    blurred, conf = verdict(ew.blur_px, threshold)
    return Inspection(file=label, blurred=blurred, confidence=conf, sharpness=ew.sharpness, edge_px=ew.width_px,
                      blur_px=ew.blur_px, width=int(arr.shape[1]), height=int(arr.shape[0]),
                      seconds=time.perf_counter() - t0)


def _working_gray(arr: np.ndarray) -> tuple[np.ndarray, float]:
    """Linear-light luminance at the estimation scale, and that scale (1 or 0.5)."""
    import cv2

    h, w = arr.shape[:2]
    scale = 0.5 if max(h, w) > FULL_RES_MAX_SIDE else 1.0
    a = arr
    if scale != 1.0:
        if a.dtype not in (np.uint8, np.uint16, np.float32):
            a = a.astype(np.float32)
        a = cv2.resize(np.ascontiguousarray(a), (max(round(w * scale), 1), max(round(h * scale), 1)),
                       interpolation=cv2.INTER_AREA)
    from .deconv._ops import srgb_to_linear  # the engine's own transfer curve: the same light it deblurs in

    return srgb_to_linear(luma(a)), scale


def shake_length(kernel: np.ndarray, mass: float = LENGTH_MASS) -> float:
    """Length of a kernel's support along its main direction, in its pixels: the span holding the
    central ``mass`` share of its weight, plus one pixel (a single-pixel kernel has length 1)."""
    k = np.asarray(kernel, dtype=np.float64)
    ys, xs = np.nonzero(k > 0)
    if ys.size == 0:
        return 0.0
    w = k[ys, xs] / k[ys, xs].sum()
    px, py = xs.astype(np.float64), -ys.astype(np.float64)
    mx, my = float(np.dot(w, px)), float(np.dot(w, py))
    if ys.size == 1:
        return 1.0
    cov = np.cov(np.stack([px - mx, py - my]), aweights=w, bias=True)
    v = np.linalg.eigh(cov)[1][:, -1]
    along = (px - mx) * v[0] + (py - my) * v[1]
    order = np.argsort(along, kind="stable")
    cum = np.cumsum(w[order])
    tail = (1.0 - mass) / 2
    lo = along[order][min(int(np.searchsorted(cum, tail)), order.size - 1)]
    hi = along[order][min(int(np.searchsorted(cum, 1.0 - tail)), order.size - 1)]
    return float(hi - lo + 1.0)


def stroke_width(kernel: np.ndarray) -> float:
    """How many pixels a kernel's weight spreads over (its participation ratio, 1 / sum of squared
    weights) per pixel of its length (`shake_length`): 1-3 for a camera path's thin stroke, about
    its length for a round blob, which is what the estimator returns when it reads a dim photo's
    softness as blur (`estimate_shake`'s retry)."""
    k = np.asarray(kernel, np.float64)
    k = k / float(k.sum())
    return float(1.0 / np.sum(k * k) / shake_length(k))


@dataclass
class ShakeEstimate:
    """The kernel estimate `inspect` reports from, at its estimation scale (``factor`` converts to photo pixels).

    ``plausible``/``reasons`` apply the engine's own rule (`deconv.estimate_kernel`): few pieces,
    not diffuse, not cut by its window, stable across the pyramid's last two levels.
    """

    kernel: np.ndarray
    stats: Any
    factor: float
    sizes_tried: list[int]
    plausible: bool
    reasons: tuple[str, ...]
    #: The reported length, in photo pixels: `shake_length` x ``factor``.
    length_px: float = 0.0
    #: The contrast gain the kernel was estimated at: 1, or `estimate_shake`'s low-contrast retry.
    gain: float = 1.0


def _scale_agreement(levels: list[Any]) -> float:
    """Shape agreement of the last two pyramid levels' kernels (1 = same shape)."""
    import cv2

    from .deconv import kernel_similarity

    if len(levels) < 2:
        return 1.0
    prev, last = levels[-2].kernel, levels[-1].kernel
    up = np.clip(cv2.resize(np.ascontiguousarray(prev, dtype=np.float32), last.shape[::-1],
                            interpolation=cv2.INTER_LINEAR), 0, None)
    return kernel_similarity(up / max(float(up.sum()), 1e-12), last)


def _reduced(gray: np.ndarray, factor: int) -> np.ndarray:
    """``gray`` box-averaged by ``factor`` (area interpolation: no aliasing of the blur's edges)."""
    import cv2

    h, w = gray.shape
    return cv2.resize(np.ascontiguousarray(gray, dtype=np.float32), (max(w // factor, 1), max(h // factor, 1)),
                      interpolation=cv2.INTER_AREA)


def _ladder(gray: np.ndarray, region_side: int, first_size: int, gain: float = 1.0) -> tuple[Any, list[int]]:
    """The engine's size ladder on the ``region_side`` window of ``gray`` richest in edges: from
    ``first_size``, grown by x1.4 while the kernel is cut by its window (`touches_border`). The
    window is chosen and checked for texture on ``gray`` as it is, then estimated from at ``gain``
    times its contrast (`estimate_shake`'s retry)."""
    from .deconv import choose_region
    from .deconv.engine import MIN_TEXTURE, SIZE_STEP, touches_border
    from .deconv.estimate import EstimatorSettings, estimate_pyramid
    from .errors import KernelError

    x0, y0, rw, rh = choose_region(gray, side=region_side)
    patch = np.ascontiguousarray(gray[y0:y0 + rh, x0:x0 + rw])
    texture = float(np.abs(np.diff(patch, axis=1)).mean() + np.abs(np.diff(patch, axis=0)).mean())
    if texture < MIN_TEXTURE:
        raise KernelError("the image is too flat to estimate camera shake from (no edges to measure it by)")
    if gain != 1.0:
        patch = patch * np.float32(gain)
    limit = min(patch.shape) // 3
    limit = limit if limit % 2 else limit - 1
    size = min(first_size | 1, limit)
    tried = [size]
    res = estimate_pyramid(patch, size, EstimatorSettings())
    while size < limit and touches_border(res.kernel):
        size = min(int(round(size * SIZE_STEP)) | 1, limit)
        tried.append(size)
        res = estimate_pyramid(patch, size, EstimatorSettings())
    if res.kernel_steps == 0:
        # No edge ever stood out from the noise: the kernel is still the estimator's initial
        # streak, no trace of the photo's shake. Reported as an empty estimate (no length).
        res = dataclasses.replace(res, kernel=np.zeros_like(res.kernel))
    return res, tried


def _estimate_at(gray: np.ndarray, scale: float, *, region_side: int, first_size: int,
                 reduction: int, gain: float = 1.0) -> ShakeEstimate | None:
    """One kernel estimate from the working-scale ``gray`` at 1/``reduction`` of it, or None where
    that copy is too small (under MIN_SIDE), too flat, or the estimate comes back empty."""
    from .deconv import kernel_stats
    from .deconv.engine import MIN_SIDE, implausibility
    from .errors import KernelError

    if min(gray.shape) // reduction < MIN_SIDE:
        return None
    try:
        res, tried = _ladder(_reduced(gray, reduction) if reduction > 1 else gray, region_side, first_size, gain)
    except KernelError:
        return None
    if float(res.kernel.sum()) <= 0:
        return None
    stats = kernel_stats(res.kernel)
    reasons = implausibility(stats, _scale_agreement(res.levels), cut="shake longer than the window?")
    factor = reduction / scale
    return ShakeEstimate(kernel=res.kernel, stats=stats, factor=factor, sizes_tried=tried, plausible=not reasons,
                         reasons=tuple(reasons), length_px=shake_length(res.kernel) * factor, gain=gain)


def _gray_for_estimate(src: Any) -> tuple[np.ndarray, float]:
    """`_working_gray` of ``src``, checked to be large enough to estimate from."""
    from .deconv.engine import MIN_SIDE
    from .errors import KernelError

    arr, _ = _samples(src)
    gray, scale = _working_gray(arr)
    if min(gray.shape) < MIN_SIDE:
        raise KernelError(f"the image ({gray.shape[1]}x{gray.shape[0]}) is too small to estimate camera shake "
                          f"from; it needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    return gray, scale


def estimate_shake(src: Any, *, region_side: int = REGION_SIDE, first_size: int = FIRST_SIZE,
                   reduction: int = REDUCTION, retry: bool = True) -> ShakeEstimate:
    """The camera-shake kernel of a photo, estimated on one ``region_side`` window at 1/``reduction``
    of the working scale.

    The engine's size ladder (`deconv.estimate_kernel` has no parameter for the scale or the window)
    on a reduced copy: a long shake estimated at the working scale folds inside its kernel window
    without touching the window's border (the criterion for growing) and comes back short, which
    is why the benchmark's 59 px shakes read short; halved, it is a stroke the estimator resolves.
    Where the reduced copy has lost its edges (a fine texture shaken by 50 px: the estimate comes
    back empty), the kernel is estimated again at the working scale, from the 49 px window used
    there before (``calibrate.py --sizes``). An estimate that is empty there too is returned as it
    is (all zeros); an image too flat raises `KernelError`.

    A kernel that is a blob rather than a stroke (`stroke_width` over `RETRY_WIDTH`) or that the
    engine's rule calls implausible (most often: unstable across scales), on a photo of low
    contrast, is estimated once more with the contrast raised to `RETRY_RANGE`, and that estimate
    replaces it where it is plausible (``retry=False`` skips this). Why: the estimator's sparsity
    weight is absolute, so on a dim, soft photo (the moon) it erases the latent's edges and the
    kernel comes back as a long blob (44-99 px for the benchmark's 9-38 px shakes). Why not raise
    every photo's contrast: fine textures whose contrast the shake itself lowered (grass shaken by
    45 px) then read far too short, so raising always did no better than never on the calibration
    cases (40 of 53 within 25% either way), while the retry put 44 within 25%, and on the
    benchmark 80% against 74.5% (``calibrate.py --contrast``: results/calibrate_contrast.json).
    A blob alone is no reason to reject an estimate (real curved shakes are wide too): only the
    retry's plausible stroke replaces it.
    """
    gray, scale = _gray_for_estimate(src)
    est = _estimate_shake(gray, scale, region_side=region_side, first_size=first_size, reduction=reduction)
    blob = float(est.kernel.sum()) > 0 and stroke_width(est.kernel) > RETRY_WIDTH
    if retry and (blob or not est.plausible):
        lo, hi = np.percentile(gray, [0.5, 99.5])
        gain = RETRY_RANGE / max(float(hi - lo), 1e-3)
        if gain > 1.0:
            again = _estimate_shake(gray, scale, region_side=region_side, first_size=first_size,
                                    reduction=reduction, gain=gain)
            if again.plausible:
                return again
    return est


def _estimate_shake(gray: np.ndarray, scale: float, *, region_side: int, first_size: int, reduction: int,
                    gain: float = 1.0) -> ShakeEstimate:
    """`estimate_shake`'s estimate at one contrast gain: at 1/``reduction``, else at the working scale."""
    from .deconv import kernel_stats
    from .deconv.engine import implausibility

    if reduction > 1:
        est = _estimate_at(gray, scale, region_side=region_side, first_size=first_size, reduction=reduction,
                           gain=gain)
        if est is not None:
            return est
    res, tried = _ladder(gray, region_side, WORKING_FIRST_SIZE if reduction > 1 else first_size, gain)
    stats = kernel_stats(res.kernel)
    reasons = implausibility(stats, _scale_agreement(res.levels), cut="shake longer than the window?")
    return ShakeEstimate(kernel=res.kernel, stats=stats, factor=1.0 / scale, sizes_tried=tried,
                         plausible=not reasons, reasons=tuple(reasons),
                         length_px=shake_length(res.kernel) / scale, gain=gain)


@functools.lru_cache(maxsize=1)
def _trained_blur_px() -> int | None:
    """The largest shake the embedded default model was trained on (its weights' metadata), or None."""
    from .models import registry
    from .safetensors_header import read_safetensors_header

    try:
        path = registry.embedded_path(registry.default_entry())
        if path is None:
            return None
        value = read_safetensors_header(path)[0].get("train_blur_px")
        return int(value) if value else None
    except (DeblurError, OSError, ValueError):
        return None


def suggested_scale(shake_px: float, trained_px: int) -> int:
    """The ``--scale`` that brings a measured shake back inside what the model learned.

    The same rule as ``--scale auto`` (`multiscale.auto_scale`), but from the shake measured on
    this photo instead of the shake typical of its size.
    """
    from .multiscale import CROSSOVER, MAX_SCALE

    scale = 1
    while shake_px / scale > CROSSOVER * trained_px and scale < MAX_SCALE:
        scale *= 2
    return scale


def _suggest(file: str, rec: Inspection) -> str | None:
    """The command to run for a blurred photo; ``--scale N`` only where ``--scale auto`` would pick otherwise."""
    if not rec.blurred:
        return None
    quoted = file if file and all(c not in file for c in " '\"$`\\") else repr(file)
    cmd = f"deblur run {quoted}"
    trained = _trained_blur_px()
    if rec.shake_px is None or not trained or not rec.width or not rec.height:
        return cmd
    from .multiscale import auto_scale

    want = suggested_scale(rec.shake_px, trained)
    return cmd if want == auto_scale(rec.height, rec.width, trained) else f"{cmd} --scale {want}"


def inspect(src: Any, *, threshold: float = DEFAULT_THRESHOLD, kernel: bool = True,
            region_side: int = REGION_SIDE, allow_large: bool = False) -> Inspection:
    """The full report: `judge`'s verdict, and for a blurred photo the shake's length and direction.

    ``shake_px`` is the extent of the estimated kernel's support along its main direction (the
    span of the central 85% of its weight, `shake_length`), in the photo's own pixels;
    ``direction_deg`` is counter-clockwise from the x axis with y up, in [0, 180).
    ``kernel=False`` stops after the verdict. A photo too flat to estimate from, or whose estimate
    is empty, keeps its verdict, with no length, and says why in ``note``.
    """
    from .errors import KernelError

    t0 = time.perf_counter()
    arr, label = _samples(src, allow_large)
    ew = _measure(arr, label)
    blurred, conf = verdict(ew.blur_px, threshold)
    rec = Inspection(file=label, blurred=blurred, confidence=conf, sharpness=ew.sharpness, edge_px=ew.width_px,
                     blur_px=ew.blur_px, width=int(arr.shape[1]), height=int(arr.shape[0]))
    if blurred and kernel:
        try:
            est = estimate_shake(arr, region_side=region_side)
        except KernelError as exc:
            rec.note = str(exc)
        else:
            if float(est.kernel.sum()) <= 0:  # the estimator found no stroke: say so rather than "0 px"
                rec.note = "no camera-shake trace could be measured (the edges left are too faint)"
            else:
                rec.shake_px = est.length_px
                rec.direction_deg = float(est.stats.direction_deg)
                rec.kernel_plausible = est.plausible
                rec.kernel = est.kernel
    rec.suggestion = _suggest(label, rec)
    rec.seconds = time.perf_counter() - t0
    return rec


# --------------------------------------------------------------------------------------------
# Videos: a few frames
# --------------------------------------------------------------------------------------------


def video_frames(path: str | os.PathLike[str], count: int = VIDEO_FRAMES) -> list[tuple[float, np.ndarray]]:
    """``count`` frames spread over the video (times in seconds, RGB uint8), via PyAV.

    The video's errors are `deblurcli.video`'s (missing, not a video, no stream, corrupt).
    """
    from .video import open_input, probe

    p = Path(path)
    info = probe(p)
    dur = info.duration or 0.0
    times = [dur * (i + 0.5) / count for i in range(count)] if dur > 0 else [0.0]
    out: list[tuple[float, np.ndarray]] = []
    with open_input(p) as inp:
        vs = next(s for s in inp.streams.video if not (s.disposition & 0x400))
        for t in times:
            if t > 0:
                inp.seek(int(t / vs.time_base) + int(vs.start_time or 0), stream=vs, backward=True)
            for frame in inp.decode(vs):
                ft = float(frame.pts * vs.time_base) if frame.pts is not None else t
                if ft + 1e-3 >= t or frame.pts is None:
                    out.append((ft, frame.to_ndarray(format="rgb24")))
                    break
    if not out:
        raise DeblurError(f"{p}: no frame could be decoded; copy the whole file again")
    return out


def inspect_video(path: str | os.PathLike[str], *, threshold: float = DEFAULT_THRESHOLD, kernel: bool = True,
                  count: int = VIDEO_FRAMES) -> Inspection:
    """A video's report from ``count`` sampled frames: blurred when most of them are; the length,
    direction and sharpness are those of the median frame by edge width."""
    t0 = time.perf_counter()
    frames = video_frames(path, count)
    recs = [(t, judge(img, threshold)) for t, img in frames]
    n_blurred = sum(r.blurred for _, r in recs)
    blurred = n_blurred * 2 > len(recs)
    order = sorted(range(len(recs)), key=lambda i: recs[i][1].edge_px)
    mid = order[len(order) // 2]
    label = str(path)
    if blurred and kernel:
        rec = inspect(frames[mid][1], threshold=threshold)
    else:
        rec = recs[mid][1]
    rec.file = label
    rec.blurred = blurred
    rec.confidence = float(np.mean([r.confidence if r.blurred == blurred else 1 - r.confidence for _, r in recs]))
    rec.frames = [{"time": round(t, 3), "blurred": r.blurred, "sharpness": round(r.sharpness, 4),
                   "edge_px": round(r.edge_px, 2), "blur_px": round(r.blur_px, 2)} for t, r in recs]
    rec.suggestion = _suggest(label, rec)
    rec.seconds = time.perf_counter() - t0
    return rec


def inspect_path(path: str | os.PathLike[str], *, threshold: float = DEFAULT_THRESHOLD,
                 kernel: bool = True, allow_large: bool = False) -> Inspection:
    """`inspect` for a photo file or `inspect_video` for a video file, chosen by content."""
    from .video import is_video

    p = Path(path)
    if p.is_file() and is_video(p):  # content decides, as in ``deblur run``: a JPEG named .mp4 is a photo
        return inspect_video(p, threshold=threshold, kernel=kernel)
    return inspect(p, threshold=threshold, kernel=kernel, allow_large=allow_large)


def list_files(paths: list[Path]) -> list[Path]:
    """Files named, and the photos and videos inside folders named (recursively), in order.

    Folders are listed by ``deblur batch``'s own listing (`deblurcli.batch.list_inputs`), so the
    same files count as inputs; a missing path or a folder with nothing in it is its one-line error.
    """
    from .batch import BatchOptions, list_inputs

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(p / rel for rel in list_inputs(p, BatchOptions(recursive=True)))
        else:
            out.append(p)
    return out


def save_kernel(rec: Inspection, path: str | os.PathLike[str]) -> bool:
    """Write the blur trace picture (white path on black) as PNG; False when there is no kernel."""
    import io

    from PIL import Image as PILImage

    from .deconv import kernel_image
    from .fsutil import atomic_write

    if rec.kernel is None:
        return False
    buf = io.BytesIO()
    PILImage.fromarray(kernel_image(rec.kernel)).save(buf, format="PNG")
    atomic_write(path, buf.getvalue(), make_parents=True)
    return True
