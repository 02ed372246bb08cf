"""Tests for synthetic blur data: kernels, blur physics, dead leaves, pair writing, the dataset."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deblurcli import synth
from deblurcli.errors import DeblurError
from deblurcli.train.synthetic import SyntheticPairs


def _centroid(k: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[: k.shape[0], : k.shape[1]]
    k = k.astype(np.float64)
    return float((k * yy).sum() / k.sum()), float((k * xx).sum() / k.sum())


def _save_png(path: Path, img: np.ndarray) -> None:
    cv2.imwrite(str(path), (np.clip(img, 0, 1)[..., ::-1] * 255 + 0.5).astype(np.uint8))


def _load_png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint8 and img.ndim == 3
    return img[..., ::-1].astype(np.float32) / 255


# ------------------------------------------------------------------------------------------- kernels


def test_kernel_size_is_odd_and_spans_range() -> None:
    rng = np.random.default_rng(0)
    sizes = {synth.random_kernel_size(rng) for _ in range(400)}
    assert sizes == set(range(7, 32, 2))
    assert {synth.random_kernel_size(rng, 8, 10) for _ in range(50)} == {9}
    with pytest.raises(ValueError):
        synth.random_kernel_size(rng, 8, 8)


@pytest.mark.parametrize("seed", range(12))
def test_kernel_is_normalised_nonnegative_centred(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = synth.random_kernel_size(rng)
    k = synth.random_kernel(size, rng)
    assert k.dtype == np.float32 and k.shape == (size, size)
    assert 7 <= size <= 31
    assert abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-6
    assert (k >= 0).all()
    cy, cx = _centroid(k)
    c = (size - 1) / 2
    assert abs(cy - c) < 1e-3 and abs(cx - c) < 1e-3
    # A shake, not a dot: the support spreads over a good part of the kernel.
    ys, xs = np.nonzero(k > 1e-4)
    assert max(np.ptp(ys), np.ptp(xs)) >= 0.5 * (size - 1) - 1


def test_kernel_is_deterministic_and_rejects_even_size() -> None:
    a = synth.random_kernel(21, np.random.default_rng(5))
    b = synth.random_kernel(21, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synth.random_kernel(21, np.random.default_rng(6)))
    with pytest.raises(ValueError):
        synth.random_kernel(8, np.random.default_rng(0))
    one = synth.random_kernel(1, np.random.default_rng(0))
    assert one.shape == (1, 1) and one[0, 0] == 1


# ----------------------------------------------------------------------------------------------- blur


def test_blur_of_constant_image_is_constant() -> None:
    rng = np.random.default_rng(1)
    img = np.full((40, 50, 3), (0.2, 0.5, 0.9), dtype=np.float32)
    k = synth.random_kernel(15, rng)
    for linear in (True, False):
        out = synth.blur_image(img, k, linear_light=linear)
        assert out.dtype == np.float32 and out.shape == img.shape
        np.testing.assert_allclose(out, img, atol=1e-5)
    ks = [synth.random_kernel(s, rng) for s in (7, 11, 21)]
    np.testing.assert_allclose(synth.spatially_varying_blur(img, ks, rng), img, atol=1e-5)


def test_blur_is_true_convolution() -> None:
    """An impulse convolved with k reproduces k itself (correlation would give it flipped)."""
    k = np.zeros((7, 7), dtype=np.float32)
    k[1, 5], k[3, 3], k[6, 0] = 0.5, 0.3, 0.2
    img = np.zeros((21, 21, 3), dtype=np.float32)
    img[10, 10] = 1.0
    out = synth.blur_image(img, k, linear_light=False)
    np.testing.assert_allclose(out[7:14, 7:14, 0], k, atol=1e-6)


def test_linear_light_blur_brightens_edge_midtones() -> None:
    """Half black + half white blends to 50% *light*, which is sRGB ~0.735, not 0.5."""
    img = np.zeros((9, 40, 3), dtype=np.float32)
    img[:, 20:] = 1.0
    k = np.zeros((9, 9), dtype=np.float32)
    k[4, :] = 1 / 9  # horizontal box
    lin = synth.blur_image(img, k)[4]
    srgb = synth.blur_image(img, k, linear_light=False)[4]
    edge = slice(16, 24)
    assert (lin[edge] > srgb[edge] + 0.05).all()
    assert (lin >= srgb - 1e-6).all()
    # 4/9 white at column 19 (window 15..23): linear mean 4/9 -> sRGB
    expected = 1.055 * (4 / 9) ** (1 / 2.4) - 0.055  # IEC 61966-2-1 encoding, written out: 0.69751
    np.testing.assert_allclose(lin[19], expected, atol=1e-4)
    np.testing.assert_allclose(srgb[19], 4 / 9, atol=1e-4)
    # Flat regions far from the edge stay flat.
    assert lin[:10].max() < 1e-6 and lin[30:].min() > 1 - 1e-6


# (sRGB, linear) from the IEC 61966-2-1 formulas, computed independently of the code under test.
SRGB_LINEAR = [(0.0, 0.0), (0.02, 0.0015479876), (0.04045, 0.0031308050), (0.2, 0.0331047666),
               (0.5, 0.2140411405), (0.8, 0.6038273389), (1.0, 1.0)]


def test_srgb_conversions_match_the_standard_and_round_trip() -> None:
    srgb, lin = (np.array(v, dtype=np.float32) for v in zip(*SRGB_LINEAR, strict=True))
    np.testing.assert_allclose(synth.srgb_to_linear(srgb), lin, atol=2e-6)
    np.testing.assert_allclose(synth.linear_to_srgb(lin), srgb, atol=2e-6)
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(synth.linear_to_srgb(synth.srgb_to_linear(x)), x, atol=2e-6)


def test_spatially_varying_blur_mixes_kernels() -> None:
    rng = np.random.default_rng(3)
    img = synth.dead_leaves((64, 64), rng)
    ks = [synth.random_kernel(15, rng) for _ in range(2)]
    out = synth.spatially_varying_blur(img, ks, np.random.default_rng(9))
    a, b = (synth.blur_image(img, k) for k in ks)
    assert out.shape == img.shape and 0 <= out.min() and out.max() <= 1
    assert not np.allclose(out, a, atol=1e-3) and not np.allclose(out, b, atol=1e-3)
    masks = synth.recipes._smooth_masks((30, 40), 3, np.random.default_rng(0))
    assert masks.shape == (3, 30, 40) and (masks >= 0).all()
    np.testing.assert_allclose(masks.sum(0), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------- degradations


def test_noise_is_signal_dependent_and_deterministic() -> None:
    img = np.concatenate([np.full((64, 64, 3), 0.1, np.float32), np.full((64, 64, 3), 0.8, np.float32)], 1)
    a = synth.add_noise(img, np.random.default_rng(0), (0.002, 0.002), shot=(0.002, 0.002))
    b = synth.add_noise(img, np.random.default_rng(0), (0.002, 0.002), shot=(0.002, 0.002))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert abs(float(a.mean()) - float(img.mean())) < 0.01
    assert a[:, :64].std() > 0.005 and a[:, 64:].std() > 0.005


def test_jpeg_round_trip() -> None:
    img = synth.dead_leaves((48, 64), np.random.default_rng(2))
    lo, hi = synth.jpeg(img, 20), synth.jpeg(img, 100)
    assert lo.shape == img.shape and lo.dtype == np.float32
    assert np.abs(hi - img).mean() < np.abs(lo - img).mean()
    assert np.abs(lo - img).mean() > 1e-3


def test_degrade_is_deterministic() -> None:
    img = synth.dead_leaves((64, 64), np.random.default_rng(0))
    a, ka = synth.degrade(img, np.random.default_rng(11))
    b, kb = synth.degrade(img, np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ka, kb)
    c, _ = synth.degrade(img, np.random.default_rng(12))
    assert not np.array_equal(a, c)
    assert a.shape == img.shape and a.dtype == np.float32


def test_degrade_spatially_varying_returns_kernel_stack() -> None:
    img = synth.dead_leaves((48, 48), np.random.default_rng(0))
    out, ks = synth.degrade(img, np.random.default_rng(1), spatially_varying_p=1.0, noise_p=0, jpeg_p=0,
                            kernel_size=(7, 15))
    assert ks.ndim == 3 and ks.shape[0] in (2, 3) and ks.shape[1] == ks.shape[2] <= 15
    for k in ks:
        assert abs(float(k.sum()) - 1) < 1e-6
        cy, cx = _centroid(k)
        assert abs(cy - (k.shape[0] - 1) / 2) < 1e-3 and abs(cx - (k.shape[1] - 1) / 2) < 1e-3
    _, k1 = synth.degrade(img, np.random.default_rng(1), spatially_varying_p=0.0, kernel_size=(9, 9))
    assert k1.shape == (9, 9)


# ------------------------------------------------------------------------------------- dead leaves


def test_dead_leaves_shape_range_determinism() -> None:
    a = synth.dead_leaves((96, 128), np.random.default_rng(4))
    assert a.shape == (96, 128, 3) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, synth.dead_leaves((96, 128), np.random.default_rng(4)))
    assert not np.array_equal(a, synth.dead_leaves((96, 128), np.random.default_rng(5)))


def test_dead_leaves_has_edges_at_every_scale() -> None:
    img = synth.dead_leaves((256, 256), np.random.default_rng(7)).mean(axis=2)
    gy, gx = np.gradient(img)
    assert (np.hypot(gx, gy) < 1e-3).mean() > 0.1  # flat interiors exist at full resolution
    for level in range(4):  # 256, 128, 64, 32 px: edges of every contrast survive downscaling
        gy, gx = np.gradient(img)
        mag = np.hypot(gx, gy)
        strong = (mag > 0.05).mean()
        assert 0.1 < strong < 0.9, (level, strong)
        p50, p99 = np.percentile(mag, [50, 99])
        assert p99 > 0.1 and p99 > 3 * p50, (level, p50, p99)  # heavy-tailed, like natural images
        hist, _ = np.histogram(mag, bins=20, range=(0, 0.5))
        assert (hist > 0).sum() >= 12, (level, hist)  # a spread of edge contrasts, not two values
        img = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    # Textures (stripes, noise, gradients) are there, not only flat shapes.
    colours = np.unique((synth.dead_leaves((256, 256), np.random.default_rng(7)) * 255).astype(np.uint8)
                        .reshape(-1, 3), axis=0)
    assert len(colours) > 2000


def test_dead_leaves_is_fast() -> None:
    synth.dead_leaves((256, 256), np.random.default_rng(0))  # warm-up
    best = min(_cpu_time(lambda i=i: synth.dead_leaves((256, 256), np.random.default_rng(i)))
               for i in range(3))
    assert best < 0.2, best


def _cpu_time(fn) -> float:
    """CPU time, not wall time: the test machine is shared, so wall time measures the neighbours."""
    t = time.process_time()
    fn()
    return time.process_time() - t


# ---------------------------------------------------------------------------------- frame averaging


def test_average_frames_is_linear_mean_with_middle_target() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.random((8, 10, 3), dtype=np.float32) for _ in range(7)]
    blurred, sharp = synth.average_frames(frames)
    expected = synth.linear_to_srgb(np.mean([synth.srgb_to_linear(f) for f in frames], axis=0))
    np.testing.assert_allclose(blurred, expected, atol=1e-5)
    np.testing.assert_array_equal(sharp, frames[3])
    # Averaging black and white frames gives 50% light, not sRGB 0.5.
    bw = [np.zeros((2, 2, 3), np.float32), np.ones((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.float32),
          np.ones((2, 2, 3), np.float32)]
    np.testing.assert_allclose(synth.average_frames(bw)[0], synth.linear_to_srgb(np.float32(0.5)), atol=1e-5)
    with pytest.raises(ValueError):
        synth.average_frames([])
    with pytest.raises(ValueError):
        synth.average_frames([frames[0], frames[0][:4]])


# ------------------------------------------------------------------------------------- write_pairs


@pytest.fixture
def sharp_dir(tmp_path: Path) -> Path:
    d = tmp_path / "sharp_in"
    d.mkdir()
    _save_png(d / "alpha.png", synth.dead_leaves((60, 80), np.random.default_rng(1)))
    _save_png(d / "beta.png", synth.dead_leaves((50, 70), np.random.default_rng(2)))
    (d / "broken.jpg").write_bytes(b"not a jpeg at all")
    (d / "notes.txt").write_text("ignored")
    return d


def test_write_pairs_layout_and_reports_bad_images(sharp_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    events: list[synth.SynthProgress] = []
    n = synth.write_pairs(sharp_dir, out, count_per_image=2, seed=3, progress=events.append)
    assert n == 4
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "beta"]
    for seq, (h, w) in (("alpha", (60, 80)), ("beta", (50, 70))):
        for sub in ("blur", "sharp"):
            assert sorted(p.name for p in (out / seq / sub).iterdir()) == ["000000.png", "000001.png"]
        assert sorted(p.name for p in (out / seq / "kernels").iterdir()) == ["000000.npy", "000001.npy"]
        for i in range(2):
            blur = _load_png(out / seq / "blur" / f"{i:06d}.png")
            sharp = _load_png(out / seq / "sharp" / f"{i:06d}.png")
            assert blur.shape == sharp.shape == (h, w, 3)
            assert not np.array_equal(blur, sharp)
            k = np.load(out / seq / "kernels" / f"{i:06d}.npy")
            assert abs(float(k.sum(axis=(-2, -1)).mean()) - 1) < 1e-5
    np.testing.assert_allclose(_load_png(out / "alpha" / "sharp" / "000000.png"),
                               _load_png(sharp_dir / "alpha.png"))
    assert [e.done for e in events] == [1, 2, 3] and {e.total for e in events} == {3}
    bad = [e for e in events if e.error]
    assert len(bad) == 1 and "broken.jpg" in bad[0].error and bad[0].written == 0
    assert not list(out.rglob("*.tmp"))


def test_write_pairs_reads_what_opencv_cannot(sharp_dir: Path, tmp_path: Path) -> None:
    """A HEIC among the sharp photos (OpenCV's wheels decode no HEIC) is read by our own reader."""
    from deblurcli.imageio import FORMAT_EXTENSIONS

    if ".heic" not in FORMAT_EXTENSIONS:
        pytest.skip("pillow-heif is not installed")
    from PIL import Image as PILImage

    grey = (synth.dead_leaves((40, 56), np.random.default_rng(4))[..., 0] * 255).astype(np.uint8)
    PILImage.fromarray(grey).save(sharp_dir / "gamma.heic", quality=100)
    events: list[synth.SynthProgress] = []
    synth.write_pairs(sharp_dir, tmp_path / "out", count_per_image=1, seed=3, progress=events.append)
    assert [e.error for e in events if e.error and "gamma" in e.error] == []
    sharp = _load_png(tmp_path / "out" / "gamma" / "sharp" / "000000.png")
    assert sharp.shape == (40, 56, 3)  # grey, as three equal channels
    assert np.abs(sharp[..., 0].astype(np.float32) - sharp[..., 2]).max() <= 1 / 255 + 1e-6
    assert [e for e in events if e.error and "broken.jpg" in e.error]


def test_write_pairs_is_deterministic_and_crops(sharp_dir: Path, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synth.write_pairs(sharp_dir, a, seed=7, crop=32)
    synth.write_pairs(sharp_dir, b, seed=7, crop=32)
    synth.write_pairs(sharp_dir, c, seed=8, crop=32)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes()
    assert _load_png(a / "alpha" / "blur" / "000000.png").shape == (32, 32, 3)
    assert (a / "alpha/blur/000000.png").read_bytes() != (c / "alpha/blur/000000.png").read_bytes()


def test_write_pairs_errors(tmp_path: Path) -> None:
    with pytest.raises(DeblurError, match="not found"):
        synth.write_pairs(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeblurError, match="no images"):
        synth.write_pairs(tmp_path / "empty", tmp_path / "out")


def test_write_pairs_frames_recipe(tmp_path: Path) -> None:
    src = tmp_path / "videos"
    seq = src / "clip01"
    seq.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = [rng.random((12, 16, 3), dtype=np.float32) for _ in range(30)]
    for i, f in enumerate(frames):
        _save_png(seq / f"f{i}.png", f)  # unpadded numbers: natural sort must keep f2 before f10
    (src / "tiny").mkdir()
    _save_png(src / "tiny" / "0.png", frames[0])
    frames = [_load_png(seq / f"f{i}.png") for i in range(30)]
    out = tmp_path / "out"
    events: list[synth.SynthProgress] = []
    n = synth.write_pairs(src, out, frames=True, seed=1, progress=events.append)
    names = sorted(p.name for p in (out / "clip01" / "blur").iterdir())
    assert n == len(names) >= 2 and names[0] == "000000.png"
    assert names == sorted(p.name for p in (out / "clip01" / "sharp").iterdir())
    assert not (out / "clip01" / "kernels").exists()
    assert [e.error is None for e in events] == [True, False]  # "tiny" has too few frames
    # Reconstruct the windows: consecutive, non-overlapping, 7-13 frames, middle frame as target.
    start = 0
    for name in names:
        sharp = _load_png(out / "clip01" / "sharp" / name)
        blur = _load_png(out / "clip01" / "blur" / name)
        matches = [c for c in range(start + 3, start + 7)
                   if np.array_equal(frames[c], sharp) and c + (c - start) < len(frames)]
        assert len(matches) == 1, name
        mid = matches[0]
        count = 2 * (mid - start) + 1
        assert count in (7, 9, 11, 13)
        expected, _ = synth.average_frames(frames[start:start + count])
        np.testing.assert_allclose(blur, expected, atol=1 / 255 + 1e-6)
        start += count


# ------------------------------------------------------------------------------------ SyntheticPairs


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(synth.dead_leaves((70, 90), rng) * 255).astype(np.uint8) for _ in range(3)]


def test_synthetic_pairs_shapes_and_determinism(tmp_path: Path) -> None:
    imgs = _images()
    path = tmp_path / "one.png"
    cv2.imwrite(str(path), imgs[0][..., ::-1])
    kw = dict(patch_size=(32, 48), samples_per_epoch=6, dead_leaves_fraction=0.3,
              degrade_kwargs={"kernel_size": (7, 15)})
    ds = SyntheticPairs([*imgs, path], seed=1, **kw)
    blur, sharp = ds[0]
    assert isinstance(blur, torch.Tensor) and blur.dtype == torch.float32
    assert blur.shape == sharp.shape == (3, 32, 48)
    assert 0 <= float(blur.min()) and float(blur.max()) <= 1
    same = SyntheticPairs([*imgs, path], seed=1, **kw)
    other = SyntheticPairs([*imgs, path], seed=2, **kw)
    for i in range(len(ds)):
        assert all(torch.equal(x, y) for x, y in zip(ds[i], same[i], strict=True))
    assert not torch.equal(ds[0][1], other[0][1])
    assert not torch.equal(ds[0][1], ds[1][1])
    ds.set_epoch(1)
    e1 = ds[0]
    assert not torch.equal(e1[1], same[0][1])
    same.set_epoch(1)
    assert all(torch.equal(x, y) for x, y in zip(e1, same[0], strict=True))  # a resume reproduces it
    with pytest.raises(IndexError):
        ds[len(ds)]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_synthetic_pairs_workers_draw_distinct_reproducible_samples() -> None:
    ds = SyntheticPairs(_images(), patch_size=24, samples_per_epoch=8, seed=5,
                              degrade_kwargs={"kernel_size": (7, 11)})
    ds.set_epoch(2)

    def run(workers: int) -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers,
                                             multiprocessing_context="fork" if workers else None)  # fast
        return [s for _, sharp in loader for s in sharp]

    serial, parallel = run(0), run(2)
    assert len(serial) == 8
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a, b)  # the same samples whichever worker draws them
    flat = torch.stack(serial).flatten(1)
    for i in range(8):  # and no two workers (or indices) share a sample
        for j in range(i + 1, 8):
            assert not torch.equal(flat[i], flat[j])


