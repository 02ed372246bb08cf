"""Restoring a photo at a reduced scale and keeping its own detail above that scale.

Why: camera shake grows with resolution. On a 12-24 MP photo it spans 30-100 px, while a model
undoes blur only up to the extent it was trained on (the embedded default: 41 px); beyond that it
does little, or harm. Shrunk by 2, the same shake falls back inside the trained range.
Measured with ``benchmarks/default_model/large_blur.py`` on held-out photos (its figures for each
shipped default are in weights/README.md): on 41-81 px shake, half scale gains about twice what
full resolution does, and full resolution makes about half the images worse; on 9-41 px shake
full resolution wins by about as much. So the scale is chosen from what the shake is likely to
be on a photo of that size (`auto_scale`).

The model's correction (its output minus its input) is computed at the reduced scale and
upsampled; the photo's detail finer than that scale is kept as it was. Restoring that detail too
would need a full-resolution run, five times the cost, for 0.01 dB on large shake.

Everything here works a band of rows at a time, so a 24 MP photo is never held as floats whole.
"""

from __future__ import annotations

import math

import numpy as np

from .imageio import as_float_rgb

__all__ = ["MAX_SCALE", "SHAKE_FRACTION", "auto_scale", "bands", "detail_rows", "reduce"]

#: Typical hand-held shake as a fraction of the photo's long side: 30-100 px at 12-24 MP
#: (4000-6000 px), 10-40 px on a 1280x720 frame.
SHAKE_FRACTION = 1 / 70
#: Full resolution still beats half scale on shake up to about this multiple of the largest
#: trained blur (large_blur.py: the 43-51 px rows for a model trained up to 41 px).
CROSSOVER = 1.2
MAX_SCALE = 8
_BAND = 256  # rows converted to float at a time
_MARGIN = 3  # low-resolution rows beyond a band that bicubic upsampling reads (it needs 2)


def auto_scale(height: int, width: int, trained_blur_px: int | None) -> int:
    """The reduction (1, 2, 4, ...) that brings a photo's likely shake inside the model's training.

    1 when the model does not say how large a blur it was trained on (the papers' models: their
    training pairs do not state it), so nothing changes for them unless asked.
    """
    if not trained_blur_px:
        return 1
    shake = max(height, width) * SHAKE_FRACTION
    scale = 1
    while shake / scale > CROSSOVER * trained_blur_px and scale < MAX_SCALE:
        scale *= 2
    return scale


def reduce(samples: np.ndarray, scale: int) -> np.ndarray:
    """The photo's block means over ``scale`` x ``scale`` pixels: HxWx3 float32 of ceil(h/s) x ceil(w/s).

    `samples` are as stored (uint8/uint16, grey or RGB) or float RGB. A partial block at the right
    or bottom edge averages the pixels it has, as an area resize does.
    """
    h, w = samples.shape[:2]
    hs, ws = math.ceil(h / scale), math.ceil(w / scale)
    out = np.empty((hs, ws, 3), np.float32)
    for y, y1 in bands(h, scale):
        rows = as_float_rgb(samples[y:y1])
        n = rows.shape[0]
        pad_h, pad_w = -n % scale, -w % scale
        if pad_h or pad_w:
            rows = np.pad(rows, ((0, pad_h), (0, pad_w), (0, 0)))
        sums = rows.reshape(rows.shape[0] // scale, scale, ws, scale, 3).sum(axis=(1, 3))
        counts = np.full((sums.shape[0], ws), float(scale * scale), np.float32)
        if pad_w:
            counts[:, -1] = scale * (scale - pad_w)
        if pad_h:
            counts[-1] = counts[-1] / scale * (scale - pad_h)
        out[y // scale:y // scale + sums.shape[0]] = sums / counts[..., None]
    return out


def detail_rows(low: np.ndarray, scale: int, y0: int, y1: int, width: int) -> np.ndarray:
    """Rows ``y0:y1`` (``y0`` a multiple of ``scale``) of ``low`` upsampled bicubically by ``scale``.

    The same numbers as upsampling all of ``low`` at once and cropping to ``width`` columns: the
    band reads ``_MARGIN`` low-resolution rows beyond its ends, where the whole image has them.
    """
    if y0 % scale:
        raise ValueError(f"band start {y0} is not a multiple of the scale {scale}")
    lo0 = max(0, y0 // scale - _MARGIN)
    lo1 = min(low.shape[0], math.ceil(y1 / scale) + _MARGIN)
    import cv2  # only reduced runs upsample: a photo restored at full size never imports OpenCV

    part = low[lo0:lo1]
    up = cv2.resize(part, (part.shape[1] * scale, part.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
    start = y0 - lo0 * scale
    return up[start:start + (y1 - y0), :width]


def bands(height: int, scale: int) -> list[tuple[int, int]]:
    """``(y0, y1)`` of the output bands, top to bottom: about `_BAND` rows, starting at multiples of ``scale``."""
    step = max(1, _BAND // scale) * scale
    return [(y, min(height, y + step)) for y in range(0, height, step)]
