"""The blind deconvolution engine (deblurcli.deconv): what a user relies on, on licence-clean photos
(scikit-image's) with synthetic camera shake from our own kernel generator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deblurcli.deconv import (
    assess,
    deblur_shake,
    deconvolve,
    estimate_kernel,
    kernel_image,
    kernel_similarity,
    kernel_stats,
    load_kernel,
    restore_rgb,
)
from deblurcli.errors import DeblurError, KernelError
from deblurcli.synth import blur_image, random_kernel

skimage_data = pytest.importorskip("skimage.data")


def _psnr(a: np.ndarray, b: np.ndarray, crop: int = 12) -> float:
    d = (a - b)[crop:-crop, crop:-crop]
    return 10 * math.log10(1.0 / float(np.mean(d * d)))


@pytest.fixture(scope="module")
def shaken() -> dict:
    """A 200 px crop of the camera man, blurred by a 15 px random shake with mild noise, and its
    blind and non-blind restorations (computed once: estimation takes a few seconds)."""
    sharp = skimage_data.camera()[40:240, 150:350].astype(np.float32) / 255.0
    rng = np.random.default_rng(7)
    kernel = random_kernel(15, rng, fill=0.9)
    blurred = np.clip(blur_image(sharp, kernel, linear_light=False) + rng.normal(0, 0.003, sharp.shape), 0, 1)
    blurred = blurred.astype(np.float32)
    blind, est = deblur_shake(blurred, linear=False)
    true_k = deconvolve(blurred, kernel, linear=False)
    return {"sharp": sharp, "kernel": kernel, "blurred": blurred, "blind": blind, "est": est, "true_k": true_k}


def test_blind_kernel_matches_the_true_one(shaken: dict) -> None:
    est = shaken["est"]
    assert kernel_similarity(est.kernel, shaken["kernel"]) > 0.7
    assert est.kernel.dtype == np.float32 and abs(float(est.kernel.sum()) - 1) < 1e-4
    assert est.kernel.shape[0] % 2 == 1
    assert est.diagnostics.plausible, est.diagnostics.reasons


def test_blind_deblurring_gains_several_db_and_true_kernel_more(shaken: dict) -> None:
    before = _psnr(shaken["blurred"], shaken["sharp"])
    blind = _psnr(shaken["blind"], shaken["sharp"])
    true_k = _psnr(shaken["true_k"], shaken["sharp"])
    assert blind - before > 3.0
    assert true_k - before > 5.0
    assert true_k > blind
    assert shaken["blind"].shape == shaken["sharp"].shape and shaken["blind"].dtype == np.float32


def test_colour_photo_in_linear_light_is_deblurred_per_channel() -> None:
    """A colour photo blurred in linear light (as a camera does) is restored better when the
    deconvolution works in linear light, and every channel is restored."""
    sharp = skimage_data.astronaut()[40:200, 140:300].astype(np.float32) / 255.0
    kernel = random_kernel(11, np.random.default_rng(2), fill=0.9)
    blurred = blur_image(sharp, kernel, linear_light=True)
    lin = deconvolve(blurred, kernel, linear=True)
    srgb = deconvolve(blurred, kernel, linear=False)
    assert lin.shape == sharp.shape
    assert _psnr(lin, sharp) > _psnr(srgb, sharp) + 0.5
    for c in range(3):
        assert _psnr(lin[..., c], sharp[..., c]) > _psnr(blurred[..., c], sharp[..., c]) + 3


def test_no_wraparound_ringing_at_the_borders() -> None:
    """Opposite borders differ sharply (bright left, dark right): a plain FFT deconvolution would
    drag each into the other; ours must keep the border as good as the inside."""
    sharp = skimage_data.camera()[100:260, 100:260].astype(np.float32) / 255.0
    sharp[:, :80] = 0.3 + 0.7 * sharp[:, :80]
    sharp[:, 80:] *= 0.3
    kernel = np.zeros((13, 13), np.float32)
    kernel[6, :] = 1 / 13  # horizontal streak: wrap-around would hit the left and right borders
    blurred = blur_image(sharp, kernel, linear_light=False)
    out = deconvolve(blurred, kernel, linear=False, noise_sigma=0.0)
    err = np.abs(out - sharp)
    border = np.concatenate([err[:, :8].ravel(), err[:, -8:].ravel()])
    inside = err[8:-8, 8:-8]
    assert border.mean() < 2.0 * inside.mean() + 0.01
    assert np.percentile(border, 99) < 0.2


def test_saturated_highlights_do_not_blow_up() -> None:
    sharp = skimage_data.camera()[100:260, 100:260].astype(np.float32) / 255.0 * 0.8
    yy, xx = np.mgrid[:160, :160]
    sharp[(yy - 80) ** 2 + (xx - 70) ** 2 < 64] = 1.0  # a lamp
    kernel = random_kernel(13, np.random.default_rng(5), fill=0.9)
    blurred = blur_image(sharp, kernel, linear_light=True, highlight_gain=6.0)
    assert (blurred >= 0.98).mean() > 0.002  # the lamp's streak is clipped
    out = deconvolve(blurred, kernel, linear=True)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    far = (yy - 80) ** 2 + (xx - 70) ** 2 > 30 ** 2
    assert _psnr(np.where(far, out, sharp), sharp, crop=10) > _psnr(np.where(far, blurred, sharp), sharp, crop=10) + 2


def test_kernel_files_are_validated_with_one_line_errors(tmp_path) -> None:
    good = np.zeros((9, 9), np.float32)
    good[4, 2:7] = 1
    np.save(tmp_path / "good.npy", good)
    k = load_kernel(tmp_path / "good.npy")
    assert abs(float(k.sum()) - 1) < 1e-6 and k.shape == (9, 9)
    from PIL import Image

    Image.fromarray((good * 255).astype(np.uint8)).save(tmp_path / "good.png")
    assert kernel_similarity(load_kernel(tmp_path / "good.png"), k) > 0.99

    cases = {"neg.npy": np.where(good > 0, 1.0, -0.1), "zero.npy": np.zeros((5, 5)), "cube.npy": np.ones((3, 3, 3))}
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(KernelError) as info:
            load_kernel(tmp_path / name)
        msg = str(info.value)
        assert name in msg and "\n" not in msg
        assert isinstance(info.value, DeblurError) and info.value.exit_code != 0
    np.save(tmp_path / "big.npy", np.ones((41, 41)))
    with pytest.raises(KernelError, match="big.npy"):
        load_kernel(tmp_path / "big.npy", image_shape=(40, 60, 3))
    with pytest.raises(KernelError, match="big.npy"):
        deblur_shake(np.zeros((40, 60, 3), np.float32), kernel=tmp_path / "big.npy")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(KernelError, match="notes.txt"):
        load_kernel(tmp_path / "notes.txt")


def test_user_kernel_is_applied_without_estimation(tmp_path) -> None:
    sharp = skimage_data.camera()[100:228, 100:228].astype(np.float32) / 255.0
    kernel = random_kernel(9, np.random.default_rng(1), fill=0.9)
    np.save(tmp_path / "k.npy", kernel)
    blurred = blur_image(sharp, kernel, linear_light=False)
    out, est = deblur_shake(blurred, kernel=tmp_path / "k.npy", linear=False)
    assert est is None
    assert _psnr(out, sharp) > _psnr(blurred, sharp) + 5


def test_images_with_nothing_to_estimate_from_raise_kernel_error() -> None:
    with pytest.raises(KernelError, match="flat"):
        estimate_kernel(np.full((120, 120), 0.5, np.float32))
    with pytest.raises(KernelError, match="small"):
        estimate_kernel(np.random.default_rng(0).random((20, 30)).astype(np.float32))
    with pytest.raises(KernelError, match="region"):
        estimate_kernel(np.random.default_rng(0).random((100, 100)).astype(np.float32), region=(80, 0, 64, 64))


def test_kernel_stats_and_picture() -> None:
    k = np.zeros((21, 21), np.float32)
    k[10, 3:18] = 1  # 15 px horizontal
    s = kernel_stats(k)
    assert s.extent_px == pytest.approx(15, abs=0.5)
    assert s.direction_deg == pytest.approx(0, abs=1) or s.direction_deg == pytest.approx(180, abs=1)
    assert s.components == 1 and s.border_mass == 0
    diag = np.eye(21, dtype=np.float32)[::-1]  # bottom-left to top-right: 45 degrees, y up
    assert kernel_stats(diag).direction_deg == pytest.approx(45, abs=1)
    assert kernel_stats(k.T).direction_deg == pytest.approx(90, abs=1)
    img = kernel_image(k)
    assert img.dtype == np.uint8 and min(img.shape) >= 128 and img.max() == 255 and img.min() == 0


# --------------------------------------------------------------------------------------------
# Automatic kernel size, the trust criterion and the colour entry point
# --------------------------------------------------------------------------------------------


def _support_extent(k: np.ndarray) -> int:
    ys, xs = np.nonzero(k >= 0.05 * k.max())
    return max(int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1)


def test_automatic_size_grows_past_the_first_window_for_a_long_shake() -> None:
    """A 45 px shake does not fit the first 35 px window: the size ladder must notice the cut
    kernel and pick a window that holds the whole path."""
    sharp = skimage_data.camera()[20:340, 100:420].astype(np.float32) / 255.0
    rng = np.random.default_rng(3)
    kernel = random_kernel(45, rng, fill=0.95)
    blurred = np.clip(blur_image(sharp, kernel, linear_light=False) + rng.normal(0, 0.002, sharp.shape), 0, 1)
    est = estimate_kernel(blurred.astype(np.float32))
    assert len(est.sizes_tried) > 1 and max(est.sizes_tried) > 35
    assert est.kernel.shape[0] >= _support_extent(kernel)
    assert kernel_similarity(est.kernel, kernel, max_shift=4) > 0.6


def test_the_last_kernel_step_against_a_tv_deconvolution_sharpens_the_result() -> None:
    """`refine_kernel`: the estimate's last kernel step reads the TV deconvolution of its region,
    not the pyramid's cartoon latent. On four seeded shakes of one photo the deconvolution with
    the refined kernel is better on average and no worse on any by more than rounding."""
    from deblurcli.deconv.estimate import EstimatorSettings

    sharp = skimage_data.camera()[20:340, 100:420].astype(np.float32) / 255.0
    gains = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        blurred = np.clip(blur_image(sharp, random_kernel(21, rng, fill=0.9), linear_light=False)
                          + rng.normal(0, 0.003, sharp.shape), 0, 1).astype(np.float32)
        plain = estimate_kernel(blurred, settings=EstimatorSettings(refine_select=None))
        refined = estimate_kernel(blurred)
        gains.append(_psnr(deconvolve(blurred, refined.kernel, linear=False), sharp, 20)
                     - _psnr(deconvolve(blurred, plain.kernel, linear=False), sharp, 20))
    assert float(np.mean(gains)) > 0.1 and min(gains) > -0.1, gains


def test_a_kernel_step_with_no_edge_to_read_keeps_the_kernel() -> None:
    from deblurcli.deconv.estimate import kernel_step

    k = np.zeros((9, 9), np.float32)
    k[4, 2:7] = 0.2
    flat = np.full((64, 64), 0.5, np.float32)
    np.testing.assert_array_equal(kernel_step(flat, flat, k), k)


@pytest.fixture(scope="module")
def referee_cases() -> dict:
    """One colour photo three ways (camera shake in linear light, a defocus disk, no blur), each
    with mild noise, its blind deconvolution, its estimate and the embedded network's output."""
    from deblurcli.api import Deblurrer

    net = Deblurrer("default", device="cpu", tile=0, threads=1, progress=False)
    sharp = skimage_data.astronaut()[20:276, 120:376].astype(np.float32) / 255.0
    rng = np.random.default_rng(11)
    n = 13
    yy, xx = np.mgrid[:n, :n] - n // 2
    disk = np.clip(6.5 - np.hypot(yy, xx), 0, 1).astype(np.float32)
    cases = {"shake": blur_image(sharp, random_kernel(17, rng, fill=0.9), linear_light=True),
             "defocus": blur_image(sharp, disk / disk.sum(), linear_light=True), "sharp": sharp}
    out = {}
    for name, img in cases.items():
        noisy = np.clip(img + rng.normal(0, 0.003, img.shape), 0, 1).astype(np.float32)
        dec, est = restore_rgb(noisy)
        out[name] = {"blurred": noisy, "deconvolved": dec, "estimate": est, "network": net.restore(noisy),
                     "sharp": sharp}
    return out


