"""Metrics against independently computed values (closed forms, scipy, scikit-image)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from oracles import volumetric_ssim
from skimage.metrics import structural_similarity

from deblurcli.errors import DeblurError
from deblurcli.eval import metrics
from deblurcli.eval.metrics import (
    AlignmentError,
    MetricError,
    psnr,
    realblur_align,
    realblur_scores,
    score_image,
    ssim_2d,
    ssim_matlab,
    to_uint8,
)

RNG = np.random.default_rng(1234)


def _noisy_pair(shape: tuple[int, ...], noise: int = 40) -> tuple[np.ndarray, np.ndarray]:
    a = RNG.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(np.int64) + RNG.integers(-noise, noise + 1, shape), 0, 255).astype(np.uint8)
    return a, b


def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random texture in [0, 1] (ECC needs gradients, not white noise)."""
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    t = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return (t - t.min()) / (t.max() - t.min())


def test_to_uint8_clamps_and_rounds_half_up() -> None:
    x = np.array([-0.2, 0.0, 0.5 / 255, 1.49 / 255, 0.5, 1.0, 1.7, np.nan], dtype=np.float32)
    assert to_uint8(x).tolist() == [0, 0, 1, 1, 128, 255, 255, 0]
    u = np.arange(256, dtype=np.uint8)
    assert np.array_equal(to_uint8(u.astype(np.float32) / 255), u)


def test_psnr_known_constant_offset() -> None:
    a = RNG.integers(0, 253, (64, 64, 3), dtype=np.uint8)
    assert psnr(a + 3, a) == pytest.approx(20 * math.log10(255 / 3), abs=1e-12)
    assert psnr(a, a) == math.inf


def test_ssim_of_identical_images_is_one() -> None:
    a = RNG.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    assert ssim_matlab(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim_2d(a, a) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(64, 64, 3), (37, 50, 3), (30, 41)])
def test_volumetric_ssim_matches_direct_3d_filter(shape: tuple[int, ...]) -> None:
    a, b = _noisy_pair(shape)
    assert ssim_matlab(a, b) == pytest.approx(volumetric_ssim(a, b), abs=1e-10)


def test_volumetric_ssim_mixes_channels() -> None:
    # The channel-axis window is cut by replicate padding: row c of the 3x3 matrix holds the
    # summed weights of the taps that land on each channel.
    k = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    k /= k.sum()
    expected = np.array([
        [k[:6].sum(), k[6], k[7:].sum()],
        [k[:5].sum(), k[5], k[6:].sum()],
        [k[:4].sum(), k[4], k[5:].sum()],
    ])
    assert np.allclose(metrics._replicate_mixing(3), expected, atol=1e-15)
    # So it is not the per-channel mean of 2-D MATLAB SSIMs.
    a, b = _noisy_pair((48, 48, 3))
    per_channel = np.mean([ssim_matlab(a[..., c], b[..., c]) for c in range(3)])
    assert abs(ssim_matlab(a, b) - per_channel) > 1e-3


@pytest.mark.parametrize("shape", [(64, 64, 3), (45, 70, 3)])
def test_ssim_2d_matches_scikit_image(shape: tuple[int, ...]) -> None:
    a, b = _noisy_pair(shape)
    expected = structural_similarity(
        a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, channel_axis=2,
    )
    assert ssim_2d(a, b) == pytest.approx(expected, abs=1e-10)


def test_shape_mismatch_and_tiny_images_are_metric_errors() -> None:
    a = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(MetricError, match="20x20x3.*ground truth is 21x20x3"):
        psnr(a, np.zeros((20, 21, 3), np.uint8))
    with pytest.raises(MetricError, match="11x11"):
        ssim_2d(a[:8], a[:8])
    assert issubclass(MetricError, DeblurError)


def _shifted_pair(shift: int = 2) -> tuple[np.ndarray, np.ndarray]:
    base = _textured(112, 112)
    gt = to_uint8(base[8:104, 8:104])
    moved = to_uint8(base[8:104, 8 + shift:104 + shift])  # content moved `shift` px left
    return moved, gt


def test_realblur_alignment_recovers_known_shift() -> None:
    moved, gt = _shifted_pair(2)
    a = realblur_align(moved, gt)
    assert a.warp[0, 2] == pytest.approx(-2.0, abs=0.05) and abs(a.warp[1, 2]) < 0.1
    assert a.mask.min() == 0.0 and a.mask.mean() > 0.9  # the uncovered strip is masked out
    scores = realblur_scores(moved, gt)
    unaligned = psnr(moved, gt, data_range=255)
    assert scores["psnr"] > unaligned + 15
    assert scores["psnr"] > 40 and scores["ssim"] > 0.99 and scores["ecc"] > 0.99


