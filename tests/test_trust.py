"""The trust rule's calibration pieces: the hand-shake kernel family and the disk test.

`benchmarks/realshake/calibrate_trust.py` chooses `TRUST_RULE` on images blurred by
`hand_shake_kernel`, and the rule tells defocus from a curled shake by `disk_likeness`; these
tests hold what that calibration relies on.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from deblurcli.deconv.trust import disk_likeness, shape_features
from deblurcli.synth import hand_shake_kernel, random_kernel


def _disk(radius: float) -> np.ndarray:
    n = 2 * math.ceil(radius) + 1
    yy, xx = np.mgrid[:n, :n] - n // 2
    k = np.clip(radius + 0.5 - np.hypot(yy, xx), 0, 1).astype(np.float32)
    return k / k.sum()


@pytest.mark.parametrize("size", [3, 11, 21, 33])
def test_hand_shake_kernel_is_a_centred_normalised_kernel(size: int) -> None:
    """Blurring with it must conserve light and not shift the photo: sum 1, non-negative, mass at
    the centre pixel, drawn again identically from the same seed."""
    k = hand_shake_kernel(size, np.random.default_rng(4))
    assert k.shape == (size, size) and k.dtype == np.float32
    assert (k >= 0).all() and abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-5
    ys, xs = np.mgrid[:size, :size]
    c = (size - 1) / 2
    assert abs(float((k * ys).sum()) - c) < 1e-3 and abs(float((k * xs).sum()) - c) < 1e-3
    np.testing.assert_array_equal(k, hand_shake_kernel(size, np.random.default_rng(4)))
    with pytest.raises(ValueError):
        hand_shake_kernel(size + 1, np.random.default_rng(4))


def test_hand_shake_kernels_include_compact_knots_and_strokes() -> None:
    """The family exists to give the calibration round, compact shakes as well as strokes, and
    weights that vary along the path (where the hand lingered), unlike a defocus disk's flat top."""
    rng = np.random.default_rng(0)
    feats = [shape_features(hand_shake_kernel(21, rng)) for _ in range(60)]
    iso = np.array([f["isotropy"] for f in feats])
    assert (iso > 0.7).sum() >= 3 and (iso < 0.4).sum() >= 10
    curled = hand_shake_kernel(21, np.random.default_rng(1), curl=3.0 * math.pi)
    assert shape_features(curled)["isotropy"] > shape_features(
        hand_shake_kernel(21, np.random.default_rng(1), curl=0.0))["isotropy"]
    assert max(f["flatness"] for f in feats) < shape_features(_disk(6.0))["flatness"]


def test_disk_likeness_reads_a_flat_top_and_a_sharp_rim_not_roundness() -> None:
    """A disk scores near 1 at any radius; a round Gaussian blob, as round as a disk, lower; round
    knots of a hand's path lower still on the whole, and strokes."""
    for r in (3.0, 5.0, 7.0):
        assert disk_likeness(_disk(r)) > 0.99
    yy, xx = np.mgrid[-10:11, -10:11]
    gauss = np.exp(-(yy ** 2 + xx ** 2) / 18.0)
    assert shape_features(gauss)["isotropy"] > 0.99 and disk_likeness(gauss) < 0.95
    rng = np.random.default_rng(3)
    knots = [k for k in (hand_shake_kernel(21, rng) for _ in range(200)) if shape_features(k)["isotropy"] > 0.7]
    assert len(knots) >= 5 and np.median([disk_likeness(k) for k in knots]) < 0.8
    strokes = [disk_likeness(random_kernel(15, np.random.default_rng(s), fill=0.9)) for s in range(8)]
    assert max(strokes) < 0.9 and np.median(strokes) < 0.75
    assert disk_likeness(np.ones((1, 1), np.float32)) == 0.0


def test_a_round_kernel_is_defocus_only_if_it_looks_like_a_disk() -> None:
    """`HAND_CALIBRATED_RULE` on measured numbers: a round knot of a hand's path (not disk-like)
    passes the defocus test and is left to the referee; a round, disk-like kernel is refused as
    defocus. The default (`TRUST_RULE`) refuses every round kernel."""
    from deblurcli.deconv import verdict_from_features
    from deblurcli.deconv.trust import HAND_CALIBRATED_RULE as r

    knot = {"extent_px": 14.0, "components": 1.0, "border_mass": 0.0, "scale_agreement": 0.95, "residual": 0.1,
            "isotropy": r["max_isotropy"] + 0.1, "disk_likeness": r["round_min_disk_likeness"] - 0.1,
            "corner_agreement": 0.95, "corner_misfit2": 0.05, "reblur_gain": 0.5, "dec_vs_net": 1.0}
    assert verdict_from_features(knot, r).trusted
    disk = {**knot, "disk_likeness": r["round_min_disk_likeness"] + 0.1}
    for f, rule in ((disk, r), (knot, None)):
        v = verdict_from_features(f, rule)
        assert not v.trusted and "defocus" in v.reason, v
