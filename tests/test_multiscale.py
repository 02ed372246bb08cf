"""Running the model at a reduced scale (``--scale``): large photos whose shake exceeds training."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import TINY_ALGNET

from deblurcli import api, multiscale
from deblurcli.imageio import Image, as_float_rgb


def _block_means(x: np.ndarray, s: int) -> np.ndarray:
    h, w = x.shape[:2]
    return np.array([[x[i:i + s, j:j + s].mean(axis=(0, 1)) for j in range(0, w, s)] for i in range(0, h, s)],
                    np.float32)


@pytest.mark.parametrize(("h", "w", "s"), [(37, 29, 4), (9, 7, 2), (520, 13, 8), (64, 48, 2)])
def test_reduce_averages_whole_and_partial_blocks(h: int, w: int, s: int) -> None:
    x = np.random.default_rng(h).random((h, w, 3), dtype=np.float32)
    np.testing.assert_allclose(multiscale.reduce(x, s), _block_means(x, s), atol=1e-6)


def test_reduce_reads_stored_samples_as_the_model_sees_them() -> None:
    rng = np.random.default_rng(1)
    for samples in (rng.integers(0, 256, (300, 301, 3), dtype=np.uint8),
                    rng.integers(0, 65536, (300, 301), dtype=np.uint16)):
        np.testing.assert_array_equal(multiscale.reduce(samples, 2), multiscale.reduce(as_float_rgb(samples), 2))


@pytest.mark.parametrize(("h", "s"), [(1000, 2), (513, 4), (40, 8), (600, 2)])
def test_upsampling_a_band_at_a_time_equals_the_whole_image(h: int, s: int) -> None:
    w = 77
    low = np.random.default_rng(h).standard_normal((-(-h // s), -(-w // s), 3)).astype(np.float32)
    whole = cv2.resize(low, (low.shape[1] * s, low.shape[0] * s), interpolation=cv2.INTER_CUBIC)[:h, :w]
    bands = multiscale.bands(h, s)
    assert len(bands) > 1 or h <= 256
    banded = np.concatenate([multiscale.detail_rows(low, s, y0, y1, w) for y0, y1 in bands])
    np.testing.assert_array_equal(banded, whole)


def test_auto_scale_follows_the_photo_size_and_the_trained_blur() -> None:
    # A model trained on shake up to 41 px (the default): phone/camera photos of 12 MP and more
    # are halved, 48 MP quartered; video frames and ordinary photos run at full size.
    assert multiscale.auto_scale(3000, 4000, 41) == 2
    assert multiscale.auto_scale(4000, 6000, 41) == 2
    assert multiscale.auto_scale(6000, 8000, 41) == 4
    assert multiscale.auto_scale(2448, 3264, 41) == 1
    assert multiscale.auto_scale(720, 1280, 41) == 1
    # A model trained on larger shake keeps more photos whole; one that does not say, all.
    assert multiscale.auto_scale(3000, 4000, 81) == 1
    assert multiscale.auto_scale(12000, 16000, None) == 1
    assert multiscale.auto_scale(10**6, 10**6, 41) == multiscale.MAX_SCALE


@pytest.fixture(scope="module")
def recorded_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose training recorded the largest blur it saw, as deblur train writes it."""
    from deblurcli.models import create
    from deblurcli.weights import save_model

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("ms") / "trained.safetensors"
    save_model(create("algnet", TINY_ALGNET, "plain"), path, arch="algnet", config=TINY_ALGNET, variant="plain",
               extra_metadata={"train_blur_px": "5"})
    return path


def test_reduced_scale_adds_the_models_correction_to_the_photo(tiny_model: Path) -> None:
    x = np.random.default_rng(0).random((90, 130, 3), dtype=np.float32)
    full = api.Deblurrer(tiny_model, device="cpu", tile=0, scale=1, progress=False)
    half = api.Deblurrer(tiny_model, device="cpu", tile=0, scale=2, progress=False)
    small = cv2.resize(x, (65, 45), interpolation=cv2.INTER_AREA)
    correction = full.restore(small) - small
    expected = np.clip(x + cv2.resize(correction, (130, 90), interpolation=cv2.INTER_CUBIC), 0, 1)
    np.testing.assert_allclose(half.restore(x), expected, atol=1e-5)
    # the same through the file path's strip-wise finishing, from 8-bit samples written in place
    samples = (x * 255).round().astype(np.uint8)
    img = Image(samples.copy(), format="PNG")
    out = half.restore_image(img, layout=(8, False), in_place=True)
    assert out is img.samples
    via_float = np.clip(half.restore(as_float_rgb(samples)) * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - via_float).max() <= 1
    np.testing.assert_array_equal(half.restore(x, strength=0.0), x)


def test_auto_scale_runs_large_images_reduced_and_says_so(recorded_model: Path, tiny_model: Path) -> None:
    notes: list[str] = []
    d = api.Deblurrer(recorded_model, device="cpu", tile=0, progress=False, on_note=notes.append)
    assert d.trained_blur_px == 5 and d.scale == "auto"
    # 5 px of training blur: shake on a 640 px image (about 9 px) is beyond it, on 256 px it is not
    # (512 px rows: halved, they keep the architecture's smallest useful size, 256 px)
    assert (d.scale_for(256, 256), d.scale_for(512, 640)) == (1, 2)
    x = np.random.default_rng(2).random((512, 640, 3), dtype=np.float32)
    halved = api.Deblurrer(recorded_model, device="cpu", tile=0, scale=2, progress=False)
    np.testing.assert_array_equal(d.restore(x), halved.restore(x))
    assert len(notes) == 1 and "1/2 size" in notes[0] and "--scale 1" in notes[0]
    # a model that records no training blur (the papers' checkpoints) always runs at full size
    assert api.Deblurrer(tiny_model, device="cpu", progress=False).scale_for(8000, 8000) == 1


def test_scale_must_be_a_small_whole_number(tiny_model: Path) -> None:
    from deblurcli.errors import OptionError

    for bad in ("0", "9", "x", "1.5", 2.5):
        with pytest.raises(OptionError, match="^scale="):
            api.Deblurrer(tiny_model, scale=bad, progress=False)


def test_tile_check_measures_the_image_the_model_sees(tiny_model: Path) -> None:
    photo = np.random.default_rng(4).random((400, 400, 3), dtype=np.float32)
    full = api.Deblurrer(tiny_model, device="cpu", tile=128, tile_overlap=16, scale=1, progress=False)
    half = api.Deblurrer(tiny_model, device="cpu", tile=128, tile_overlap=16, scale=2, progress=False)
    assert full.tile_check(photo)["crop"] == "240x240"  # two tiles wide, on the photo itself
    assert half.tile_check(photo)["crop"] == "200x200"  # the whole 200 px reduced image