def test_synthetic_pairs_dead_leaves_only_and_small_images() -> None:
    ds = SyntheticPairs(patch_size=40, samples_per_epoch=2, seed=0)  # no photos: dead leaves
    assert ds.dead_leaves_fraction == 1.0 and ds[1][0].shape == (3, 40, 40)
    tiny = SyntheticPairs([np.full((10, 12, 3), 0.5, np.float32)], patch_size=40, samples_per_epoch=1)
    blur, sharp = tiny[0]
    assert sharp.shape == (3, 40, 40)
    assert float((blur - sharp).abs().max()) < 0.1
    with pytest.raises(DeblurError):
        SyntheticPairs([], dead_leaves_fraction=0.0)


@pytest.mark.parametrize("linear_p, linear", [(1.0, True), (0.0, False)])
def test_degrade_blurs_in_the_chosen_domain(linear_p: float, linear: bool) -> None:
    rng = np.random.default_rng(3)
    sharp = rng.random((48, 48, 3), dtype=np.float32)
    blurred, kernel = synth.degrade(sharp, np.random.default_rng(7), linear_p=linear_p, spatially_varying_p=0,
                                    noise_p=0, jpeg_p=0, highlight_p=0)
    same = synth.blur_image(sharp, kernel, linear_light=linear)
    other = synth.blur_image(sharp, kernel, linear_light=not linear)
    np.testing.assert_allclose(blurred, same, atol=1e-6)
    assert np.abs(blurred - other).max() > 1e-2


