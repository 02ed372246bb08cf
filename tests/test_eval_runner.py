"""The runner end to end on tiny datasets: scores recompute from the saved PNGs, failures stay per image."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from oracles import volumetric_ssim

from deblurcli.errors import DeblurError, ImageError, UsageError
from deblurcli.eval import evaluate, find_pairs, runner, write_csv, write_json
from deblurcli.eval.datasets import Pair


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    t = cv2.GaussianBlur(noise, (0, 0), 2.0)
    return (t - t.min()) / (t.max() - t.min())


def _save(path: Path, rgb01: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    u8 = np.floor(np.clip(rgb01, 0, 1) * 255 + 0.5).astype(np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))


def _read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i, name in enumerate(["a.png", "seq/b.jpg", "c.png"]):
        sharp = _texture(64, 64, i)
        blurred = cv2.GaussianBlur(sharp, (0, 0), 1.2)
        _save(root / "test" / "input" / name, blurred)
        _save(root / "test" / "target" / Path(name).with_suffix(".png"), sharp)
    return root


def _restore(x: np.ndarray) -> np.ndarray:
    """A stand-in model: a mild unsharp mask that overshoots [0, 1], so clamping matters."""
    assert x.dtype == np.float32 and x.ndim == 3 and x.shape[2] == 3
    return x + 0.8 * (x - cv2.GaussianBlur(x, (0, 0), 1.0))


def _independent_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def test_json_scores_recompute_from_saved_pngs(dataset: Path, tmp_path: Path) -> None:
    pairs = find_pairs("gopro", dataset)
    seen: list[tuple[int, int, str]] = []
    result = evaluate(_restore, pairs, dataset="gopro", protocol="auto", save_dir=tmp_path / "out",
                      progress=lambda done, total, rec: seen.append((done, total, rec["name"])))
    assert seen == [(1, 3, "a.png"), (2, 3, "c.png"), (3, 3, "seq/b.jpg")]
    write_json(result, tmp_path / "result.json")
    loaded = json.loads((tmp_path / "result.json").read_text())
    assert loaded["protocol"] == "matlab" and loaded["dataset"] == "gopro" and loaded["model"] is None
    assert [i["name"] for i in loaded["images"]] == ["a.png", "c.png", "seq/b.jpg"]

    for image, pair in zip(loaded["images"], pairs, strict=True):
        assert image["status"] == "ok" and "error" not in image
        saved = tmp_path / "out" / Path(image["name"]).with_suffix(".png")
        restored, gt = _read_rgb(saved), _read_rgb(pair.sharp)
        assert image["psnr"] == pytest.approx(_independent_psnr(restored, gt), rel=0, abs=1e-12)
        assert image["ssim"] == pytest.approx(volumetric_ssim(restored, gt), abs=1e-10)
        assert image["seconds"] >= 0 and image["megapixels"] == pytest.approx(64 * 64 / 1e6)
        # the saved file is what restore_fn produced, clamped and rounded
        expected = np.floor(np.clip(_restore(_read_rgb(pair.blur).astype(np.float32) / 255), 0, 1) * 255 + 0.5)
        assert np.array_equal(restored, expected.astype(np.uint8))
    assert not list((tmp_path / "out").rglob("*.tmp"))

    s = loaded["summary"]
    assert s["count"] == 3 and s["failed"] == 0
    assert s["psnr"] == pytest.approx(np.mean([i["psnr"] for i in loaded["images"]]), abs=1e-12)
    assert s["ssim_2d"] == pytest.approx(np.mean([i["ssim_2d"] for i in loaded["images"]]), abs=1e-12)
    assert s["seconds_per_image"] > 0 and s["megapixels_per_second"] > 0 and s["peak_memory_mb"] > 0
    assert s["lpips"] is None and "LPIPS" in s["lpips_skipped"]
    assert "volume" in loaded["definitions"]["ssim"]


def test_failures_are_recorded_per_image(dataset: Path) -> None:
    pairs = find_pairs("gopro", dataset)
    pairs.append(Pair("broken.png", dataset / "test" / "input" / "missing.png", pairs[0].sharp))

    calls: list[int] = []

    def restore(x: np.ndarray) -> np.ndarray:
        calls.append(1)
        return x[:-1] if len(calls) == 2 else x  # one row short for the second image (c.png)

    result = evaluate(restore, pairs, dataset="pairs", protocol="matlab")
    statuses = {i["name"]: i["status"] for i in result["images"]}
    assert statuses == {"a.png": "ok", "c.png": "failed", "seq/b.jpg": "ok", "broken.png": "failed"}
    short = next(i for i in result["images"] if i["name"] == "c.png")
    assert short["psnr"] is None
    assert "the model returned (63, 64, 3) for an input of shape (64, 64, 3)" in short["error"]
    broken = next(i for i in result["images"] if i["name"] == "broken.png")
    assert "missing.png" in broken["error"] and broken["psnr"] is None
    assert result["summary"]["failed"] == sum(s == "failed" for s in statuses.values())
    assert result["summary"]["count"] == sum(s == "ok" for s in statuses.values())
    assert len(calls) == 3  # the unreadable image never reached the model


def test_realblur_protocol_reports_ecc_failure(tmp_path: Path) -> None:
    root = tmp_path / "RealBlur"
    top = "RealBlur-J_ECC_IMCORR_centroid_itensity_ref"
    lines = []
    for i in range(2):
        gt = _texture(80, 80, 10 + i)
        _save(root / top / f"scene00{i}" / "gt" / "gt_1.png", gt)
        _save(root / top / f"scene00{i}" / "blur" / "blur_1.png", np.roll(gt, 2, axis=1))
        lines.append(f"{top}/scene00{i}/gt/gt_1.png {top}/scene00{i}/blur/blur_1.png")
    (root / "RealBlur_J_test_list.txt").write_text("\n".join(lines))
    pairs = find_pairs("realblur-j", root)
    names = iter(p.name for p in pairs)

    def restore(x: np.ndarray) -> np.ndarray:  # identity, but a flat image (ECC cannot align) for one
        return np.full_like(x, 0.5) if next(names) == pairs[1].name else x

    result = evaluate(restore, pairs, dataset="realblur-j", protocol=None, save_dir=tmp_path / "out")
    assert result["protocol"] == "realblur"
    good, bad = result["images"]
    assert good["status"] == "ok" and good["psnr"] > 35 and good["ecc"] > 0.9 and good["ssim_2d"] is None
    assert bad["status"] == "failed" and "ECC alignment failed" in bad["error"]
    assert result["summary"]["count"] == 1 and result["summary"]["failed"] == 1
    assert result["summary"]["psnr"] == good["psnr"]
    assert (tmp_path / "out" / "scene000" / "blur_1.png").is_file()


def test_limit_reports_and_stdout(dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = find_pairs("pairs", dataset / "test")
    result = evaluate(lambda x: x, pairs, dataset="pairs", protocol="auto", limit=2, lpips=False)
    assert len(result["images"]) == 2 and result["summary"]["lpips_skipped"] == "LPIPS not requested"
    result["images"][0]["psnr"] = math.inf  # identical images: strict JSON gets null
    write_json(result, "-")
    out = json.loads(capsys.readouterr().out)
    assert out["images"][0]["psnr"] is None

    write_csv(result, "-")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["name"] for r in rows] == ["a.png", "c.png"]
    assert rows[1]["psnr"] and float(rows[1]["psnr"]) == result["images"][1]["psnr"]
    assert rows[0]["psnr"] == "" and rows[0]["status"] == "ok"


def test_report_that_cannot_be_written_is_one_line_naming_it(tmp_path: Path) -> None:
    """A report goes through the one atomic writer: a failed write is one line naming the file, nothing left behind."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(ImageError) as caught:
        write_json({"summary": {}}, blocker / "report.json")
    assert str(blocker / "report.json") in str(caught.value) and "\n" not in str(caught.value)
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_bad_arguments(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "load_lpips", lambda: (None, "LPIPS skipped: not installed"))
    pairs = find_pairs("pairs", dataset / "test")
    with pytest.raises(UsageError):
        evaluate(lambda x: x, pairs, dataset="pairs", protocol="psnr-y")
    with pytest.raises(UsageError):
        evaluate(lambda x: x, pairs, dataset="pairs", protocol="auto", limit=0)
    with pytest.raises(DeblurError, match="LPIPS"):
        evaluate(lambda x: x, pairs, dataset="pairs", protocol="auto", lpips=True)
