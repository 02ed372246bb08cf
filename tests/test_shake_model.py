"""``--model shake``, ``--kernel``, ``--save-kernel``, ``--region`` and the default model's camera-shake
path, as a user meets them on the command line and from Python.

Photos are crops of scikit-image's licence-clean samples, shaken by `deblurcli.synth`'s own kernels
in linear light; kernel estimation takes seconds, so each shaken photo is restored once per module.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner, Result

from deblurcli.cli import app
from deblurcli.synth import blur_image, random_kernel

skimage_data = pytest.importorskip("skimage.data")
runner = CliRunner()
SIDE = 192


def _psnr(a: np.ndarray, b: np.ndarray, crop: int = 12) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[crop:-crop, crop:-crop]
    return 10 * math.log10(1.0 / float(np.mean(d * d)))


def _save(path: Path, img: np.ndarray) -> Path:
    PILImage.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def _load(path: Path) -> np.ndarray:
    return np.asarray(PILImage.open(path).convert("RGB"), dtype=np.float32) / 255.0


def deblur(*args: Any) -> Result:
    argv = [str(a) for a in args]
    if argv[0] in ("run", "batch", "eval", "bench") and "--device" not in argv:
        argv += ["--device", "cpu"]
    return runner.invoke(app, argv)


def _json_lines(res: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A sharp astronaut crop, the same shaken by a 15 px kernel (1/500 noise), defocused, and the kernel."""
    folder = tmp_path_factory.mktemp("shake")
    sharp = skimage_data.astronaut()[20:20 + SIDE, 150:150 + SIDE].astype(np.float32) / 255.0
    rng = np.random.default_rng(3)
    kernel = random_kernel(15, rng, fill=0.9)
    shaken = np.clip(blur_image(sharp, kernel, linear_light=True) + rng.normal(0, 0.002, sharp.shape), 0, 1)
    yy, xx = np.mgrid[-6:7, -6:7]
    disk = (xx**2 + yy**2 <= 36).astype(np.float32)
    defocused = np.clip(blur_image(sharp, disk / disk.sum(), linear_light=True), 0, 1)
    np.save(folder / "kernel.npy", kernel)
    (folder / "batch_in").mkdir()
    return {
        "dir": folder, "kernel": kernel,
        "sharp": _save(folder / "sharp.png", sharp), "shaken": _save(folder / "shaken.png", shaken),
        "defocused": _save(folder / "defocused.png", defocused),
        "batch_in": _save(folder / "batch_in" / "shaken.png", shaken),
    }


@pytest.fixture(scope="module")
def blind(photos: dict[str, Any]) -> dict[str, Any]:
    """``deblur run shaken.png --model shake --save-kernel k.png --compare --json``, run once."""
    d = photos["dir"]
    res = deblur("run", photos["shaken"], "--model", "shake", "-o", d / "blind.png", "--save-kernel",
                 d / "kernel_seen.png", "--compare", "--json")
    assert res.exit_code == 0, res.stderr
    (line,) = _json_lines(res)
    return {"result": line, "out": d / "blind.png", "kernel_png": d / "kernel_seen.png",
            "compare": d / "blind_compare.png", "stderr": res.stderr}


# -- the registry ----------------------------------------------------------------------------------------
def test_models_lists_shake_as_built_in_and_info_says_what_it_is() -> None:
    res = deblur("models")
    assert res.exit_code == 0
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("shake "))
    assert "built-in" in line and len(line) <= 80
    info = deblur("models", "info", "shake")
    assert info.exit_code == 0
    assert "uniform camera shake" in info.stdout and "L0" in info.stdout
    assert "Levin" in info.stdout and "32.35 dB" in info.stdout
    rows = {r["name"]: r for r in json.loads(deblur("models", "--json").stdout)}
    assert rows["shake"]["classical"] is True and rows["shake"]["where"] == "built-in"


