"""`deblur inspect`, `deblur batch --only-blurry` and the no-reference quality in reports (issue #29).

Photos are crops of scikit-image's data photographs (BSD), shaken with `deblurcli.synth`'s
camera-shake kernels; the batch tests use the tiny random ALGNet, since what matters there is
which files are restored, skipped or replaced, not how well.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from typer.testing import CliRunner

from deblurcli import synth
from deblurcli.batch import JOURNAL, BatchOptions, run_batch
from deblurcli.cli import DEFAULT_BLUR_THRESHOLD, app
from deblurcli.deconv import kernel_stats
from deblurcli.deconv.engine import touches_border
from deblurcli.errors import KernelError
from deblurcli.inspect import (
    DEFAULT_THRESHOLD,
    FIRST_SIZE,
    estimate_shake,
    inspect,
    judge,
    suggested_scale,
)
from deblurcli.quality import sharp_note

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def crop(name: str, side: int = 256) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    h, w = img.shape[:2]
    img = img[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img.astype(np.float32) / 255.0


def shaken(img: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    k = synth.random_kernel(size, np.random.default_rng(seed))
    return synth.blur_image(img, k), k


def save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two sharp photos and two shaken ones (31 and 25 px kernels), as PNG files."""
    root = tmp_path_factory.mktemp("photos")
    out = {"camera_sharp.png": crop("camera"), "astronaut_sharp.png": crop("astronaut")}
    out["camera_shaken.png"] = shaken(crop("camera"), 31, 3)[0]
    out["astronaut_shaken.png"] = shaken(crop("astronaut"), 25, 4)[0]
    return {name: save(root / name, img) for name, img in out.items()}


def test_the_cli_default_is_the_library_default() -> None:
    assert DEFAULT_BLUR_THRESHOLD == DEFAULT_THRESHOLD


def test_verdict_sharp_and_shaken() -> None:
    sharp = crop("camera")
    blurred, k = shaken(sharp, 31, 3)
    assert not judge(sharp).blurred and judge(sharp).confidence > 0.6
    rec = inspect(blurred)
    assert rec.blurred and rec.confidence > 0.9
    assert rec.sharpness < judge(sharp).sharpness
    truth = kernel_stats(k)
    assert rec.shake_px is not None and rec.direction_deg is not None
    assert abs(rec.shake_px - truth.extent_px) <= 0.3 * truth.extent_px
    turn = abs(rec.direction_deg - truth.direction_deg) % 180
    assert min(turn, 180 - turn) <= 20
    assert rec.suggestion is not None and rec.suggestion.startswith("deblur run")
    # A sharp photo gets no kernel (its estimate would be a meaningless blob) and no command.
    rec = inspect(sharp)
    assert rec.shake_px is None and rec.suggestion is None and rec.kernel is None


def test_the_sharp_note_never_shows_a_number_above_the_threshold_it_passed() -> None:
    # 1.8996 px is under 1.9, and the note a user reads must not say "1.90 px <= 1.9".
    assert sharp_note(1.8996, 1.9) == "judged sharp (blur 1.89 px <= 1.9)"
    assert sharp_note(1.13, 2.25) == "judged sharp (blur 1.13 px <= 2.25)"  # 1.13 * 100 is 112.99999...