def test_assess_accepts_real_looking_shake(referee_cases: dict) -> None:
    c = referee_cases["shake"]
    verdict = assess(c["estimate"], blurred=c["blurred"], network=c["network"], deconvolved=c["deconvolved"])
    assert verdict.trusted, verdict.reason


@pytest.mark.parametrize("name", ["defocus", "sharp"])
def test_hybrid_is_never_worse_than_the_network_on_blur_that_is_not_shake(referee_cases: dict, name: str) -> None:
    """What the default relies on: where the blur is not camera shake, either assess refuses the
    kernel or the deconvolution it lets through is at least as good as the network alone."""
    c = referee_cases[name]
    verdict = assess(c["estimate"], blurred=c["blurred"], network=c["network"], deconvolved=c["deconvolved"])
    assert verdict.reason and "\n" not in verdict.reason
    hybrid = c["deconvolved"] if verdict.trusted else c["network"]
    assert _psnr(hybrid, c["sharp"]) >= _psnr(c["network"], c["sharp"]) - 0.1, verdict


def test_an_empty_estimate_is_a_kernel_error_not_a_crash(referee_cases: dict) -> None:
    """The estimator once gave back an all-zero kernel: the default model must hear a KernelError
    (and run the network), not a ValueError from deconvolving with it."""
    import dataclasses

    from deblurcli.deconv.trust import blur_light

    c = referee_cases["shake"]
    empty = dataclasses.replace(c["estimate"], kernel=np.zeros_like(c["estimate"].kernel))
    with pytest.raises(KernelError):
        blur_light(c["blurred"].mean(axis=2), empty)