def test_measured_levin_figure_matches_the_benchmark_file_when_present() -> None:
    from deblurcli.models import registry

    measured = registry.get("shake").measured["levin"]
    path = Path(__file__).resolve().parents[1] / measured["source"]
    if not path.is_file():
        pytest.skip(f"{measured['source']} not committed yet")
    data = json.loads(path.read_text())
    summary = data["summary"]
    assert round(float(summary["mean_psnr"]), 2) == measured["psnr"]
    assert round(float(summary["success_rate"]["3.0"]), 3) == measured["error_ratio_at_most_3"]
    assert round(float(summary["mean_cpu_seconds"]), 2) == measured["seconds_per_image"]


# -- --model shake ------------------------------------------------------------------------------------------
def test_shake_model_gains_several_db_on_a_shaken_photo(photos: dict[str, Any], blind: dict[str, Any]) -> None:
    sharp, shaken = _load(photos["sharp"]), _load(photos["shaken"])
    gain = _psnr(_load(blind["out"]), sharp) - _psnr(shaken, sharp)
    assert gain > 3.0, f"only {gain:.2f} dB better than the input"
    stats = blind["result"]["shake"]
    assert stats["path"] == "shake" and isinstance(stats["trusted"], bool)
    true_len = float(np.ptp(np.nonzero(photos["kernel"] > 0.05 * photos["kernel"].max())[1])) + 1
    assert 0.5 * 15 <= stats["shake_px"] <= 1.6 * max(true_len, 15)
    assert 0 <= stats["direction_deg"] < 180
    assert any("deconvolved" in n for n in blind["result"]["notes"])


def test_save_kernel_writes_a_picture_of_the_kernel(photos: dict[str, Any], blind: dict[str, Any]) -> None:
    from deblurcli.deconv import kernel_similarity

    pic = np.asarray(PILImage.open(blind["kernel_png"]), dtype=np.float32)
    assert pic.ndim == 2 and pic.max() == 255  # grey, the strongest weight white
    size = blind["result"]["shake"]["kernel_size"]
    zoom = pic.shape[0] // size
    assert pic.shape == (size * zoom, size * zoom)
    weights = (pic[::zoom, ::zoom] / 255.0) ** 2  # the picture shows the square root of the weights
    assert kernel_similarity(weights, photos["kernel"]) > 0.6
    # the peak lies on the trail: within 2 px of a pixel of the true (centred) kernel's support
    true = photos["kernel"]
    py, px = np.unravel_index(int(np.argmax(weights)), weights.shape)
    cy, cx = np.array(np.nonzero(true > 0.05 * true.max())).mean(axis=1)
    ys, xs = np.nonzero(true > 0.05 * true.max())
    off_y, off_x = py - size // 2, px - size // 2  # the peak relative to the centre of the estimate
    d = np.hypot(ys - (cy + off_y), xs - (cx + off_x)).min()
    assert d <= 3.0, f"the picture's peak is {d:.1f} px off the kernel's trail"


def test_compare_shows_the_kernel_as_a_third_panel(blind: dict[str, Any]) -> None:
    canvas = np.asarray(PILImage.open(blind["compare"]))
    assert canvas.shape[0] == SIDE and canvas.shape[1] > 2 * SIDE + 8  # input | result | kernel
    panel = canvas[:, 2 * SIDE + 16:]
    assert panel.max() == 255 and np.median(panel) < 10  # a white trail on black


def test_the_true_kernel_beats_blind_estimation(photos: dict[str, Any], blind: dict[str, Any]) -> None:
    out = photos["dir"] / "true.png"
    res = deblur("run", photos["shaken"], "--model", "shake", "--kernel", photos["dir"] / "kernel.npy",
                 "-o", out, "--json")
    assert res.exit_code == 0, res.stderr
    sharp = _load(photos["sharp"])
    assert _psnr(_load(out), sharp) > _psnr(_load(blind["out"]), sharp)
    assert _json_lines(res)[0]["shake"]["path"] == "kernel"


