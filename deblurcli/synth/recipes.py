"""The blur recipes, without torch and without files: camera-shake kernels, linear-light blur,
sensor noise, JPEG, dead leaves and frame averaging, each from an explicit random generator.

`pairs` turns them into ``deblur synth``'s folder of pairs; training calls them on the fly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

FloatRange = tuple[float, float]


# --------------------------------------------------------------------------------------------
# Colour transfer
# --------------------------------------------------------------------------------------------


def srgb_to_linear(img: np.ndarray) -> np.ndarray:
    """Decode sRGB to linear light, where pixel values add like photons do."""
    x = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / np.float32(12.92), ((x + np.float32(0.055)) / np.float32(1.055))
                    ** np.float32(2.4)).astype(np.float32)


def linear_to_srgb(img: np.ndarray) -> np.ndarray:
    """Encode linear light back to sRGB, the space images are stored and trained in."""
    x = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * np.float32(12.92),
                    np.float32(1.055) * x ** np.float32(1 / 2.4) - np.float32(0.055)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Camera-shake kernels
# --------------------------------------------------------------------------------------------


def random_kernel_size(rng: np.random.Generator, lo: int = 7, hi: int = 31) -> int:
    """Draw an odd kernel size in ``[lo, hi]``.

    Odd, because only an odd kernel has a pixel at its centre; an even one would shift the image by
    half a pixel and the sharp target would no longer line up with the blurred input.
    """
    lo_odd = lo + 1 - lo % 2
    hi_odd = hi - 1 + hi % 2
    if lo_odd > hi_odd or lo_odd < 1:
        raise ValueError(f"no odd kernel size in [{lo}, {hi}]")
    return int(lo_odd + 2 * rng.integers(0, (hi_odd - lo_odd) // 2 + 1))


def _shake_path(rng: np.random.Generator, steps: int, jitter: float, pull: float,
                jerk_p: float) -> np.ndarray:
    """Camera position over the exposure, as a complex polyline with ``steps + 1`` vertices.

    The model follows Boracchi & Foi (2012): the velocity persists between steps (momentum), a
    Gaussian acceleration makes the hand tremble, a weak pull towards the start keeps the path from
    wandering off in a straight line forever, and rare large jerks model abrupt shakes. Speed is
    capped at one unit per step so that one jerk cannot dominate the whole kernel.
    """
    acc = rng.standard_normal((steps, 2)) @ np.array([1.0, 1.0j])
    jerk = rng.random(steps) < jerk_p
    jerk_dir = np.exp(2j * np.pi * rng.random(steps))
    jerk_mag = rng.uniform(0.5, 2.0, steps)
    v = np.exp(2j * np.pi * rng.random())
    x = 0j
    path = np.empty(steps + 1, dtype=np.complex128)
    path[0] = x
    for t in range(steps):
        v = v + jitter * acc[t] - pull * x
        if jerk[t]:
            v = v + jerk_mag[t] * jerk_dir[t]
        speed = abs(v)
        if speed > 1.0:
            v = v / speed
        x = x + v
        path[t + 1] = x
    return path


def random_kernel(size: int, rng: np.random.Generator, *, fill: float | None = None,
                  steps: int | None = None, jitter: float | None = None, pull: float | None = None,
                  jerk_p: float | None = None) -> np.ndarray:
    """A random camera-shake blur kernel, float32 ``size x size``, summing to 1 and centred.

    ``size`` must be odd and is the kernel's support (pick it with :func:`random_kernel_size`).
    The trajectory is rescaled so its farthest point reaches ``fill`` (default: random in
    [0.6, 1]) of the half-width, and its time-average position sits exactly on the centre pixel:
    a kernel whose centre of mass is off-centre would translate the image as well as blur it,
    which a network could only learn as an unexplainable shift.

    The path is rasterised by bilinear splatting of points spaced at most 0.2 px apart, each
    segment of the polyline carrying equal weight: equal time per step, so slow parts of the
    shake come out brighter, as in a real exposure. Bilinear splatting preserves the centre of
    mass exactly. Unset trajectory parameters are drawn at random so kernels range from nearly
    straight streaks (low ``jitter``) to tangled shakes.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd integer, got {size}")
    if size == 1:
        return np.ones((1, 1), dtype=np.float32)
    steps = int(rng.integers(24, 97)) if steps is None else steps
    jitter = float(np.exp(rng.uniform(np.log(0.01), np.log(0.35)))) if jitter is None else jitter
    pull = float(rng.uniform(0.0, 0.012)) if pull is None else pull
    jerk_p = float(rng.uniform(0.0, 0.04)) if jerk_p is None else jerk_p
    fill = float(rng.uniform(0.6, 1.0)) if fill is None else fill

    return _rasterise(_shake_path(rng, steps, jitter, pull, jerk_p), size, fill)


