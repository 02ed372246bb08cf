"""The no-reference sharpness measure (`deblurcli.quality`): edge width in pixels.

Its docstring claims that a ramp L pixels wide gives E2 / E1 = 4 - 2 / L, so that L = 2 / (4 - R)
is read back exactly; these tests build such ramps and check it, then check what the batch
report and ``deblur inspect`` rely on: noise is taken out, blur makes the number grow, and the
same picture reads the same in any sample type.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from deblurcli.quality import TILE, directional_widths, edge_width, luma, sharpness


def ramps(width: int, size: int = 256) -> np.ndarray:
    """Vertical edges: in every 32 px tile one rising and one falling ramp ``width`` px wide, whole
    inside the tile (the measure's tiles start at pixel 2), on a 0.2 background."""
    t = (np.arange(size) - 2) % TILE
    up = np.clip((t - 4) / width, 0, 1)
    down = np.clip((t - (8 + width)) / width, 0, 1)
    row = 0.2 + 0.6 * (up - down)
    return np.repeat(row[None, :], size, axis=0).astype(np.float32)


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 12])
def test_a_ramp_reads_back_its_width(width: int) -> None:
    widths, sigma, _, _ = directional_widths(ramps(width))
    assert sigma < 1e-6
    assert widths[0.0] == pytest.approx(width, rel=1e-4)
    # Along a diagonal the same ramp is crossed over sqrt(2) times the distance.
    assert widths[45.0] == pytest.approx(width * math.sqrt(2), rel=1e-4)
    assert widths[135.0] == pytest.approx(width * math.sqrt(2), rel=1e-4)
    # Horizontal edges: the transpose reads the same width at 90 degrees.
    assert directional_widths(ramps(width).T.copy())[0][90.0] == pytest.approx(width, rel=1e-4)


@pytest.mark.parametrize("width", [2, 3, 5])
def test_white_noise_is_taken_out(width: int) -> None:
    rng = np.random.default_rng(1)
    noisy = (ramps(width) + rng.normal(0, 0.01, (256, 256))).astype(np.float32)
    widths, sigma, _, _ = directional_widths(noisy)
    assert sigma == pytest.approx(0.01, rel=0.05)
    assert widths[0.0] == pytest.approx(width, rel=0.05)
    # Without the correction the noise passes for fine detail: the same ratio reads much narrower.
    e1 = np.sum((noisy[:, 3:-1] - noisy[:, 2:-2]) ** 2, dtype=np.float64)
    e2 = np.sum((noisy[:, 4:] - noisy[:, 2:-2]) ** 2, dtype=np.float64)
    uncorrected = 2 / (4 - e2 / e1)
    assert abs(widths[0.0] - width) < 0.3 * abs(uncorrected - width)


def photo() -> np.ndarray:
    from skimage import data

    return data.camera()[128:384, 128:384].astype(np.float32) / 255.0


def box_blur(img: np.ndarray, n: int) -> np.ndarray:
    """Horizontal motion blur of n pixels (a box), edges replicated."""
    pad = np.pad(img, ((0, 0), (n, n)), mode="edge")
    c = np.cumsum(np.pad(pad, ((0, 0), (1, 0))), axis=1)
    out = (c[:, n:] - c[:, :-n]) / n
    start = n - n // 2
    return out[:, start:start + img.shape[1]].astype(np.float32)


def test_blur_widens_the_edges() -> None:
    img = photo()
    sharp = edge_width(img)
    assert sharp.width_px < 2.0  # the verdict's default threshold
    blurred = [edge_width(box_blur(img, n)) for n in (3, 7, 15)]
    assert sharp.width_px < blurred[0].width_px < blurred[1].width_px < blurred[2].width_px
    # Motion along x widens the horizontal direction most.
    assert max(blurred[2].widths, key=blurred[2].widths.get) == 0.0
    assert sharpness(img) > 0.5 > sharpness(box_blur(img, 7))


def test_the_same_picture_reads_the_same_in_any_sample_type() -> None:
    img = photo()
    u8 = np.round(img * 255).astype(np.uint8)
    u16 = u8.astype(np.uint16) * 257
    rgb = np.repeat(u8[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full_like(u8[..., None], 255)], axis=2)
    ref = edge_width(u8).width_px
    for arr in (u16, rgb, rgba, u8.astype(np.float32) / 255, u8.astype(np.float64) / 255):
        assert edge_width(arr).width_px == pytest.approx(ref, rel=1e-3)
    assert luma(rgb).dtype == np.float32 and float(luma(rgb).max()) <= 1.0


def test_too_small_to_measure() -> None:
    with pytest.raises(ValueError, match="at least 36x36"):
        edge_width(np.zeros((20, 100), np.uint8))


def test_the_verdicts_width_weighs_direction() -> None:
    """`EdgeWidth.blur_px`: at the same edge width, a blur along one direction (shake) reads wider
    than one in every direction (a soft texture, defocus)."""
    import cv2

    img = photo()
    shaken = edge_width(box_blur(img, 7))
    soft = edge_width(cv2.GaussianBlur(img, (0, 0), 2.0))
    assert shaken.anisotropy > 2 * soft.anisotropy and soft.anisotropy >= 1.0
    assert shaken.blur_px / shaken.width_px > 1.3 * soft.blur_px / soft.width_px
    assert soft.blur_px == pytest.approx(soft.width_px * (soft.anisotropy / 1.1) ** 0.3)