@pytest.mark.parametrize("content", ["zeros", "negative", "3d", "text"])
def test_a_kernel_file_that_is_not_a_kernel_is_one_line_naming_it(photos: dict[str, Any], tmp_path: Path,
                                                                  content: str) -> None:
    bad = tmp_path / ("bad.png" if content == "text" else "bad.npy")
    if content == "text":
        bad.write_text("not a picture")
    else:
        arr = {"zeros": np.zeros((5, 5)), "negative": -np.ones((5, 5)), "3d": np.ones((3, 3, 3))}[content]
        np.save(bad, arr)
    res = deblur("run", photos["shaken"], "--model", "shake", "--kernel", bad, "-o", tmp_path / "o.png")
    assert res.exit_code in (1, 2)
    assert len(res.stderr.strip().splitlines()) == 1 and str(bad) in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_a_kernel_larger_than_the_photo_is_refused(photos: dict[str, Any], tmp_path: Path) -> None:
    np.save(tmp_path / "big.npy", np.ones((SIDE + 1, SIDE + 1)))
    res = deblur("run", photos["shaken"], "--model", "shake", "--kernel", tmp_path / "big.npy",
                 "-o", tmp_path / "o.png")
    assert res.exit_code == 1 and "not smaller than the image" in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_shake_on_a_flat_photo_is_one_line_naming_it(tmp_path: Path) -> None:
    flat = _save(tmp_path / "flat.png", np.full((96, 96, 3), 0.5, np.float32))
    res = deblur("run", flat, "--model", "shake", "-o", tmp_path / "o.png")
    assert res.exit_code == 1
    (line,) = res.stderr.strip().splitlines()
    assert str(flat) in line and "too flat" in line and "--kernel FILE" in line
    assert not (tmp_path / "o.png").exists()


def test_region_outside_the_photo_or_malformed_is_a_usage_error(photos: dict[str, Any], tmp_path: Path) -> None:
    res = deblur("run", photos["shaken"], "--model", "shake", "--region", "150,150,100,100", "-o", tmp_path / "o.png")
    assert res.exit_code == 2 and "--region 150,150,100,100" in res.stderr and f"{SIDE}x{SIDE}" in res.stderr
    res = deblur("run", photos["shaken"], "--model", "shake", "--region", "1,2,3", "-o", tmp_path / "o.png")
    assert res.exit_code == 2 and "X,Y,W,H" in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_options_that_shake_does_not_use_are_refused(photos: dict[str, Any], tmp_path: Path,
                                                      tiny_model: Path) -> None:
    for extra, flag in ((["--tile", "256"], "--tile"), (["--ensemble", "2"], "--ensemble"),
                        (["--scale", "2"], "--scale"), (["--precision", "bf16"], "--precision")):
        res = deblur("run", photos["shaken"], "--model", "shake", *extra, "-o", tmp_path / "o.png")
        assert res.exit_code == 2 and flag in res.stderr and "shake" in res.stderr, res.stderr
    # a paper's network takes no kernel: refused, not ignored
    res = deblur("run", photos["shaken"], "--model", tiny_model, "--kernel", photos["dir"] / "kernel.npy",
                 "-o", tmp_path / "o.png")
    assert res.exit_code == 2 and "--kernel" in res.stderr
    res = deblur("run", photos["shaken"], "--deconv", "off", "--region", "0,0,64,64", "-o", tmp_path / "o.png")
    assert res.exit_code == 2 and "--deconv auto" in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_save_kernel_takes_one_input_and_a_png(photos: dict[str, Any], tmp_path: Path) -> None:
    res = deblur("run", photos["shaken"], photos["sharp"], "-o", tmp_path / "out/", "--model", "shake",
                 "--save-kernel", tmp_path / "k.png")
    assert res.exit_code == 2 and "--save-kernel" in res.stderr
    res = deblur("run", photos["shaken"], "--model", "shake", "--save-kernel", tmp_path / "k.jpg",
                 "-o", tmp_path / "o.png")
    assert res.exit_code == 2 and ".png" in res.stderr