def _faint_texture(amplitude: float, seed: int = 0) -> np.ndarray:
    """A low-contrast, noisy grey image: texture barely above its noise (a faint cell scan, fog)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200, 200)).astype(np.float32)
    x = (x + np.roll(x, 1, 0) + np.roll(x, 1, 1) + np.roll(x, (1, 1), (0, 1))) / 4
    return (0.5 + amplitude * x / x.std() + 0.003 * rng.standard_normal(x.shape)).astype(np.float32)


@pytest.mark.parametrize("amplitude", [0.002, 0.02])
def test_faint_texture_gives_a_kernel_or_a_kernel_error_never_an_empty_kernel(amplitude: float) -> None:
    """Where edge selection left no gradient, the kernel step zeroed the kernel and the next latent
    step spread NaN to every level: an all-zero 'estimate' came back. Now a step with nothing to
    learn from keeps the kernel, and an image where no step could be made is a KernelError."""
    try:
        est = estimate_kernel(_faint_texture(amplitude))
    except KernelError as exc:
        assert "noise" in str(exc)
        return
    assert np.isfinite(est.kernel).all() and est.kernel.sum() == pytest.approx(1.0, abs=1e-4)
    assert math.isfinite(est.diagnostics.residual)


def test_corners_are_measured_only_when_they_could_change_the_verdict(referee_cases: dict, monkeypatch) -> None:
    """The corner kernels cost more than the estimate itself: a shake the referee already trusts
    is not measured again, nor one it refuses past the corners' veto; one the referee refuses by a
    margin agreeing corners would forgive is measured, and the corners decide."""
    from deblurcli.deconv import trust

    calls = []
    agreeing = {"corner_misfit": 0.05, "corner_misfit2": 0.02, "corner_agreement": 0.9, "corner_vs_main": 0.9}
    monkeypatch.setattr(trust, "region_features", lambda blurred, est: calls.append(1) or dict(agreeing))
    c = referee_cases["shake"]
    verdict = assess(c["estimate"], blurred=c["blurred"], network=c["network"], deconvolved=c["deconvolved"])
    assert verdict.trusted and not calls and "corner_agreement" not in verdict.features
    assert trust.trust_features(c["estimate"])["isotropy"] <= trust.TRUST_RULE["corner_trust_max_isotropy"]
    past_veto = assess(c["estimate"], blurred=c["blurred"], features={"dec_vs_net": 2.5, "reblur_gain": 0.3})
    assert not past_veto.trusted and not calls
    forgiven = assess(c["estimate"], blurred=c["blurred"], features={"dec_vs_net": 1.8, "reblur_gain": 0.3})
    assert calls == [1] and forgiven.trusted and forgiven.features["corner_agreement"] == 0.9
    agreeing["corner_agreement"] = 0.5
    refused = assess(c["estimate"], blurred=c["blurred"], features={"dec_vs_net": 1.8, "reblur_gain": 0.3})
    assert calls == [1, 1] and not refused.trusted


def test_assess_rejects_a_sharp_photo(referee_cases: dict) -> None:
    c = referee_cases["sharp"]
    verdict = assess(c["estimate"], blurred=c["blurred"], network=c["network"], deconvolved=c["deconvolved"])
    assert not verdict.trusted, verdict


def test_shape_features_tell_a_defocus_disk_from_a_camera_path() -> None:
    """A disk is round with a flat top; a hand's path is a stroke whose weights vary."""
    from deblurcli.deconv.trust import shape_features

    yy, xx = np.mgrid[:15, :15] - 7
    disk = np.clip(6.5 - np.hypot(yy, xx), 0, 1).astype(np.float32)
    line = np.zeros((15, 15), np.float32)
    line[7, 2:13] = 1.0
    d, path = shape_features(disk), shape_features(random_kernel(15, np.random.default_rng(5), fill=0.9))
    assert d["isotropy"] > 0.95 and d["flatness"] > 0.8, d
    assert shape_features(line)["isotropy"] < 0.05
    assert path["isotropy"] < d["isotropy"] and path["flatness"] < d["flatness"], path


