"""``--deconv auto`` decides and restores alike on one thread and on two.

With more than one thread, `shake.try_deconvolve` runs the network beside the kernel estimate and
`region_features` (which `assess` calls only where the corners could change its verdict)
estimates the region's corners two at a time. The suite often runs with
``OMP_NUM_THREADS=1``, where neither happens, so these tests ask for the threads themselves.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

from deblurcli.synth import blur_image, random_kernel

skimage_data = pytest.importorskip("skimage.data")
SIDE = 192


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """A sharp astronaut crop, the same shaken by a 15 px kernel and defocused by a 13 px disk (as
    test_shake_model's)."""
    sharp = skimage_data.astronaut()[20:20 + SIDE, 150:150 + SIDE].astype(np.float32) / 255.0
    rng = np.random.default_rng(3)
    shaken = np.clip(blur_image(sharp, random_kernel(15, rng, fill=0.9), linear_light=True)
                     + rng.normal(0, 0.002, sharp.shape), 0, 1).astype(np.float32)
    yy, xx = np.mgrid[-6:7, -6:7]
    disk = (xx**2 + yy**2 <= 36).astype(np.float32)
    defocused = np.clip(blur_image(sharp, disk / disk.sum(), linear_light=True), 0, 1).astype(np.float32)
    return {"sharp": sharp, "shaken": shaken, "defocused": defocused}


def _restore(pixels: np.ndarray, threads: int, deconv: str = "auto") -> tuple[np.ndarray, Any, int]:
    """The default model on ``threads`` threads: the result, what the engine did, and the thread
    count a thread started afterwards begins with (the process's count is put back after)."""
    from deblurcli.api import Deblurrer

    before = torch.get_num_threads()
    try:
        d = Deblurrer("default", device="cpu", progress=False, deconv=deconv, threads=threads)
        out = d.restore(pixels)
        seen: list[int] = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert torch.get_num_threads() == threads  # the caller's own count, after the workers' one
        return out, d.last_outcome, seen[0]
    finally:
        torch.set_num_threads(before)


def test_two_threads_deconvolve_a_shaken_photo_as_one_does(photos: dict[str, np.ndarray]) -> None:
    one, o1, _ = _restore(photos["shaken"], 1)
    two, o2, later = _restore(photos["shaken"], 2)
    assert o1.path == o2.path == "deconvolved", (o1.note, o2.note)
    np.testing.assert_array_equal(o1.kernel, o2.kernel)
    f1, f2 = o1.verdict.features, o2.verdict.features
    assert f1.keys() == f2.keys()
    # Estimates run on one thread either way: the kernel's and the corners' figures (where measured)
    # are the same numbers; the referee's read the network, whose sums may round otherwise on one thread.
    assert {k: v for k, v in f1.items() if k.startswith("corner_")} == \
        {k: v for k, v in f2.items() if k.startswith("corner_")}
    assert all(abs(f1[k] - f2[k]) <= 1e-5 for k in f1)
    np.testing.assert_allclose(two, one, atol=1e-5)
    assert later == 2  # threads started later are not left on the workers' one thread


def test_two_threads_leave_defocus_to_the_network_as_it_runs_alone(photos: dict[str, np.ndarray]) -> None:
    hybrid, outcome, _ = _restore(photos["defocused"], 2)
    alone, _, _ = _restore(photos["defocused"], 2, deconv="off")
    assert outcome.path == "network", outcome.note
    np.testing.assert_allclose(hybrid, alone, atol=1e-5)


def test_a_sharp_photo_comes_back_as_it_is_on_any_thread_count(photos: dict[str, np.ndarray]) -> None:
    for threads in (1, 2):
        out, outcome, _ = _restore(photos["sharp"], threads)
        assert outcome.path == "sharp", outcome.note
        np.testing.assert_array_equal(out, photos["sharp"])


def test_the_corners_two_at_a_time_are_the_corners_one_after_another(photos: dict[str, np.ndarray]) -> None:
    """`assess` skips the corners where the referee settles the verdict, so they are asked for here."""
    from deblurcli.deconv import restore_rgb
    from deblurcli.deconv.trust import region_features

    _, est = restore_rgb(photos["shaken"])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = region_features(photos["shaken"], est)
        torch.set_num_threads(2)
        two = region_features(photos["shaken"], est)
    finally:
        torch.set_num_threads(before)
    assert one == two and one["corner_agreement"] > -1.0, one


def test_the_progress_ends_only_when_the_decision_is_made(photos: dict[str, np.ndarray], monkeypatch) -> None:
    """The referee (and the corners, where they matter) run after the deconvolution: the bar
    climbs without going back and reaches its end only once the photo is decided."""
    from deblurcli import shake
    from deblurcli.api import Deblurrer

    net = Deblurrer("default", device="cpu", progress=False, threads=1)
    seen: list[float] = []
    at_checks: list[float] = []
    assess = shake._assess

    def watched(*args, **kwargs):
        at_checks.append(max(seen, default=0.0))
        return assess(*args, **kwargs)

    monkeypatch.setattr(shake, "_assess", watched)
    out, outcome = shake.try_deconvolve(photos["shaken"], network=net.restore,
                                        progress=lambda f, _text: seen.append(f))
    assert outcome.path == "deconvolved", outcome.note
    assert len(at_checks) == 2 and at_checks[-1] < 1.0, at_checks  # the referee's check still to come
    assert seen == sorted(seen) and seen[-1] == 1.0 and seen.count(1.0) == 1, seen[-5:]
