"""A no-reference sharpness measure: how wide the photo's edges are, in pixels.

Why this measure and not NIQE: `deblur inspect` has to tell a blurred photo from a sharp one in a
fraction of a second on a 12 MP photo, and `--report` has to say whether a restored photo came
out sharper than its input. Both need a number that moves with blur and is cheap; NIQE needs a
fitted natural-scene model and sees noise and compression as much as blur.

The idea: along a direction u, compare the energy of one-pixel differences I(x+u) - I(x) with
that of two-pixel differences I(x+2u) - I(x). At an ideal step edge both see the whole step once
(twice for the two-pixel one, on two positions), so E2 / E1 = 2; across a ramp L pixels wide each
two-pixel difference is twice a one-pixel one, and the ratio is exactly R = 4 - 2 / L. Inverting
gives the edge width L = 2 / (4 - R) in pixels, with no threshold, no edge detector and no
dependence on contrast. Motion blur widens edges along the shake, so the widest of four
directions (0, 45, 90, 135 degrees) is the photo's edge width; noise is white, adds the same
2 sigma^2 to both energies, and is taken out with sigma measured on the flattest tiles.

Only the most textured tiles are measured: flat sky says nothing about focus, and on a 12 MP
photo reading a few hundred 32 px tiles at full resolution is what keeps the verdict fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TILE = 32  # side of a measured tile at full resolution
MAX_TILES = 384  # textured tiles measured: ~400 k pixels whatever the photo's size
TEXTURED_SHARE = 0.2  # at most this share of the photo's tiles counts as textured
SCORE_SAMPLES = 250_000  # samples of the reduced picture used to rank tiles
SCALES = (1, 2, 4)  # resolutions measured: full, half, quarter
WIDTH_CAP = 50.0  # widths beyond this are "no edges left"; keeps the score finite
_DIRECTIONS = ((0, 1, 0.0), (-1, 1, 45.0), (-1, 0, 90.0), (-1, -1, 135.0))  # (dy, dx, degrees, y up)
#: Rec. 709 luma weights (R, G, B): the channel mix with the best signal-to-noise ratio for edges.
#: Owned here, where numpy alone is imported (the verdict must not wait for torch); the deconvolution
#: engine mixes its luminance with the same weights (`deblurcli.deconv._ops.LUMA`).
LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
#: `EdgeWidth.blur_px`: the edge width times (anisotropy / ANISOTROPY_REF) ** ANISOTROPY_POWER, where
#: anisotropy is the widest direction's width over the narrowest's. Why: camera shake widens edges
#: along one direction, a soft or small-scale texture in all of them, so at equal width a
#: directional photo is more likely shaken. Of the powers 0-0.5 (steps of 0.05) this one judged the
#: most calibration photos right: 128 of 132, against 126 by width alone and 127 with 0.25 or 0.35
#: (``benchmarks/inspect/calibrate.py --verdict``: results/calibrate_verdict.json). The reference,
#: a round 1.1 (directions within 10% of each other), makes a photo of near-equal widths read its
#: plain width, so the threshold stays an edge width in pixels (1.9: the best thresholds with this
#: power are 1.90-1.91; the margin is thin, the nearest sharp and shaken calibration photos read
#: 1.893 and 1.911).
ANISOTROPY_REF = 1.1
ANISOTROPY_POWER = 0.3


@dataclass(frozen=True)
class EdgeWidth:
    """The measurement behind `sharpness`.

    ``width_px``: edge width of the blurriest direction, in pixels (1.3-1.8 on the benchmark's
    sharp photos, more when blurred); ``widths``: width per direction, degrees counter-clockwise
    from the x axis with y up; ``noise_sigma``: noise measured on the flattest tiles (0..1 scale); ``tiles``: how
    many tiles were measured; ``texture``: their mean squared one-pixel difference (near zero
    means there was nothing to measure on).
    """

    width_px: float
    widths: dict[float, float]
    noise_sigma: float
    tiles: int
    texture: float

    @property
    def sharpness(self) -> float:
        return 1.0 / self.width_px

    @property
    def anisotropy(self) -> float:
        """Widest direction's width over the narrowest's (1 = the same in every direction)."""
        return max(self.widths.values()) / max(min(self.widths.values()), 1e-6)

    @property
    def blur_px(self) -> float:
        """What the blurred-or-not verdict compares with its threshold: the edge width, lengthened
        (or shortened) by how directional it is (see ANISOTROPY_POWER)."""
        return self.width_px * (self.anisotropy / ANISOTROPY_REF) ** ANISOTROPY_POWER


def _scale_of(arr: np.ndarray) -> float:
    if arr.dtype == np.uint8:
        return 255.0
    if arr.dtype == np.uint16:
        return 65535.0
    if arr.dtype.kind in "iu":
        return float(np.iinfo(arr.dtype).max)
    return 1.0


def luma(arr: np.ndarray) -> np.ndarray:
    """HxW float32 luminance in [0, 1] of grey or RGB(A) samples of any integer or float type."""
    a = np.asarray(arr)
    scale = np.float32(1.0 / _scale_of(a))
    if a.ndim == 2:
        return a.astype(np.float32) * scale
    if a.ndim == 3 and a.shape[2] in (1, 2):  # grey, grey + alpha
        return a[..., 0].astype(np.float32) * scale
    if a.ndim == 3 and a.shape[2] >= 3:
        return (a[..., :3].astype(np.float32) @ LUMA) * scale
    raise ValueError(f"pixels must be HxW or HxWxC, got shape {a.shape}")


def _tile_scores(arr: np.ndarray, ty: int, tx: int) -> np.ndarray:
    """Gradient energy of each TILE x TILE tile, from a subsampled luminance (ranking only)."""
    h, w = arr.shape[:2]
    step = max(1, min(TILE // 4, int(math.sqrt(h * w / SCORE_SAMPLES))))
    while TILE % step:
        step -= 1
    g = luma(arr[: ty * TILE: step, : tx * TILE: step])
    e = np.zeros_like(g)
    e[:, :-1] += np.diff(g, axis=1) ** 2
    e[:-1, :] += np.diff(g, axis=0) ** 2
    n = TILE // step
    return e.reshape(ty, n, tx, n).sum(axis=(1, 3))


def _stack(arr: np.ndarray, cells: np.ndarray, tx: int, margin: int) -> np.ndarray:
    """The chosen tiles (grid from pixel (2, 2)), each with ``margin`` <= 2 extra pixels on every
    side, as (n, T+2m, T+2m) luminance."""
    side = TILE + 2 * margin
    out = np.empty((cells.size, side, side), dtype=np.float32)
    for i, c in enumerate(cells):
        y0 = 2 + (int(c) // tx) * TILE - margin
        x0 = 2 + (int(c) % tx) * TILE - margin
        out[i] = luma(arr[y0:y0 + side, x0:x0 + side])
    return out


def _noise_sigma(tiles: np.ndarray) -> float:
    """White-noise sigma (Immerkaer's Laplacian-difference estimator, median form) on flat tiles."""
    if tiles.size == 0:
        return 0.0
    t = tiles
    r = (4 * t[:, 1:-1, 1:-1] - 2 * (t[:, :-2, 1:-1] + t[:, 2:, 1:-1] + t[:, 1:-1, :-2] + t[:, 1:-1, 2:])
         + t[:, :-2, :-2] + t[:, :-2, 2:] + t[:, 2:, :-2] + t[:, 2:, 2:])
    # |r| of Gaussian noise has mean sigma * 6 * sqrt(2/pi); the median of a half-normal is 0.6745 of
    # its scale, and the median ignores the few edges a flat tile still has.
    return float(np.median(np.abs(r)) / (0.6745 * 6.0))


def directional_widths(arr: np.ndarray) -> tuple[dict[float, float], float, int, float]:
    """Width per direction, noise sigma, tiles measured and texture, at this one scale (no reduction).

    The measurement itself, public so that its claim can be checked: a ramp L pixels wide whose
    tiles hold it whole measures exactly L along its direction (L * sqrt 2 along the diagonals,
    the length of a diagonal crossing). A ramp cut by a tile's border reads wider, which is why
    the 32 px tiles are measured at coarser scales too (`edge_width`).
    """
    ty, tx = (arr.shape[0] - 4) // TILE, (arr.shape[1] - 4) // TILE
    scores = _tile_scores(arr[2:, 2:], ty, tx).ravel()
    order = np.argsort(scores, kind="stable")
    n = max(1, min(MAX_TILES, int(math.ceil(TEXTURED_SHARE * scores.size))))
    textured = order[-n:]
    flat_pick = order[: max(1, scores.size // 4)]  # the flattest quarter: noise, not structure
    flat = flat_pick[:: max(1, flat_pick.size // 64)][:64]
    sigma = _noise_sigma(_stack(arr, flat, tx, 1))
    t = _stack(arr, textured, tx, 2)  # margin 2: room for two-pixel differences
    c = t[:, 2:2 + TILE, 2:2 + TILE]
    noise2 = 2.0 * sigma * sigma * c.size
    widths: dict[float, float] = {}
    e1_all = 0.0
    for dy, dx, deg in _DIRECTIONS:
        s1 = t[:, 2 + dy:2 + dy + TILE, 2 + dx:2 + dx + TILE] - c
        s2 = t[:, 2 + 2 * dy:2 + 2 * dy + TILE, 2 + 2 * dx:2 + 2 * dx + TILE] - c
        e1 = float(np.einsum("ijk,ijk->", s1, s1, dtype=np.float64)) - noise2
        e2 = float(np.einsum("ijk,ijk->", s2, s2, dtype=np.float64)) - noise2
        e1_all += max(e1, 0.0)
        step = math.hypot(dy, dx)
        if e1 <= 1e-9:
            widths[deg] = WIDTH_CAP
            continue
        gap = 4.0 - e2 / e1
        widths[deg] = WIDTH_CAP if gap <= 2.0 / WIDTH_CAP else min(WIDTH_CAP, max(1.0, 2.0 / gap * step))
    return widths, sigma, int(textured.size), e1_all / (4 * c.size)


def edge_width(pixels: np.ndarray) -> EdgeWidth:
    """Measure the edge width of a photo (HxW or HxWxC samples, integer or float in [0, 1]).

    Measured at full, half and quarter resolution (box-averaged), and the widest of the three,
    each in its own pixels, is the photo's: at full resolution noise can drown the faint slopes
    a long shake leaves (one-pixel differences of a 30 px ramp are 1/30 of the step), while
    averaging 4x4 pixels divides the noise by four and shortens the ramp to a width the measure
    reads well. A sharp photo stays sharp when reduced, so the smaller scales cost it nothing.
    """
    import cv2

    arr = np.asarray(pixels)
    if arr.ndim not in (2, 3) or arr.shape[0] < TILE + 4 or arr.shape[1] < TILE + 4:
        raise ValueError(f"need an image of at least {TILE + 4}x{TILE + 4} pixels, got shape {arr.shape}")
    if arr.dtype not in (np.uint8, np.uint16, np.float32):
        arr = arr.astype(np.float32) / np.float32(_scale_of(arr)) if arr.dtype.kind in "iub" else \
            arr.astype(np.float32)
    best: tuple[dict[float, float], float, int, float] | None = None
    level = arr
    for factor in SCALES:
        if factor > 1:
            h, w = level.shape[:2]
            if h // 2 < TILE + 4 or w // 2 < TILE + 4:
                break
            level = cv2.resize(np.ascontiguousarray(level), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        m = directional_widths(level)
        if best is None or max(m[0].values()) > max(best[0].values()):
            best = m
    assert best is not None
    widths, sigma, tiles, texture = best
    return EdgeWidth(width_px=max(widths.values()), widths=widths, noise_sigma=sigma, tiles=tiles, texture=texture)


def sharpness(pixels: np.ndarray) -> float:
    """No-reference sharpness, higher = sharper: 1 / (edge width in pixels), in (0, 1].

    0.55-0.75 on the benchmark's sharp photos; under 1 / 1.9 = 0.53 counts as blurred. It compares
    versions of the same photo (before/after a restoration) well; across different photos it also
    reflects how much fine detail the scene has.
    """
    return round(edge_width(pixels).sharpness, 4)


def sharp_note(blur_px: float, threshold: float) -> str:
    """"judged sharp (blur X px <= T)" with X rounded down: rounded to the nearest, a photo at 1.8996
    px would read "1.90 px <= 1.9", as if it had been judged by a different number."""
    return f"judged sharp (blur {math.floor(blur_px * 100 + 1e-6) / 100:.2f} px <= {threshold:g})"