def test_assess_rejects_a_defocus_disk(referee_cases: dict) -> None:
    """A 13 px defocus disk blurs every corner alike, but its estimate is a round blob: agreeing
    corners do not vouch for it, and the referee sends it to the network."""
    c = referee_cases["defocus"]
    verdict = assess(c["estimate"], blurred=c["blurred"], network=c["network"], deconvolved=c["deconvolved"])
    assert not verdict.trusted, verdict


def test_agreeing_corners_outweigh_the_referee_only_for_a_stroke() -> None:
    """The rule itself, on measured numbers: a thin kernel whose corners agree closely is trusted
    even where the deconvolution goes well past the network's change (Levin's case), not a round
    one, not one whose corners disagree, and never a deconvolution past the veto."""
    from deblurcli.deconv import TRUST_RULE, verdict_from_features

    r = TRUST_RULE
    shake = {"extent_px": 20.0, "components": 1.0, "border_mass": 0.0, "scale_agreement": 0.95, "residual": 0.1,
             "isotropy": 0.3, "disk_likeness": 0.5, "corner_agreement": 0.95, "corner_misfit2": 0.05,
             "reblur_gain": 0.9, "dec_vs_net": (r["max_dec_vs_net"] + r["corner_trust_max_dec_vs_net"]) / 2}
    assert verdict_from_features(shake).trusted
    round_blob = {**shake, "isotropy": (r["corner_trust_max_isotropy"] + r["max_isotropy"]) / 2}
    corners_apart = {**shake, "corner_agreement": r["corner_trust_agreement"] - 0.2}
    too_far = {**shake, "dec_vs_net": r["corner_trust_max_dec_vs_net"] + 0.5}
    for f in (round_blob, corners_apart, too_far):
        v = verdict_from_features(f)
        assert not v.trusted and "network" in v.reason, (f, v)
    # The rule calibrated on hand shakes (not the default) also asks for a stroke that is not
    # disk-like and at least a few pixels long.
    from deblurcli.deconv.trust import HAND_CALIBRATED_RULE as h

    assert verdict_from_features(shake, h).trusted
    disk_like = {**shake, "disk_likeness": h["corner_trust_max_disk_likeness"] + 0.05}
    made_up = {**shake, "extent_px": h["corner_trust_min_extent_px"] - 2.0}
    for f in (disk_like, made_up):
        v = verdict_from_features(f, h)
        assert not v.trusted and "network" in v.reason, (f, v)