# -- Python -----------------------------------------------------------------------------------------------
def test_the_default_model_deconvolves_with_a_given_kernel(photos: dict[str, Any], tmp_path: Path) -> None:
    from deblurcli import Deblurrer

    d = Deblurrer(progress=False, kernel=str(photos["dir"] / "kernel.npy"))  # whatever --deconv says
    res = d.restore_file(photos["shaken"], tmp_path / "out.png")
    assert res.shake is not None and res.shake["path"] == "kernel"
    sharp = _load(photos["sharp"])
    assert _psnr(_load(tmp_path / "out.png"), sharp) - _psnr(_load(photos["shaken"]), sharp) > 3.0


def test_deblurrer_shake_restores_a_file(photos: dict[str, Any], tmp_path: Path) -> None:
    from deblurcli import Deblurrer

    d = Deblurrer("shake", progress=False, kernel=str(photos["dir"] / "kernel.npy"))
    assert d.weights_sha256 is None and d.describe()["arch"] == "shake"
    res = d.restore_file(photos["shaken"], tmp_path / "out.png")
    sharp = _load(photos["sharp"])
    assert _psnr(_load(tmp_path / "out.png"), sharp) - _psnr(_load(photos["shaken"]), sharp) > 3.0
    assert res.shake is not None and res.shake["path"] == "kernel"
    assert d.restore(_load(photos["shaken"]), strength=0.0).max() > 0  # the array API too


# -- the default model -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_runs(photos: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The default model with ``--deconv auto`` on the sharp, the shaken and the defocused photo."""
    out = {}
    for name in ("sharp", "shaken", "defocused"):
        dst = photos["dir"] / f"default_{name}.png"
        res = deblur("run", photos[name], "-o", dst, "--json", "--deconv", "auto")
        assert res.exit_code == 0, res.stderr
        out[name] = {**_json_lines(res)[0], "path": dst}
    return out


def test_default_leaves_a_sharp_photo_as_it_is(photos: dict[str, Any], default_runs: dict[str, Any]) -> None:
    """The network sharpens whatever it gets (a sharp photo loses 15.8 dB to it): with --deconv auto
    a photo `deblur inspect` judges sharp comes back unchanged, and the note says why."""
    r = default_runs["sharp"]
    assert any(n.startswith("judged sharp") and "left as it is" in n for n in r["notes"]), r["notes"]
    np.testing.assert_array_equal(np.asarray(PILImage.open(r["path"])), np.asarray(PILImage.open(photos["sharp"])))


def test_default_leaves_defocus_to_the_network(default_runs: dict[str, Any]) -> None:
    """A 13 px defocus disk is no camera path: its estimate is a round blob (`deconv.assess`)."""
    r = default_runs["defocused"]
    assert r["shake"]["path"] == "network"
    assert any("network only" in n for n in r["notes"])


def test_default_on_defocus_is_no_worse_than_the_network_alone(photos: dict[str, Any],
                                                               default_runs: dict[str, Any]) -> None:
    """Whatever the verdict on a defocused photo, ``--deconv auto`` must not lose to today's network."""
    off = photos["dir"] / "default_defocused_off.png"
    res = deblur("run", photos["defocused"], "-o", off, "--deconv", "off")
    assert res.exit_code == 0, res.stderr
    sharp = _load(photos["sharp"])
    assert _psnr(_load(default_runs["defocused"]["path"]), sharp) >= _psnr(_load(off), sharp) - 0.1


def test_default_deconvolves_trusted_shake_and_beats_the_network_alone(photos: dict[str, Any],
                                                                      default_runs: dict[str, Any]) -> None:
    r = default_runs["shaken"]
    assert r["shake"]["path"] == "deconvolved" and r["shake"]["trusted"] is True
    assert any(n.startswith("camera shake") and n.endswith(": deconvolved") for n in r["notes"])
    off = photos["dir"] / "default_off.png"
    res = deblur("run", photos["shaken"], "-o", off, "--json", "--deconv", "off")
    assert res.exit_code == 0, res.stderr
    assert "shake" not in _json_lines(res)[0]  # the earlier behaviour: the network alone, nothing estimated
    sharp = _load(photos["sharp"])
    assert _psnr(_load(r["path"]), sharp) > _psnr(_load(off), sharp) + 1.0


