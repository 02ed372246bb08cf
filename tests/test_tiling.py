"""Tiling: coverage, padding, blending weights, and tiled == whole-image agreement."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deblurcli.models import find_arch
from deblurcli.models.contract import CONV_MIN_TILE, SCAN_MIN_TILE
from deblurcli.tiling import (
    CPU_MAX_TILE,
    Tile,
    auto_tile,
    auto_tile_size,
    axis_positions,
    fitted_tile,
    pad_to_multiple,
    plan_tiles,
    restore_tiled,
    too_small_tile_warning,
)

SIZES = [1, 7, 31, 32, 33, 63, 64, 65, 100, 127, 129, 200, 301]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photo (non-square, odd size) when scikit-image is there, else a photo-like pattern."""
    try:
        from skimage import data

        img = data.chelsea()  # 300 x 451
    except Exception:  # noqa: BLE001 - optional test dependency
        rng = np.random.default_rng(0)
        y, x = np.mgrid[0:300, 0:451]
        img = np.stack([128 + 100 * np.sin(x / (9 + i) + y / (13 + i)) for i in range(3)], axis=2)
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255)
    return np.ascontiguousarray(img.astype(np.float32) / 255.0)


def to_t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


def from_t(x: torch.Tensor) -> np.ndarray:
    return x[0].numpy().transpose(1, 2, 0)


def box_blur(k: int):
    def fn(x: torch.Tensor) -> torch.Tensor:
        p = k // 2
        return F.avg_pool2d(F.pad(x, (p, p, p, p), mode="reflect"), k, stride=1)

    return fn


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def seam_mask(h: int, w: int, tile: int, overlap: int, half_band: int) -> np.ndarray:
    """True within `half_band` px of the middle of every overlap between neighbouring tiles."""
    mask = np.zeros((h, w), bool)
    for size, axis in ((h, 0), (w, 1)):
        starts = axis_positions(size, tile, overlap)
        length = min(tile, size)
        for a, b in itertools.pairwise(starts):
            centre = (b + a + length) // 2  # middle of [b, a + length)
            sl = slice(max(0, centre - half_band), centre + half_band)
            if axis == 0:
                mask[sl, :] = True
            else:
                mask[:, sl] = True
    return mask


# ------------------------------------------------------------------------------------------
# Planning


@pytest.mark.parametrize(("tile", "overlap"), [(16, 0), (16, 8), (16, 15), (32, 4), (64, 16), (100, 30)])
def test_plan_covers_every_pixel_with_equal_tiles(tile: int, overlap: int) -> None:
    sizes = SIZES if tile - overlap > 4 else SIZES[:8]
    for h, w in itertools.product(sizes, sizes[::3]):
        tiles = plan_tiles(h, w, tile, overlap)
        cover = np.zeros((h, w), int)
        for t in tiles:
            assert (t.h, t.w) == (min(tile, h), min(tile, w))  # equal, never shrunk
            assert t.y >= 0 and t.x >= 0 and t.y + t.h <= h and t.x + t.w <= w
            cover[t.slices] += 1
        assert cover.min() >= 1, (h, w, tile, overlap)
        assert max(t.y + t.h for t in tiles) == h and max(t.x + t.w for t in tiles) == w  # flush


@pytest.mark.parametrize(("size", "tile", "overlap"), [(s, t, o) for s in SIZES for t in (16, 50) for o in (0, 5, 12)])
def test_axis_overlap_at_least_requested(size: int, tile: int, overlap: int) -> None:
    starts = axis_positions(size, tile, overlap)
    assert starts[0] == 0
    assert starts == sorted(set(starts))
    if size > tile:
        assert starts[-1] == size - tile
        for a, b in itertools.pairwise(starts):
            assert a + tile - b >= overlap
    else:
        assert starts == [0]


def test_plan_edge_cases() -> None:
    assert plan_tiles(10, 20, 0, 8) == [Tile(0, 0, 10, 20)]  # tile 0: whole image
    assert plan_tiles(10, 20, 64, 8) == [Tile(0, 0, 10, 20)]  # image smaller than a tile
    assert len(plan_tiles(65, 64, 64, 8)) == 2
    with pytest.raises(ValueError):
        plan_tiles(100, 100, 32, 32)
    with pytest.raises(ValueError):
        plan_tiles(0, 100, 32, 8)