@pytest.fixture(scope="module")
def two_shakes() -> dict:
    """A 255 px grey photo (Levin's size and kind) blurred by one 17 px shake, and the same photo
    with that shake on its left half and the shake turned by 90 degrees on its right half (two
    motions in one frame, as a moving subject gives); mild noise, each with its blind estimate."""
    sharp = skimage_data.astronaut()[0:255, 180:435].astype(np.float32).mean(axis=2) / 255.0
    sharp = np.repeat(sharp[..., None], 3, axis=2)
    rng = np.random.default_rng(23)
    k = random_kernel(17, rng, fill=0.9)
    uniform = blur_image(sharp, k)
    split = uniform.copy()
    split[:, 128:] = blur_image(sharp, np.ascontiguousarray(np.rot90(k)))[:, 128:]
    out = {}
    for name, img in (("uniform", uniform), ("split", split)):
        noisy = np.clip(img + rng.normal(0, 0.002, img.shape), 0, 1).astype(np.float32)
        _, est = restore_rgb(noisy)
        out[name] = {"blurred": noisy, "estimate": est}
    return out


def test_corner_kernels_agree_on_one_shake_and_not_on_two(two_shakes: dict) -> None:
    """Kernels estimated from the photo's four corners have one shape, the whole photo's, under
    uniform shake, and not when its halves moved differently: what tells the two apart."""
    from deblurcli.deconv.trust import region_features

    one = region_features(two_shakes["uniform"]["blurred"], two_shakes["uniform"]["estimate"])
    two = region_features(two_shakes["split"]["blurred"], two_shakes["split"]["estimate"])
    assert one["corner_agreement"] > two["corner_agreement"] + 0.1, (one, two)
    assert one["corner_vs_main"] > two["corner_vs_main"] + 0.03, (one, two)
    assert two["corner_misfit2"] > one["corner_misfit2"], (one, two)