def test_realblur_ssim_matches_authors_formula_on_scikit_image() -> None:
    moved, gt = _shifted_pair(1)
    moved = np.clip(moved.astype(np.int64) + RNG.integers(-6, 7, moved.shape), 0, 255).astype(np.uint8)
    a = realblur_align(moved, gt)
    _, smap = structural_similarity(
        a.reference.astype(np.float64), a.restored.astype(np.float64), channel_axis=2,
        gaussian_weights=True, use_sample_covariance=False, data_range=1.0, full=True,
    )
    smap = (smap * a.mask)[5:-5, 5:-5]
    expected_ssim = float(np.mean(smap.sum(axis=(0, 1)) / a.mask[5:-5, 5:-5].sum(axis=(0, 1))))
    err = np.sum((a.reference - a.restored) ** 2, dtype=np.float64) / np.sum(a.mask)
    scores = realblur_scores(moved, gt)
    assert scores["ssim"] == pytest.approx(expected_ssim, abs=1e-10)
    assert scores["psnr"] == pytest.approx(10 * math.log10(1 / err), abs=1e-10)


def test_realblur_intensity_match_is_a_scale() -> None:
    # A restoration that is only darker by a constant factor scores as if it were not.
    _, gt = _shifted_pair(0)
    darker = to_uint8(gt.astype(np.float32) / 255 * 0.8)
    assert realblur_scores(darker, gt)["psnr"] > 38


def test_ecc_failure_is_reported_not_crashed() -> None:
    _, gt = _shifted_pair(0)
    flat = np.full_like(gt, 128)
    with pytest.raises(AlignmentError, match="ECC alignment failed"):
        realblur_scores(flat, gt)
    with pytest.raises(DeblurError):
        score_image(np.zeros_like(gt), gt, "realblur")


def test_score_image_keys() -> None:
    a, b = _noisy_pair((32, 32, 3))
    assert set(score_image(a, b, "matlab")) == {"psnr", "ssim", "ssim_2d"}
    moved, gt = _shifted_pair(1)
    r = score_image(moved, gt, "realblur")
    assert r["ssim_2d"] is None and set(r) == {"psnr", "ssim", "ssim_2d", "ecc"}
    with pytest.raises(ValueError):
        score_image(a, b, "psnr-y")


def test_lpips_never_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = metrics.importlib.util.find_spec
    monkeypatch.setattr(metrics.importlib.util, "find_spec",
                        lambda name, *a: None if name == "lpips" else real_find_spec(name, *a))
    model, reason = metrics.load_lpips()
    assert model is None and "not installed" in reason


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, file: Path | None = None, **attrs: object) -> None:
    """An importable stand-in package (no files needed), removed again after the test."""
    import importlib.machinery
    import sys
    import types

    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    if file is not None:
        mod.__file__ = str(file)
    for k, v in attrs.items():
        setattr(mod, k, v)
    monkeypatch.setitem(sys.modules, name, mod)


def test_lpips_refuses_to_build_without_the_backbone_on_disk(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """lpips.LPIPS would fetch AlexNet's weights from the internet: it must not even be called until
    that file is in the torch hub cache (stand-in lpips/torchvision, so this runs without either)."""
    import types

    built: list[str] = []

    class FakeLPIPS:
        def __init__(self, net: str, version: str, verbose: bool) -> None:
            built.append(net)  # the real one downloads here when the backbone is missing

        def to(self, device: str) -> FakeLPIPS:
            return self

        def eval(self) -> FakeLPIPS:
            return self

    pkg = tmp_path / "lpips"
    (pkg / "weights" / "v0.1").mkdir(parents=True)
    (pkg / "weights" / "v0.1" / "alex.pth").write_bytes(b"head")
    _fake_module(monkeypatch, "lpips", pkg / "__init__.py", LPIPS=FakeLPIPS)
    url = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    weights = types.SimpleNamespace(IMAGENET1K_V1=types.SimpleNamespace(url=url))
    _fake_module(monkeypatch, "torchvision")
    _fake_module(monkeypatch, "torchvision.models", AlexNet_Weights=weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    backbone = tmp_path / "torch" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"

    model, reason = metrics.load_lpips("cpu")
    assert model is None and built == []
    assert reason == (f"LPIPS skipped: AlexNet backbone weights not found at {backbone} "
                      "(offline; copy alexnet-owt-*.pth there to enable LPIPS)")

    backbone.parent.mkdir(parents=True)
    backbone.write_bytes(b"alexnet")
    model, reason = metrics.load_lpips("cpu")
    assert reason is None and model is not None and built == ["alex"]