def test_the_default_deconvolves_exactly_as_the_engine_does(photos: dict[str, Any]) -> None:
    """The default model estimates, asks `assess`, then deconvolves (two steps, so a photo left to
    the network costs no deconvolution); the pixels must be those of the engine's one-call
    `restore_rgb`, or the benchmark figures of the engine would not be the default's."""
    from deblurcli.api import Deblurrer
    from deblurcli.deconv import restore_rgb

    shaken = _load(photos["shaken"])
    d = Deblurrer("default", device="cpu", progress=False, deconv="auto")
    ours, outcome = d.restore(shaken), d.last_outcome
    assert outcome is not None and outcome.path == "deconvolved", outcome
    engine, est = restore_rgb(shaken)
    np.testing.assert_array_equal(outcome.kernel, est.kernel)
    assert outcome.estimate.linear_light == est.linear_light
    np.testing.assert_allclose(ours, np.clip(engine, 0, 1), atol=1e-5)


def test_default_on_a_photo_too_small_to_estimate_falls_back_to_the_network(tmp_path: Path) -> None:
    small = _save(tmp_path / "small.png", np.random.default_rng(0).random((32, 40, 3)))
    res = deblur("run", small, "-o", tmp_path / "o.png", "--json", "--deconv", "auto")
    assert res.exit_code == 0, res.stderr
    r = _json_lines(res)[0]
    assert "shake" not in r and sum("network only" in n for n in r["notes"]) == 1
    assert (tmp_path / "o.png").is_file()


# -- batch ----------------------------------------------------------------------------------------------
def test_batch_with_shake_resumes_and_reports_the_kernel(photos: dict[str, Any]) -> None:
    out = photos["dir"] / "batch_out"
    args = ["batch", photos["dir"] / "batch_in", out, "--model", "shake", "--json"]
    first = deblur(*args)
    assert first.exit_code == 0, first.stderr
    (r,) = _json_lines(first)
    assert r["status"] == "ok" and r["shake"]["path"] == "shake" and r["shake"]["shake_px"] > 5
    again = deblur(*args)
    assert again.exit_code == 0 and [x["status"] for x in _json_lines(again)] == ["skipped"]
    changed = deblur(*args, "--kernel", photos["dir"] / "kernel.npy")  # another kernel: other pixels
    assert [x["status"] for x in _json_lines(changed)] == ["ok"]


# -- eval and bench ------------------------------------------------------------------------------------------
def test_eval_and_bench_run_shake(photos: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "blurred").mkdir()
    (tmp_path / "sharp").mkdir()
    (tmp_path / "blurred" / "a.png").write_bytes(photos["shaken"].read_bytes())
    (tmp_path / "sharp" / "a.png").write_bytes(photos["sharp"].read_bytes())
    res = deblur("eval", "--dataset", "pairs", "--data-dir", tmp_path / "blurred", "--sharp-dir", tmp_path / "sharp",
                 "--model", "shake", "--json")
    assert res.exit_code == 0, res.stderr
    result = json.loads(res.stdout)
    err = _load(photos["shaken"]).astype(np.float64) - _load(photos["sharp"])
    before = 10 * math.log10(1.0 / float(np.mean(err * err)))  # as eval scores: every pixel
    assert result["model"] == "shake" and result["summary"]["psnr"] > before + 3.0
    assert "no paper" in result["paper"]["why_none"]
    res = deblur("bench", "--model", "shake", "--size", "128x128", "--repeat", "1", "--json")
    assert res.exit_code == 0, res.stderr
    timing = json.loads(res.stdout)
    assert timing["model"]["model"] == "shake" and timing["model"]["seconds"] > 0 and "scan" not in timing