def test_corner_features_are_skipped_when_the_corners_are_too_small() -> None:
    """Under `CORNER_MIN_KERNELS` kernel widths a corner holds too few edges: -1, not a guess."""
    from deblurcli.deconv.trust import region_features

    sharp = skimage_data.camera()[100:160, 100:160].astype(np.float32) / 255.0
    blurred = np.clip(blur_image(sharp, random_kernel(15, np.random.default_rng(2), fill=0.9)), 0, 1)
    est = estimate_kernel(blurred.astype(np.float32))
    assert set(region_features(blurred, est).values()) == {-1.0}


def test_restore_rgb_with_a_given_kernel_beats_its_input() -> None:
    sharp = skimage_data.coffee()[100:292, 200:392].astype(np.float32) / 255.0
    kernel = random_kernel(15, np.random.default_rng(4), fill=0.9)
    blurred = blur_image(sharp, kernel, linear_light=True)
    blurred = np.clip(blurred + np.random.default_rng(5).normal(0, 0.002, blurred.shape), 0, 1).astype(np.float32)
    out, est = restore_rgb(blurred, kernel=kernel)
    assert est is None and out.shape == sharp.shape and out.dtype == np.float32
    assert _psnr(out, sharp) > _psnr(blurred, sharp) + 4
    with pytest.raises(ValueError, match="HxWx3"):
        restore_rgb(blurred[..., 0], kernel=kernel)