# ------------------------------------------------------------------------------------------
# Padding


def test_pad_to_multiple_reflects_and_crops_back() -> None:
    x = torch.arange(2 * 3 * 13 * 10, dtype=torch.float32).reshape(2, 3, 13, 10)
    y, (h, w) = pad_to_multiple(x, 8)
    assert (h, w) == (13, 10) and tuple(y.shape) == (2, 3, 16, 16)
    assert torch.equal(y[..., :13, :10], x)
    assert torch.equal(y[..., 13, :10], x[..., 11, :])  # reflection, not edge replication
    assert torch.equal(y[..., :13, 10], x[..., :, 8])
    z, size = pad_to_multiple(x, 1)
    assert z is x and size == (13, 10)
    same, _ = pad_to_multiple(torch.zeros(1, 3, 16, 24), 8)
    assert tuple(same.shape) == (1, 3, 16, 24)


@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 3), (1, 9), (5, 2)])
def test_pad_tiny_images_falls_back_to_replicate(h: int, w: int) -> None:
    x = torch.rand(1, 3, h, w)
    y, size = pad_to_multiple(x, 8)
    assert size == (h, w)
    assert y.shape[-2] % 8 == 0 and y.shape[-1] % 8 == 0
    assert torch.equal(y[..., :h, :w], x)
    assert torch.isfinite(y).all()


# ------------------------------------------------------------------------------------------
# Weights


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap"), [(100, 130, 32, 8), (65, 64, 64, 16), (301, 200, 50, 12), (40, 40, 16, 8)]
)
def test_weights_sum_to_one_and_never_vanish(h: int, w: int, tile: int, overlap: int) -> None:
    total = np.zeros((h, w), np.float64)
    for k, t in enumerate(plan_tiles(h, w, tile, overlap)):
        wt = applied_weight(h, w, tile, overlap, k)
        assert wt.min() >= 0 and not wt[outside(t, h, w)].any()  # a tile weighs nothing beyond itself
        total += wt
    assert total.min() > 0.999 and total.max() < 1.001
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def applied_weight(h: int, w: int, tile: int, overlap: int, k: int) -> np.ndarray:
    """The blending weight `restore_tiled` gives its k-th tile: the result when only that tile comes back as ones."""
    calls = itertools.count()

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x) if next(calls) == k else torch.zeros_like(x)

    out = restore_tiled(np.zeros((h, w, 3), np.float32), fn, tile=tile, overlap=overlap)
    assert out is not None and np.array_equal(out[..., 0], out[..., 2])
    return out[..., 0]


def outside(t: Tile, h: int, w: int) -> np.ndarray:
    mask = np.ones((h, w), bool)
    mask[t.slices] = False
    return mask


def test_weight_shape_ramps_only_inside_the_image() -> None:
    # 3 x 3 grid of 64-px tiles with 16-px overlaps on a 160 x 160 image
    tiles = plan_tiles(160, 160, 64, 16)
    corner, centre = (applied_weight(160, 160, 64, 16, k)[tiles[k].slices]
                      for k, t in enumerate(tiles) if (t.row, t.col) in ((0, 0), (1, 1)))
    # no ramp at the image border: the corner tile is alone (weight 1) at its outer edges
    assert corner[0, 0] == 1.0 and corner[0, 20] == 1.0 and corner[20, 0] == 1.0
    # the centre tile is fully trusted in its interior ...
    assert np.all(centre[16:-16, 16:-16] == 1.0)
    # ... gives zero weight to its outermost pixels (where the model lacks context) ...
    assert np.all(centre[:, :4] == 0) and np.all(centre[:4, :] == 0)
    # ... and ramps smoothly (monotone, small steps) between the two
    ramp = centre[32, :20]
    assert np.all(np.diff(ramp) >= 0) and np.max(np.diff(ramp)) < 0.25


# ------------------------------------------------------------------------------------------
# restore_tiled