def _rasterise(path: np.ndarray, size: int, fill: float) -> np.ndarray:
    """A camera path (complex polyline, equal time per segment) as a centred ``size x size`` kernel.

    The path is shifted so its time-average position sits on the centre pixel, scaled so its
    farthest point reaches ``fill`` of the half-width, and splatted bilinearly at points at most
    0.2 px apart (which keeps the centre of mass exactly): slow parts come out brighter.
    """
    kernel = np.zeros((size, size), dtype=np.float64)
    c = (size - 1) / 2
    # Time-average of a polyline walked at constant speed per segment = mean of segment midpoints.
    mids = 0.5 * (path[:-1] + path[1:])
    path = path - mids.mean()
    reach = max(np.abs(path.real).max(), np.abs(path.imag).max())
    if reach < 1e-9:  # the camera did not move: a delta is the honest answer
        kernel[int(c), int(c)] = 1.0
        return kernel.astype(np.float32)
    # Keep every splat inside the array: bilinear touches floor(p) and floor(p) + 1.
    path = path * ((c - 0.5) * min(max(fill, 0.0), 1.0) / reach)

    seg = np.diff(path)
    n = np.maximum(1, np.ceil(np.abs(seg) / 0.2)).astype(np.int64)
    seg_id = np.repeat(np.arange(seg.size), n)
    first = np.cumsum(n) - n
    frac = (np.arange(n.sum()) - first[seg_id] + 0.5) / n[seg_id]
    pts = path[seg_id] + seg[seg_id] * frac
    wts = 1.0 / n[seg_id]

    px, py = pts.real + c, pts.imag + c
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    fx, fy = px - x0, py - y0
    for dy, dx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                      (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        yy, xx = np.clip(y0 + dy, 0, size - 1), np.clip(x0 + dx, 0, size - 1)
        np.add.at(kernel, (yy, xx), w * wts)
    out = (kernel / kernel.sum()).astype(np.float32)
    out /= out.sum(dtype=np.float64)  # renormalise after rounding to float32
    return out


def _smooth_noise(rng: np.random.Generator, n: int, corr: int) -> np.ndarray:
    """``n`` samples of unit-variance Gaussian noise correlated over about ``corr`` samples
    (white noise through a Hann window): a hand's speed and turning change smoothly."""
    w = np.hanning(2 * corr + 1)
    x = np.convolve(rng.standard_normal(n + 2 * corr), w, mode="valid")
    return x / max(float(x.std()), 1e-9)


def hand_shake_kernel(size: int, rng: np.random.Generator, *, fill: float | None = None,
                      curl: float | None = None) -> np.ndarray:
    """A camera-shake kernel drawn the way a hand moves, float32 ``size x size``, summing to 1.

    `random_kernel`'s path has a capped, nearly constant speed, so its kernels are even-weighted
    strokes. A hand holding a camera does not move at one speed: it starts, accelerates or brakes
    and turns, and the exposure records where it lingered as heavy spots on a faint trail; a
    tremor that keeps turning one way curls the path into a compact loop or blob. Here the
    speed is a smooth random function times a ramp (accelerating, braking, or a stop in the
    middle), the heading turns at a steady rate ``curl`` (total turn over the exposure, radians;
    default: drawn, about one kernel in three curled past 1.5 pi) plus a smooth wobble, and a
    small fast tremor is added on top. Rasterised like `random_kernel` (equal time per sample,
    centred on the time-average, ``fill`` of the half-width, default random in [0.6, 1]).
    Written from that physical description for the trust rule's calibration
    (`benchmarks/realshake/calibrate_trust.py`); it is fitted to no recorded kernel.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd integer >= 3, got {size}")
    steps = 240
    t = np.linspace(0.0, 1.0, steps)
    ramp = {0: t, 1: 1.0 - t, 2: np.abs(2.0 * t - 1.0), 3: np.ones_like(t)}[int(rng.integers(0, 4))]
    speed = (0.15 + ramp) * np.exp(float(rng.uniform(0.2, 0.8)) * _smooth_noise(rng, steps, 30))
    if curl is None:
        curl = float(rng.uniform(0.0, 1.5)) * math.pi if rng.random() < 0.65 else float(rng.uniform(1.5, 3.5)) * math.pi
    curl *= 1.0 if rng.random() < 0.5 else -1.0
    heading = float(rng.uniform(0.0, 2.0 * math.pi)) + curl * t + float(rng.uniform(0.1, 0.6)) * _smooth_noise(
        rng, steps, 25)
    path = np.concatenate(([0j], np.cumsum(speed * np.exp(1j * heading)) / steps))
    extent = float(np.abs(path - path.mean()).max())
    tremor = (rng.standard_normal(steps + 1) + 1j * rng.standard_normal(steps + 1)) * 0.01 * extent
    fill = float(rng.uniform(0.6, 1.0)) if fill is None else fill
    return _rasterise(path + tremor, size, fill)


def _pad_kernel(kernel: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad an odd kernel to a larger odd size, keeping it centred."""
    p = (size - kernel.shape[0]) // 2
    return np.pad(kernel, p) if p > 0 else kernel


# --------------------------------------------------------------------------------------------
# Blur and degradations
# --------------------------------------------------------------------------------------------


def _check_image(img: np.ndarray, what: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{what} must be HxW or HxWxC, got shape {img.shape}")
    return img.astype(np.float32, copy=False)


def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """True convolution (OpenCV correlates, so the kernel is flipped) with a mirrored border."""
    kernel = np.asarray(kernel, dtype=np.float32)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be square with an odd size, got shape {kernel.shape}")
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    return cv2.filter2D(img, cv2.CV_32F, flipped, borderType=cv2.BORDER_REFLECT)


def _boost_highlights(lin: np.ndarray, gain: float) -> np.ndarray:
    """Stretch near-white linear values so clipped lights smear into bright streaks.

    A stored image clips a street lamp at 1.0, yet the real light was far brighter; blurring the
    clipped value yields a dim grey smear instead of the saturated streak a real photo shows.
    """
    if gain <= 1.0:
        return lin
    t = np.float32(0.8)
    return lin + np.float32(gain - 1.0) * np.maximum(lin - t, 0) / (1 - t)


def blur_image(sharp: np.ndarray, kernel: np.ndarray, *, linear_light: bool = True,
               highlight_gain: float = 1.0) -> np.ndarray:
    """Convolve an sRGB image in ``[0, 1]`` with ``kernel``; returns float32 sRGB in ``[0, 1]``.

    ``linear_light`` (the default and the physically right choice) decodes to linear light before
    convolving, so a black/white edge blurs to a brighter mid-tone than a naive sRGB-space blur;
    ``linear_light=False`` is kept for comparison. ``highlight_gain > 1`` brightens near-white
    pixels before blurring to imitate saturated light sources (linear light only).
    """
    img = _check_image(sharp, "sharp")
    if not linear_light:
        return np.clip(_convolve(img, kernel), 0.0, 1.0)
    lin = _boost_highlights(srgb_to_linear(img), highlight_gain)
    return linear_to_srgb(_convolve(lin, kernel))


def _smooth_masks(shape_hw: tuple[int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` smooth non-negative weight maps, ``count x H x W``, summing to 1 everywhere.

    Random logits on a coarse grid, upsampled bicubically and passed through a softmax: smooth
    because blur changes gradually across a frame (rotation, depth), summing to 1 so that blending
    conserves light.
    """
    h, w = shape_hw
    grid = int(rng.integers(2, 5))
    sharpness = float(rng.uniform(1.0, 6.0))
    logits = rng.standard_normal((count, grid, grid)).astype(np.float32) * sharpness
    up = np.stack([cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC) for g in logits])
    up -= up.max(axis=0, keepdims=True)
    e = np.exp(up)
    return e / e.sum(axis=0, keepdims=True)


def spatially_varying_blur(sharp: np.ndarray, kernels: Sequence[np.ndarray], rng: np.random.Generator,
                           *, linear_light: bool = True, highlight_gain: float = 1.0) -> np.ndarray:
    """Blend images blurred by each of ``kernels`` with smooth random masks summing to 1.

    Real shake includes rotation and scenes have depth, so one kernel rarely fits a whole photo;
    a blend of 2-3 kernels teaches the network that blur can change across the frame. Blending
    happens in linear light, like the convolution itself.
    """
    img = _check_image(sharp, "sharp")
    if len(kernels) == 0:
        raise ValueError("spatially_varying_blur needs at least one kernel")
    masks = _smooth_masks(img.shape[:2], len(kernels), rng)
    base = _boost_highlights(srgb_to_linear(img), highlight_gain) if linear_light else img
    out = np.zeros_like(base)
    for k, m in zip(kernels, masks, strict=True):
        out += _convolve(base, k) * (m[..., None] if base.ndim == 3 else m)
    return linear_to_srgb(out) if linear_light else np.clip(out, 0.0, 1.0)


def add_noise(img: np.ndarray, rng: np.random.Generator, sigma: FloatRange = (0.0002, 0.002), *,
              shot: FloatRange = (0.0, 0.002)) -> np.ndarray:
    """Poisson-Gaussian sensor noise, added in linear light.

    A sensor's noise variance is ``shot * signal + sigma**2`` on the linear signal (photon shot
    noise plus read noise); adding it there, then encoding to sRGB, gives the familiar look of
    stronger noise in the shadows. ``sigma`` and ``shot`` are ranges drawn from per call.
    """
    x = _check_image(img)
    s = float(rng.uniform(*sigma))
    a = float(rng.uniform(*shot))
    lin = srgb_to_linear(x)
    std = np.sqrt(np.float32(a) * lin + np.float32(s * s))
    noisy = lin + std * rng.standard_normal(lin.shape, dtype=np.float32)
    return linear_to_srgb(noisy)


def _to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through JPEG at ``quality`` (1-100): most user photos carry its artefacts."""
    x = _check_image(img)
    u8 = _to_u8(x)
    bgr = u8[..., ::-1] if u8.ndim == 3 else u8
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    flag = cv2.IMREAD_COLOR if u8.ndim == 3 else cv2.IMREAD_GRAYSCALE
    out = cv2.imdecode(buf, flag)
    if out.ndim == 3:
        out = out[..., ::-1]
    return out.astype(np.float32) / np.float32(255.0)


#: `degrade`'s kernel sides in px when its caller names none.
KERNEL_SIZE = (7, 31)


def largest_kernel(degrade_kwargs: dict) -> int:
    """The largest blur kernel (px) that `degrade` makes with these keyword arguments.

    Crops keep half of it as margin, and a trained model records it, so that large photos can
    be run at a scale where their shake is no larger (`deblurcli.multiscale`).
    """
    return int(degrade_kwargs.get("kernel_size", KERNEL_SIZE)[1])


def degrade(sharp: np.ndarray, rng: np.random.Generator, *, kernel_size: tuple[int, int] = KERNEL_SIZE,
            spatially_varying_p: float = 0.2, noise_p: float = 0.4, jpeg_p: float = 0.3,
            highlight_p: float = 0.1, noise_sigma: FloatRange = (0.0002, 0.002),
            noise_shot: FloatRange = (0.0, 0.002),
            jpeg_quality: tuple[int, int] = (60, 95), linear_p: float = 1.0,
            srgb_noise_p: float = 0.0, srgb_noise_sigma: FloatRange = (0.0, 0.01)) -> tuple[np.ndarray, np.ndarray]:
    """The training recipe: sharp sRGB image -> (blurred float32 image, kernel or kernels).

    Blur with one random shake kernel, or with probability ``spatially_varying_p`` a smooth blend
    of 2-3 (returned stacked ``K x S x S``, zero-padded to a common odd size); then, each with its
    own probability, sensor noise and JPEG. With ``highlight_p`` near-white pixels are brightened
    before the blur (saturated light streaks). The same generator state always yields the same
    result, which is what makes :func:`write_pairs` and the training stream
    (``deblurcli.train.synthetic``) reproducible.

    ``linear_p`` is the share of samples blurred in linear light; the rest are blurred directly
    on the sRGB values. A sensor integrates light linearly, but many phone pipelines, older
    datasets and evaluations effectively blur the encoded values, and a model trained on one
    kind alone makes the other worse than doing nothing. ``srgb_noise_p`` adds plain Gaussian
    noise on the sRGB values (sigma from ``srgb_noise_sigma``), the other common noise model.
    Both default to the old recipe and then draw nothing from ``rng``, so existing seeds
    reproduce the same pairs.
    """
    lo, hi = kernel_size
    gain = float(rng.uniform(1.5, 4.0)) if rng.random() < highlight_p else 1.0
    linear = linear_p >= 1.0 or bool(rng.random() < linear_p)
    if not linear:
        gain = 1.0  # highlight boosting is a linear-light effect
    if rng.random() < spatially_varying_p:
        count = int(rng.integers(2, 4))
        sizes = [random_kernel_size(rng, lo, hi) for _ in range(count)]
        kernels = [random_kernel(s, rng) for s in sizes]
        blurred = spatially_varying_blur(sharp, kernels, rng, linear_light=linear, highlight_gain=gain)
        kernel_out = np.stack([_pad_kernel(k, max(sizes)) for k in kernels])
    else:
        kernel_out = random_kernel(random_kernel_size(rng, lo, hi), rng)
        blurred = blur_image(sharp, kernel_out, linear_light=linear, highlight_gain=gain)
    if rng.random() < noise_p:
        blurred = add_noise(blurred, rng, noise_sigma, shot=noise_shot)
    if srgb_noise_p > 0 and rng.random() < srgb_noise_p:
        sigma = np.float32(rng.uniform(*srgb_noise_sigma))
        blurred = np.clip(blurred + sigma * rng.standard_normal(blurred.shape, dtype=np.float32), 0.0, 1.0)
    if rng.random() < jpeg_p:
        blurred = jpeg(blurred, int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1)))
    return blurred, kernel_out


# --------------------------------------------------------------------------------------------
# Dead leaves
# --------------------------------------------------------------------------------------------

_SHIFT = 4  # cv2 fixed-point bits: shapes land at 1/16-pixel positions, not snapped to the grid
_ONE = 1 << _SHIFT


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Colours in 0..255 with varied saturation: natural scenes are mostly muted, some vivid."""
    rgb = rng.random((n, 3)) * 255.0
    grey = rgb.mean(axis=1, keepdims=True)
    sat = rng.random((n, 1)) ** 0.7
    return np.clip(grey + sat * (rgb - grey), 0, 255)


def _texture(rng: np.random.Generator, hh: int, ww: int, c0: np.ndarray, scale: float) -> np.ndarray:
    """A ``hh x ww x 3`` float32 texture in 0..255 around colour ``c0``.

    Flat shapes only give edges; gradients, stripes at a random period and noise give the interior
    detail (and its blurred version) that real surfaces have.
    """
    c1 = _random_colours(rng, 1)[0].astype(np.float32)
    kind = int(rng.integers(3))
    theta = rng.uniform(0, np.pi)
    xs = np.arange(ww, dtype=np.float32) * np.float32(np.cos(theta))
    ys = np.arange(hh, dtype=np.float32) * np.float32(np.sin(theta))
    if kind == 0:  # linear gradient across the shape
        proj = ys[:, None] + xs[None, :]
        t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1.0)
    elif kind == 1:  # sinusoidal stripes, period from 2 px to the shape size
        period = float(np.exp(rng.uniform(np.log(2.0), np.log(max(2.5, scale)))))
        f = np.float32(2 * np.pi / period)
        t = 0.5 + 0.5 * np.sin(ys[:, None] * f + (xs * f + np.float32(rng.uniform(0, 2 * np.pi)))[None, :])
    else:  # smooth or fine noise, at a random grain
        grain = float(np.exp(rng.uniform(0.0, np.log(max(1.5, scale / 2)))))
        gh, gw = max(1, round(hh / grain)), max(1, round(ww / grain))
        t = np.clip(cv2.resize(rng.random((gh, gw), dtype=np.float32), (ww, hh),
                               interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    t = t[..., None]
    return c0.astype(np.float32) * (1 - t) + c1 * t


def dead_leaves(size_hw: tuple[int, int], rng: np.random.Generator, *, rmin: float = 1.5,
                rmax: float | None = None, depth: float = 2.5, texture_p: float = 0.35,
                shape_p: tuple[float, float, float, float] = (0.55, 0.15, 0.15, 0.15),
                max_shapes: int = 50_000) -> np.ndarray:
    """A dead-leaves image, ``H x W x 3`` float32 in ``[0, 1]``.

    Occluding shapes (disks, ellipses, rotated rectangles, star-shaped polygons with probabilities
    ``shape_p``) of random colour are stacked with radii drawn from a density proportional to
    ``r**-3`` on ``[rmin, rmax]`` (default ``rmax``: 0.4 of the larger side). That law is
    scale-invariant, so the image has edges and flat regions in the same proportions at every
    scale, as natural images do, which is what makes these images useful for training a deblurrer
    without photos. Shapes with radius over 6 px get a gradient, stripe or noise texture with
    probability ``texture_p``. ``depth`` is the mean number of shapes covering a pixel. Shapes are
    drawn with anti-aliased cv2 primitives at 1/16-pixel positions; all per-shape geometry is
    computed up front in numpy because the Python loop is the cost.
    """
    h, w = int(size_hw[0]), int(size_hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"dead_leaves size must be positive, got {size_hw}")
    rmax = 0.4 * max(h, w) if rmax is None else rmax
    leaves = _Leaves.draw(rng, h, w, rmin=rmin, rmax=max(rmax, rmin * 1.01), depth=depth, texture_p=texture_p,
                          shape_p=shape_p, max_shapes=max_shapes)
    img = _texture(rng, h, w, _random_colours(rng, 1)[0], max(h, w)).astype(np.uint8)
    for i in range(leaves.n):
        if not leaves.textured[i]:
            leaves.paint(img, i, leaves.colours_fill[i])
            continue
        r, cx, cy = leaves.radii[i], leaves.centres[i, 0], leaves.centres[i, 1]
        x0, x1 = max(0, int(cx - r) - 2), min(w, int(cx + r) + 3)
        y0, y1 = max(0, int(cy - r) - 2), min(h, int(cy + r) + 3)
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        leaves.paint(mask, i, (255,), x0, y0)
        alpha = mask.astype(np.float32)[..., None] * np.float32(1 / 255)
        tex = _texture(rng, y1 - y0, x1 - x0, leaves.colours[i], r)
        roi = img[y0:y1, x0:x1]
        roi[:] = (roi + (tex - roi) * alpha + 0.5).astype(np.uint8)
    return img.astype(np.float32) / np.float32(255.0)


class _Leaves:
    """Every shape of a dead-leaves image, drawn from ``rng`` up front (numpy, not the painting loop,
    is where per-shape geometry is cheap), and `paint`, which puts shape ``i`` on a canvas."""

    @classmethod
    def draw(cls, rng: np.random.Generator, h: int, w: int, *, rmin: float, rmax: float, depth: float,
             texture_p: float, shape_p: tuple[float, float, float, float], max_shapes: int) -> _Leaves:
        a, b = rmin ** -2.0, rmax ** -2.0
        mean_r2 = 2.0 * math.log(rmax / rmin) / (a - b)  # E[r^2] under the r^-3 law
        n = int(min(max_shapes, math.ceil(depth * h * w / (math.pi * mean_r2))))
        radii = (a - rng.random(n) * (a - b)) ** -0.5  # inverse CDF of the r^-3 law
        centres = rng.random((n, 2)) * (w, h)
        kinds = rng.choice(4, size=n, p=np.asarray(shape_p, dtype=np.float64) / sum(shape_p))
        angles = rng.uniform(0, np.pi, n)
        aspect = rng.uniform(0.3, 1.0, n)
        colours = _random_colours(rng, n)
        textured = (radii > 6.0) & (rng.random(n) < texture_p)
        nverts = np.where(kinds == 2, 4, rng.integers(3, 8, n))
        verts = _leaf_vertices(rng, kinds, nverts, radii, aspect, angles, centres)
        return cls(radii, centres, kinds, angles, aspect, colours, textured, nverts, verts)

    def __init__(self, radii: np.ndarray, centres: np.ndarray, kinds: np.ndarray, angles: np.ndarray,
                 aspect: np.ndarray, colours: np.ndarray, textured: np.ndarray, nverts: np.ndarray,
                 verts: np.ndarray) -> None:
        self.n = len(radii)
        self.radii, self.centres, self.colours, self.verts = radii, centres, colours, verts
        # cv2's fixed point as Python ints and lists: numpy scalars would make the loop several times slower.
        self.cx, self.cy, self.r = _fixed(centres[:, 0]), _fixed(centres[:, 1]), _fixed(radii)
        self.ax2, self.deg = _fixed(radii * aspect), np.degrees(angles).tolist()
        self.kinds, self.nverts, self.textured = kinds.tolist(), nverts.tolist(), textured.tolist()
        self.colours_fill = [tuple(c) for c in np.round(colours).astype(np.int64).tolist()]

    def paint(self, canvas: np.ndarray, i: int, colour: tuple, ox: int = 0, oy: int = 0) -> None:
        """Shape ``i``, anti-aliased, in ``colour``, on a canvas whose top-left is image pixel (ox, oy)."""
        kind = self.kinds[i]
        if kind >= 2:
            pts = np.round((self.verts[i, :self.nverts[i]] - (ox, oy)) * _ONE).astype(np.int32)
            cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA, _SHIFT)
        elif kind == 0:
            cv2.circle(canvas, (self.cx[i] - ox * _ONE, self.cy[i] - oy * _ONE), self.r[i], colour, -1,
                       cv2.LINE_AA, _SHIFT)
        else:
            cv2.ellipse(canvas, (self.cx[i] - ox * _ONE, self.cy[i] - oy * _ONE), (self.r[i], self.ax2[i]),
                        self.deg[i], 0, 360, colour, -1, cv2.LINE_AA, _SHIFT)


def _fixed(v: np.ndarray) -> list[int]:
    return np.round(v * _ONE).astype(np.int64).tolist()


def _leaf_vertices(rng: np.random.Generator, kinds: np.ndarray, nverts: np.ndarray, radii: np.ndarray,
                   aspect: np.ndarray, angles: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Vertices of rectangles (4) and star-shaped polygons (3-7), rotated and placed, in image coordinates."""
    n = len(radii)
    phi = rng.uniform(0, 2 * np.pi, (n, 7))
    phi[np.arange(7)[None, :] >= nverts[:, None]] = np.inf
    phi = np.sort(phi, axis=1)
    phi[~np.isfinite(phi)] = 0.0  # unused slots; never drawn
    rho = radii[:, None] * rng.uniform(0.5, 1.0, (n, 7))
    verts = np.stack([rho * np.cos(phi), rho * np.sin(phi)], axis=2)
    box = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    rect = box[None] * np.stack([radii, radii * aspect], axis=1)[:, None, :]
    verts[kinds == 2, :4] = rect[kinds == 2]
    ca, sa = np.cos(angles)[:, None], np.sin(angles)[:, None]
    return np.stack([verts[..., 0] * ca - verts[..., 1] * sa,
                     verts[..., 0] * sa + verts[..., 1] * ca], axis=2) + centres[:, None, :]


# --------------------------------------------------------------------------------------------
# Frame averaging (GoPro recipe)
# --------------------------------------------------------------------------------------------


def average_frames(frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive sRGB frames in linear light; returns ``(blurred, sharp)``.

    A long exposure integrates the light of every instant, so the mean of high-frame-rate frames
    (7-13 is the GoPro recipe) in linear light is a real motion blur; the middle frame is the
    instant the blurred image is "centred" on, hence the target. Use an odd count; with an even
    one the earlier of the two middle frames is returned.
    """
    if len(frames) == 0:
        raise ValueError("average_frames needs at least one frame")
    first = _check_image(frames[0], "frame")
    acc = np.zeros(first.shape, dtype=np.float64)
    for f in frames:
        f = _check_image(f, "frame")
        if f.shape != first.shape:
            raise ValueError(f"all frames must have the same shape, got {first.shape} and {f.shape}")
        acc += srgb_to_linear(f)
    blurred = linear_to_srgb((acc / len(frames)).astype(np.float32))
    sharp = np.clip(_check_image(frames[(len(frames) - 1) // 2]), 0.0, 1.0)
    return blurred, sharp