def test_degrade_adds_gaussian_noise_on_srgb_values() -> None:
    sharp = np.full((32, 32, 3), 0.5, np.float32)
    noisy = [synth.degrade(sharp, np.random.default_rng(s), linear_p=0.5, spatially_varying_p=0, noise_p=0,
                            jpeg_p=0, highlight_p=0, srgb_noise_p=1.0, srgb_noise_sigma=(0.01, 0.01))[0]
              for s in range(40)]
    stds = [float(b.std()) for b in noisy]
    assert all(0.006 < s < 0.014 for s in stds), stds  # a flat image blurs to itself; only the noise is left


def test_synthetic_pairs_scale_downsamples_the_photo() -> None:
    ramp = np.tile(np.linspace(0, 1, 1024, dtype=np.float32)[None, :, None], (1024, 1, 3))
    slopes = {}
    for scale in (1.0, 0.25):
        pairs = SyntheticPairs([ramp], patch_size=64, augment=False, seed=0,
                                     degrade_kwargs={"scale": (scale, scale), "kernel_size": (3, 3)})
        _, sharp = pairs.sample(0)
        slopes[scale] = float(np.mean(np.diff(sharp[..., 0], axis=1)))
    assert slopes[0.25] == pytest.approx(4 * slopes[1.0], rel=0.05)
    with pytest.raises(ValueError, match="scale"):
        SyntheticPairs([ramp], degrade_kwargs={"scale": (0.0, 1.0)})