def test_an_implausible_estimate_on_a_dim_photo_is_retried_at_raised_contrast(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import deblurcli.inspect as insp

    calls: list[float] = []
    stroke = np.zeros((25, 25), np.float32)
    stroke[12, 5:20] = 1 / 15
    yy, xx = np.mgrid[-12:13, -12:13]
    blob = (xx ** 2 + yy ** 2 <= 100).astype(np.float32)
    assert insp.stroke_width(stroke) < 1.5  # 15 px over a length of 13 (the central 85% of the weight)
    assert insp.stroke_width(blob) > insp.RETRY_WIDTH  # a 21 px disk spreads over ~16 px per px of length

    def fake(gray: np.ndarray, scale: float, *, gain: float = 1.0, **_: object) -> insp.ShakeEstimate:
        calls.append(gain)
        plausible = gain != 1.0 and retried_plausible or gain == 1.0 and own_is_blob
        k = blob / blob.sum() if gain == 1.0 and own_is_blob else stroke
        return insp.ShakeEstimate(kernel=k, stats=kernel_stats(k), factor=1.0, sizes_tried=[5], plausible=plausible,
                                  reasons=() if plausible else ("unstable across scales",), length_px=3.0, gain=gain)

    monkeypatch.setattr(insp, "_estimate_shake", fake)
    dim = (0.3 + 0.2 * crop("moon")).astype(np.float32)  # a photo whose contrast is a fifth of the range
    retried_plausible, own_is_blob = True, False
    est = estimate_shake(dim)
    assert est.gain > 1.0 and est.plausible
    # The gain brings the linear grey's 0.5-99.5 percentile range to RETRY_RANGE.
    gray, _ = insp._gray_for_estimate(dim)
    lo, hi = np.percentile(gray, [0.5, 99.5])
    assert calls == [1.0, pytest.approx(insp.RETRY_RANGE / (hi - lo))]
    # A retry that is no more plausible is not taken: the photo's own estimate stays.
    calls.clear()
    retried_plausible = False
    est = estimate_shake(dim)
    assert len(calls) == 2 and est.gain == 1.0
    # A blob is retried though the engine's rule lets it pass: a camera path is a thin stroke.
    calls.clear()
    retried_plausible, own_is_blob = True, True
    est = estimate_shake(dim)
    assert len(calls) == 2 and est.gain > 1.0 and insp.stroke_width(est.kernel) < 1.5
    # A photo with contrast to spare is not retried (raising it would only lower it), nor with retry=False.
    calls.clear()
    assert estimate_shake(crop("camera")).gain == 1.0 and calls == [1.0]
    calls.clear()
    assert estimate_shake(dim, retry=False).gain == 1.0 and calls == [1.0]


def test_the_shake_ladder_grows_only_for_a_kernel_cut_by_its_window() -> None:
    inside = np.zeros((49, 49))
    inside[24, 5:44] = 1 / 39  # a 39 px stroke, centred, clear of the 2 px frame
    cut = np.zeros((49, 49))
    cut[24, :] = 1 / 49  # the same stroke running into the frame: 4 of 49 px in it
    assert not touches_border(inside) and touches_border(cut)
    # The estimate starts at the calibrated window, and a 256 px crop has room for it.
    est = estimate_shake(shaken(crop("camera"), 15, 5)[0])
    assert est.sizes_tried[0] == FIRST_SIZE and est.kernel.shape[0] == est.sizes_tried[-1]
    with pytest.raises(KernelError, match="too flat"):
        estimate_shake(np.full((256, 256), 0.5, np.float32))


def test_a_long_shake_is_not_read_short() -> None:
    # A 59 px kernel window, the benchmark's longest (where most lengths used to read short), on a
    # 512 px photo: the length comes within the benchmark's 25%.
    blurred, k = shaken(crop("camera", 512), 59, 59)
    rec = inspect(blurred)
    truth = kernel_stats(k).extent_px
    assert rec.blurred and rec.shake_px is not None
    assert abs(rec.shake_px - truth) <= 0.25 * truth, (rec.shake_px, truth)


def test_an_estimate_no_edge_could_shape_is_no_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no kernel step could be made (every edge below the noise), the estimator's initial
    two-pixel streak must not be reported as a measured shake."""
    import dataclasses

    from deblurcli.deconv import estimate as est_mod

    real = est_mod.estimate_pyramid

    def unshaped(*args, **kw):  # noqa: ANN002, ANN003, ANN202 - forwards to the real signature
        return dataclasses.replace(real(*args, **kw), kernel_steps=0)

    monkeypatch.setattr(est_mod, "estimate_pyramid", unshaped)
    rec = inspect(shaken(crop("camera"), 15, 5)[0])
    assert rec.blurred and rec.shake_px is None and rec.kernel is None and rec.note


def test_an_empty_estimate_is_no_length(monkeypatch: pytest.MonkeyPatch) -> None:
    # The estimator can return an all-zero kernel (edges too faint): the report then has no length
    # and says why, rather than a "0 px" shake.
    from deblurcli import inspect as inspect_mod

    real = inspect_mod._ladder

    def empty(*args, **kw):  # noqa: ANN002, ANN003, ANN202 - forwards to the real signature
        res, tried = real(*args, **kw)
        res.kernel = np.zeros_like(res.kernel)
        return res, tried

    monkeypatch.setattr(inspect_mod, "_ladder", empty)
    rec = inspect(shaken(crop("camera"), 15, 5)[0])
    assert rec.blurred and rec.shake_px is None and rec.kernel is None and rec.note


def test_suggested_scale_brings_the_shake_inside_training() -> None:
    assert suggested_scale(30, 41) == 1
    assert suggested_scale(60, 41) == 2  # 60 > 1.2 * 41, 30 is not
    assert suggested_scale(150, 41) == 4


def test_cli_json_save_kernel_and_bad_files(photos: dict[str, Path], tmp_path: Path, tiny_model: Path) -> None:
    folder = photos["camera_sharp.png"].parent
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    kernel = tmp_path / "trace.png"
    res = CliRunner().invoke(app, ["inspect", str(photos["camera_shaken.png"]), "--json", "--save-kernel",
                                   str(kernel)])
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    for key, kind in (("file", str), ("blurred", bool), ("confidence", float), ("shake_px", float),
                      ("direction_deg", float), ("sharpness", float)):
        assert isinstance(row[key], kind), (key, row)
    assert row["blurred"] and row["kernel_png"] == str(kernel)
    assert PILImage.open(kernel).size[0] >= 128  # the trace, enlarged to be seen

    res = CliRunner().invoke(app, ["inspect", str(bad), str(folder), "--json", "--verdict-only"])
    assert res.exit_code == 1
    rows = json.loads(res.stdout)
    verdicts = {Path(r["file"]).name: r["blurred"] for r in rows if "error" not in r}
    assert verdicts == {"astronaut_shaken.png": True, "astronaut_sharp.png": False, "camera_shaken.png": True,
                        "camera_sharp.png": False}
    errors = [line for line in ANSI.sub("", res.stderr).splitlines() if line.startswith("error:")]
    # The same one line as `deblur run` gives for that file.
    run = CliRunner().invoke(app, ["run", str(bad), "-o", str(tmp_path / "x.png"), "--model", str(tiny_model)])
    assert run.exit_code == 1
    assert errors == [line for line in ANSI.sub("", run.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0]


@pytest.fixture
def mixed(photos: dict[str, Path], tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    for name, path in photos.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(path.read_bytes())
    return folder


def test_batch_only_blurry_restores_exactly_the_blurred(mixed: Path, tmp_path: Path, tiny_model: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = ["batch", str(mixed), str(out), "--model", str(tiny_model), "--device", "cpu", "--only-blurry",
            "--report", str(report)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "astronaut_shaken.png", "camera_shaken.png"]
    files = {f["input"]: f for f in json.loads(report.read_text())["files"]}
    for name in ("camera_sharp.png", "astronaut_sharp.png"):
        assert files[name]["status"] == "skipped" and files[name]["judged_sharp"]
        assert not judge(mixed / name).blurred and "output" not in files[name]  # inspect's verdict too
        # The report shows the number the threshold was compared with, and the note says it.
        assert files[name]["blur_px_before"] == pytest.approx(judge(mixed / name).blur_px, abs=1e-3)
        assert files[name]["blur_px_before"] <= DEFAULT_THRESHOLD
        assert f"blur {files[name]['blur_px_before']:.2f} px" in " ".join(files[name]["notes"])
    for name in ("camera_shaken.png", "astronaut_shaken.png"):
        assert files[name]["status"] == "ok"
        assert judge(mixed / name).blurred
        assert isinstance(files[name]["edge_px_after"], float) and isinstance(files[name]["worse"], bool)

    # A rerun does nothing: no file restored, the sharp ones judged from the journal, not re-read.
    journal = (out / JOURNAL).read_text()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    again = {f["input"]: f for f in json.loads(report.read_text())["files"]}
    assert {f["status"] for f in again.values()} == {"skipped"}
    assert again["camera_sharp.png"]["edge_px_before"] == files["camera_sharp.png"]["edge_px_before"]
    assert again["camera_sharp.png"]["blur_px_before"] == files["camera_sharp.png"]["blur_px_before"]
    assert (out / JOURNAL).read_text() == journal

    # Without --only-blurry the sharp ones are work still to do, and only they are done.
    res = CliRunner().invoke(app, args[:-3] + ["--report", str(report)])
    assert res.exit_code == 0, res.output
    last = {f["input"]: f["status"] for f in json.loads(report.read_text())["files"]}
    assert last == {"camera_sharp.png": "ok", "astronaut_sharp.png": "ok", "camera_shaken.png": "skipped",
                    "astronaut_shaken.png": "skipped"}


def _blurring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the model's output blurrier than its input: a model that does harm on this photo."""
    import cv2

    from deblurcli.api import Deblurrer

    real = Deblurrer.restore_image

    def worse(self: Deblurrer, img, **kw):  # noqa: ANN001, ANN202 - the patched method's own signature
        before = np.array(img.samples, copy=True)  # restore_image may write over the photo's samples
        out = real(self, img, **kw)
        out[...] = cv2.blur(before, (9, 9)).astype(out.dtype)
        return out

    monkeypatch.setattr(Deblurrer, "restore_image", worse)


@pytest.mark.parametrize("keep", [False, True])
def test_an_output_worse_than_its_input(mixed: Path, tmp_path: Path, tiny_model: Path,
                                        monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
    from deblurcli.api import Deblurrer

    _blurring(monkeypatch)
    src = mixed / "camera_sharp.png"
    out = tmp_path / "out"
    d = Deblurrer(str(tiny_model), device="cpu")
    summary = run_batch(d, mixed, out, BatchOptions(glob="camera_sharp.png", keep_original_if_worse=keep))
    [res] = summary.results
    q = summary.quality[res.input]
    assert res.status == "ok" and q["worse"] and q["edge_px_after"] > q["edge_px_before"]
    assert summary.worse == ["camera_sharp.png"]
    assert summary.as_dict()["files"][0]["worse"] is True
    written = (out / "camera_sharp.png").read_bytes()
    assert (written == src.read_bytes()) is keep
    assert bool(q.get("kept_original")) is keep
    assert any("less sharp than its input" in n for n in res.notes)
    # The journal keeps it: a rerun skips the file and still reports it as worse.
    again = run_batch(d, mixed, out, BatchOptions(glob="camera_sharp.png", keep_original_if_worse=keep))
    assert again.results[0].status == "skipped" and again.worse == ["camera_sharp.png"]
    if not keep:  # asking for the original later replaces the worse output with it
        third = run_batch(d, mixed, out, BatchOptions(glob="camera_sharp.png", keep_original_if_worse=True))
        assert third.results[0].status == "ok"
        assert (out / "camera_sharp.png").read_bytes() == src.read_bytes()


def test_keep_original_in_another_format_re_encodes_its_pixels(mixed: Path, tmp_path: Path, tiny_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from deblurcli.api import Deblurrer

    _blurring(monkeypatch)
    out = tmp_path / "out"
    d = Deblurrer(str(tiny_model), device="cpu")
    run_batch(d, mixed, out, BatchOptions(glob="camera_sharp.png", keep_original_if_worse=True, format="tiff"))
    kept = np.asarray(PILImage.open(out / "camera_sharp.tif").convert("RGB"))
    assert np.array_equal(kept, np.asarray(PILImage.open(mixed / "camera_sharp.png").convert("RGB")))


def test_eval_without_ground_truth(photos: dict[str, Path], tmp_path: Path, tiny_model: Path) -> None:
    report = tmp_path / "eval.json"
    folder = photos["camera_sharp.png"].parent
    res = CliRunner().invoke(app, ["eval", "--dataset", "pairs", "--data-dir", str(folder), "--model",
                                   str(tiny_model), "--device", "cpu", "--report", str(report), "--limit", "2"])
    assert res.exit_code == 0, res.output
    result = json.loads(report.read_text())
    assert result["protocol"] == "no-reference"
    assert result["summary"]["count"] == 2 and result["summary"]["psnr"] is None
    for rec in result["images"]:
        assert rec["edge_px_before"] >= 1.0 and rec["edge_px_after"] >= 1.0 and rec["psnr"] is None
    assert "edge width" in ANSI.sub("", res.stdout)


def clip(path: Path, img: np.ndarray, n: int = 12) -> Path:
    """An h264 clip of ``n`` frames of the same picture (near-lossless, so the verdict is the picture's)."""
    import av

    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=24, options={"crf": "4"})
        v.width, v.height, v.pix_fmt = u8.shape[1], u8.shape[0], "yuv444p"
        for i in range(n):
            f = av.VideoFrame.from_ndarray(u8, format="rgb24")
            f.pts = i
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    return path


def test_videos_are_judged_on_sampled_frames(tmp_path: Path) -> None:
    sharp = clip(tmp_path / "steady.mp4", crop("camera"))
    shaky = clip(tmp_path / "shaky.mp4", shaken(crop("camera"), 31, 3)[0])
    res = CliRunner().invoke(app, ["inspect", str(sharp), str(shaky), "--json", "--verdict-only"])
    assert res.exit_code == 0, res.output
    rows = {Path(r["file"]).name: r for r in json.loads(res.stdout)}
    assert not rows["steady.mp4"]["blurred"] and rows["shaky.mp4"]["blurred"]
    assert len(rows["shaky.mp4"]["frames"]) == 3 and all(f["blurred"] for f in rows["shaky.mp4"]["frames"])
    assert rows["shaky.mp4"]["suggestion"].startswith("deblur run")


def test_inspect_takes_the_same_threshold_flag_as_batch(photos: dict[str, Path]) -> None:
    shaken = str(photos["camera_shaken.png"])
    res = CliRunner().invoke(app, ["inspect", shaken, "--json", "--verdict-only", "--blur-threshold", "50"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["blurred"] is False  # no photo's edges are 50 px wide


def test_blur_threshold_without_only_blurry_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["batch", str(tmp_path), str(tmp_path / "out"), "--blur-threshold", "2.5"])
    assert res.exit_code == 2
    assert "--blur-threshold only applies with --only-blurry" in ANSI.sub("", res.stderr)


def test_batch_only_blurry_judges_videos_too(tmp_path: Path, tiny_model: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    clip(folder / "steady.mp4", crop("camera"), n=6)
    clip(folder / "shaky.mp4", shaken(crop("camera"), 31, 3)[0], n=6)
    out, report = tmp_path / "out", tmp_path / "r.json"
    res = CliRunner().invoke(app, ["batch", str(folder), str(out), "--model", str(tiny_model), "--device", "cpu",
                                   "--only-blurry", "--report", str(report)])
    assert res.exit_code == 0, res.output
    files = {f["input"]: f for f in json.loads(report.read_text())["files"]}
    assert files["shaky.mp4"]["status"] == "ok" and files["steady.mp4"]["status"] == "skipped"
    assert files["steady.mp4"]["judged_sharp"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["shaky.mp4"]