CONFIGS = [(32, 8, 1), (64, 16, 8), (50, 12, 16), (0, 0, 8), (1000, 32, 8)]


@pytest.mark.parametrize(("tile", "overlap", "multiple"), CONFIGS)
def test_identity_returns_input(photo: np.ndarray, tile: int, overlap: int, multiple: int) -> None:
    img = photo[:157, :203]
    out = restore_tiled(img, lambda x: x, tile=tile, overlap=overlap, multiple=multiple)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, img, atol=1e-6, rtol=0)


def test_pointwise_fn_tiled_equals_whole(photo: np.ndarray) -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x**2 + 0.25 * torch.sin(7 * x)

    whole = from_t(fn(to_t(photo)))
    for tile, overlap in [(48, 8), (64, 32), (100, 0)]:
        out = restore_tiled(photo, fn, tile=tile, overlap=overlap, multiple=8)
        np.testing.assert_allclose(out, whole, atol=1e-6, rtol=0)


def test_box_blur_tiled_matches_whole_and_seams_are_invisible(photo: np.ndarray) -> None:
    fn = box_blur(9)
    whole = from_t(fn(to_t(photo)))
    tile, overlap = 64, 16
    out = restore_tiled(photo, fn, tile=tile, overlap=overlap, multiple=8, batch_size=4)
    assert psnr(out, whole) >= 40
    err = np.abs(out - whole).mean(axis=2)
    band = seam_mask(*err.shape, tile, overlap, overlap // 2)
    assert band.any() and (~band).any()
    assert err[band].mean() <= 1.5 * err[~band].mean() + 1e-6
    # stronger: the receptive field (radius 4) fits in the zero-weight margin (overlap / 4), so
    # tiling adds no error at all
    assert err.max() < 1e-5


def test_global_statistics_model_has_no_seam_concentration(photo: np.ndarray) -> None:
    """A model that normalises by tile statistics differs everywhere; blending must not add seams."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        return box_blur(9)(x) + 0.05 * (x.mean(dim=(2, 3), keepdim=True) - 0.5)

    whole = from_t(fn(to_t(photo)))
    tile, overlap = 96, 32
    out = restore_tiled(photo, fn, tile=tile, overlap=overlap, multiple=8)
    assert psnr(out, whole) >= 40
    err = np.abs(out - whole).mean(axis=2)
    band = seam_mask(*err.shape, tile, overlap, 4)
    away = ~seam_mask(*err.shape, tile, overlap, overlap)
    assert err[band].mean() <= 1.5 * err[away].mean()
    # and no step: the change from one tile's offset to the next is spread over the overlap
    hard = restore_tiled(photo, fn, tile=tile, overlap=0, multiple=8)  # tiles simply abutted
    for axis in (0, 1):
        jump = np.abs(np.diff(out - whole, axis=axis)).max()
        hard_jump = np.abs(np.diff(hard - whole, axis=axis)).max()
        assert jump < 0.2 * hard_jump


def test_wide_receptive_field_degrades_gracefully(photo: np.ndarray) -> None:
    """Receptive field (radius 12) wider than the zero-weight margin (8): still close, no hard seam."""
    fn = box_blur(25)
    img = photo[:160, :240]
    whole = from_t(fn(to_t(img)))
    out = restore_tiled(img, fn, tile=64, overlap=32, multiple=8)
    assert psnr(out, whole) >= 40
    hard = restore_tiled(img, fn, tile=64, overlap=0, multiple=8)  # no blending at all
    assert np.abs(out - whole).max() < 0.5 * np.abs(hard - whole).max()


def test_batch_size_does_not_change_the_result(photo: np.ndarray) -> None:
    fn = box_blur(5)
    one = restore_tiled(photo, fn, tile=64, overlap=16, multiple=8, batch_size=1)
    for bs in (2, 5, 64):
        np.testing.assert_allclose(
            restore_tiled(photo, fn, tile=64, overlap=16, multiple=8, batch_size=bs), one, atol=1e-6
        )


def test_fn_sees_only_padded_tiles_in_batches(photo: np.ndarray) -> None:
    seen: list[tuple[int, ...]] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        assert x.dtype == torch.float32 and x.is_contiguous()
        return x

    img = photo[:45, :203]  # shorter than a tile, height not a multiple of 16
    calls: list[tuple[int, int]] = []
    restore_tiled(img, fn, tile=50, overlap=8, multiple=16, batch_size=3, progress=lambda d, t: calls.append((d, t)))
    n = len(plan_tiles(45, 203, 48, 8))
    assert sum(s[0] for s in seen) == n and max(s[0] for s in seen) <= 3
    assert all(s[1:] == (3, 48, 48) for s in seen)  # tile 50 -> 48; height 45 padded to 48
    assert calls[-1] == (n, n) and [d for d, _ in calls] == sorted(d for d, _ in calls)

    seen.clear()
    restore_tiled(img, fn, tile=0, overlap=0, multiple=16)
    assert seen == [(1, 3, 48, 208)]


def test_bad_model_output_is_reported(photo: np.ndarray) -> None:
    with pytest.raises(RuntimeError, match="model returned"):
        restore_tiled(photo[:64, :64], lambda x: x[..., :-1, :], tile=32, overlap=8)
    with pytest.raises(ValueError):
        restore_tiled(photo[..., 0], lambda x: x, tile=32, overlap=8)


# ------------------------------------------------------------------------------------------
# Tile size helpers


def test_auto_tile_size() -> None:
    gib = 1 << 30
    t = auto_tile_size(4 * gib, 4000.0, 16)
    assert t % 16 == 0 and t * t * 4000 <= 0.6 * 4 * gib < (t + 16) ** 2 * 4000
    assert auto_tile_size(8 * gib, 4000.0, 16) > t  # more memory, bigger tile
    assert auto_tile_size(4 * gib, 4000.0, 16, batch_size=4) < t
    assert auto_tile_size(1 << 20, 4000.0, 16, minimum=256) == 256  # never below the minimum
    assert auto_tile_size(1 << 20, 4000.0, 48, minimum=100) == 144  # minimum rounded up
    assert auto_tile_size(64 * gib, 10.0, 8, maximum=1000) == 1000
    with pytest.raises(ValueError):
        auto_tile_size(gib, 0.0, 8)


def test_fitted_tile_runs_what_fits_whole_and_wastes_no_work() -> None:
    # A 1280x720 video frame has fewer pixels than a 1024 px tile: it runs whole, not as two tiles.
    assert fitted_tile(720, 1280, 1024, 32, 32) == 0
    assert fitted_tile(1024, 1024, 1024, 32, 32) == 0
    # 1100x1100 needs 2x2 tiles at 1024 px; 2x2 of the fitted size do it with far less work.
    t = fitted_tile(1100, 1100, 1024, 32, 32)
    assert t % 32 == 0 and t < 1024
    assert len(plan_tiles(1100, 1100, t, 32)) == len(plan_tiles(1100, 1100, 1024, 32)) == 4
    assert 4 * t * t < 0.4 * 4 * 1024 * 1024
    assert fitted_tile(1100, 1100, 1024, 32, 32, minimum=768) == 768  # never below the minimum
    for h, w, side, overlap, multiple in itertools.product([300, 1000, 1500, 4000], [257, 1280, 3001],
                                                           [256, 512, 1024], [0, 32, 100], [8, 32]):
        t = fitted_tile(h, w, side, overlap, multiple, minimum=256)
        if t == 0:
            assert h * w <= side * side
            continue
        assert t % multiple == 0 and 256 <= t <= side
        # never more tiles than the largest side would need, and every pixel still covered
        assert len(plan_tiles(h, w, t, overlap)) <= len(plan_tiles(h, w, side, overlap))
        cover = np.zeros((h, w), bool)
        for tile in plan_tiles(h, w, t, overlap):
            cover[tile.slices] = True
        assert cover.all()


def test_too_small_tile_warning() -> None:
    msg = too_small_tile_warning(128, SCAN_MIN_TILE, "XYScanNet")
    assert msg is not None and "128" in msg and "XYScanNet" in msg and f"--tile {SCAN_MIN_TILE}" in msg
    assert "\n" not in msg
    assert too_small_tile_warning(SCAN_MIN_TILE, SCAN_MIN_TILE, "EVSSM") is None
    assert too_small_tile_warning(0, SCAN_MIN_TILE) is None  # whole image
    assert too_small_tile_warning(64, CONV_MIN_TILE) is not None
    # ALGNet has a Mamba branch in every block: it needs as much context as the other scan models.
    assert all(find_arch(a).min_tile == SCAN_MIN_TILE for a in ("evssm", "algnet", "xyscannet", "scanunet"))
    assert CONV_MIN_TILE < SCAN_MIN_TILE


def test_auto_tile_caps_a_cpu_tile_and_never_goes_below_the_minimum() -> None:
    gib = 1 << 30
    common = dict(bytes_per_pixel=100.0, multiple=16, minimum=256, overlap=32)
    # plenty of memory: a GPU runs a 4000 px image as one tile, a CPU in tiles of at most CPU_MAX_TILE
    assert auto_tile(4000, 4000, free_bytes=64 * gib, **common) == 0
    cpu = auto_tile(4000, 4000, free_bytes=64 * gib, cpu=True, **common)
    assert 256 <= cpu <= CPU_MAX_TILE
    assert cpu == fitted_tile(4000, 4000, CPU_MAX_TILE, 32, 16, minimum=256)
    # hardly any memory: the architecture's minimum, not a tile too small to see the blur
    assert auto_tile(4000, 4000, free_bytes=1 << 20, **common) == 256
    # a small image fits whole anywhere
    assert auto_tile(300, 400, free_bytes=gib, cpu=True, **common) == 0


@pytest.mark.parametrize("tile,overlap,batch", [(32, 8, 1), (48, 16, 3), (40, 0, 2), (0, 0, 1)])
def test_stored_samples_and_strip_sink_give_the_float_result(tile: int, overlap: int, batch: int) -> None:
    """uint8/uint16 input converted tile by tile, output handed on in strips (even into the input
    itself) is bit-identical to whole-image float32 in and out."""
    rng = np.random.default_rng(7)
    blur = box_blur(5)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return blur(x) + 0.05 * (x.mean(dim=(2, 3), keepdim=True) - 0.5)  # tiles differ: blending matters
    for dtype, maxval in ((np.uint8, 255.0), (np.uint16, 65535.0)):
        stored = (rng.random((83, 101, 3)) * maxval).astype(dtype)
        ref = restore_tiled(np.divide(stored, np.float32(maxval), dtype=np.float32), fn, tile=tile, overlap=overlap,
                            batch_size=batch)
        strips: list[tuple[int, int]] = []
        got = np.empty_like(ref)

        def sink(y: int, rows: np.ndarray, got: np.ndarray = got, strips: list = strips) -> None:
            strips.append((y, len(rows)))
            got[y : y + len(rows)] = rows

        assert restore_tiled(stored, fn, tile=tile, overlap=overlap, batch_size=batch, sink=sink) is None
        np.testing.assert_array_equal(got, ref)
        assert strips[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(strips, strips[1:], strict=False))
        assert strips[-1][0] + strips[-1][1] == 83
        assert max(n for _, n in strips) <= (tile or 83)  # never more than one tile row of float rows

        inplace = stored.copy()

        def write_back(y: int, rows: np.ndarray, inplace: np.ndarray = inplace, maxval: float = maxval) -> None:
            inplace[y : y + len(rows)] = np.floor(np.clip(rows, 0, 1) * maxval + 0.5)

        restore_tiled(inplace, fn, tile=tile, overlap=overlap, batch_size=batch, sink=write_back)
        np.testing.assert_array_equal(inplace, np.floor(np.clip(ref, 0, 1) * maxval + 0.5).astype(dtype))

    grey = (rng.random((50, 60)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(
        restore_tiled(grey, fn, tile=tile, overlap=overlap),
        restore_tiled(np.repeat(grey[..., None] / np.float32(255), 3, axis=2).astype(np.float32), fn, tile=tile,
                      overlap=overlap),
    )