def test_luma_chroma_solve_equals_per_channel_solve_on_a_grey_photo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Colour photos are solved as luma at full resolution and colour differences at half; on a
    grey photo the differences are zero, so it must give what three full solves give."""
    grey = skimage_data.camera()[100:260, 100:260].astype(np.float32) / 255.0
    kernel = random_kernel(11, np.random.default_rng(3), fill=0.9)
    blurred = np.repeat(blur_image(grey, kernel, linear_light=True)[..., None], 3, axis=2)
    from deblurcli.deconv import nonblind

    monkeypatch.setattr(nonblind, "HALF_CHROMA_PIXELS", 0)  # a small test photo takes the photo path
    fast = deconvolve(blurred, kernel, linear=True)
    full = deconvolve(blurred, kernel, linear=True, full_chroma=True)
    assert np.abs(fast - full).max() < 2e-3
    assert np.abs(fast[..., 0] - fast[..., 2]).max() < 2e-3


def test_half_resolution_kernel_keeps_mass_centre_and_shape() -> None:
    from deblurcli.deconv.nonblind import half_kernel

    delta = np.zeros((9, 9), np.float32)
    delta[4, 4] = 1
    assert half_kernel(delta).shape == (5, 5) and half_kernel(delta)[2, 2] == pytest.approx(1.0)
    streak = np.zeros((25, 25), np.float32)
    streak[12, 2:23] = 1 / 21  # 21 px horizontal streak, centred
    h = half_kernel(streak)
    assert h.shape[0] % 2 == 1 and abs(float(h.sum()) - 1) < 1e-6
    c = h.shape[0] // 2
    assert np.allclose(h, h[:, ::-1], atol=1e-7) and h[c].sum() == pytest.approx(1.0)
    assert 9 <= np.count_nonzero(h[c] > 1e-3) <= 13  # about half as long


def test_masked_solver_fills_a_hole_in_the_data_from_the_blur_around_it() -> None:
    """Clipped pixels are left out of the data term (mask 0): the solver must recover the sharp
    image there from what the blur spread into the neighbours, not from the (wrong) values in
    the hole, which an unmasked solve would reproduce."""
    import torch

    from deblurcli.deconv.nonblind import tv_deconvolve

    sharp = torch.full((1, 96, 96), 0.4)
    sharp[:, 36:60, 30:66] = 0.9
    kernel = torch.zeros(9, 9)
    kernel[4, :] = 1 / 9
    otf = torch.fft.rfft2(torch.roll(torch.nn.functional.pad(kernel, (0, 87, 0, 87)), (-4, -4), (0, 1)))
    blurred = torch.fft.irfft2(torch.fft.rfft2(sharp) * otf, s=(96, 96))
    blurred[:, 46:50, 46:50] = 0.0  # garbage where the photo was clipped
    mask = torch.ones(96, 96)
    mask[46:50, 46:50] = 0.0
    masked = tv_deconvolve(blurred, kernel, 1e-3, mask=mask, inner=2)
    plain = tv_deconvolve(blurred, kernel, 1e-3)
    hole = (0, slice(46, 50), slice(46, 50))
    assert float((masked[hole] - 0.9).abs().mean()) < 0.05
    assert float((plain[hole] - 0.9).abs().mean()) > 0.2


def test_colour_photo_solved_with_half_resolution_chroma_is_restored_nearly_as_well(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from deblurcli.deconv import nonblind

    sharp = skimage_data.astronaut()[40:200, 140:300].astype(np.float32) / 255.0
    kernel = random_kernel(11, np.random.default_rng(2), fill=0.9)
    blurred = blur_image(sharp, kernel, linear_light=True)
    full = deconvolve(blurred, kernel, linear=True)
    monkeypatch.setattr(nonblind, "HALF_CHROMA_PIXELS", 0)
    fast = deconvolve(blurred, kernel, linear=True)
    assert fast.shape == sharp.shape and fast.dtype == np.float32
    assert _psnr(fast, sharp) > _psnr(full, sharp) - 1.0
    for c in range(3):
        assert _psnr(fast[..., c], sharp[..., c]) > _psnr(blurred[..., c], sharp[..., c]) + 3
