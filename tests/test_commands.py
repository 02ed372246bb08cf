"""`deblur eval`, `synth`, `bench` and `train` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from deblurcli.cli import app
from deblurcli.eval.metrics import psnr

runner = CliRunner()


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _gopro_tree(root: Path, n: int = 3) -> None:
    rng = np.random.default_rng(0)
    for seq in ("GOPR0384_11_00", "GOPR0410_11_00"):
        for i in range(n):
            sharp = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
            blur = np.clip(sharp.astype(int) + rng.integers(-20, 20, sharp.shape), 0, 255).astype(np.uint8)
            _png(root / "test" / seq / "sharp" / f"{i:06d}.png", sharp)
            _png(root / "test" / seq / "blur" / f"{i:06d}.png", blur)
            _png(root / "test" / seq / "blur_gamma" / f"{i:06d}.png", blur // 2)


def test_eval_json_recomputes_from_saved_images(tmp_path: Path, tiny_model: Path) -> None:
    _gopro_tree(tmp_path / "GOPRO_Large")
    save = tmp_path / "saved"
    res = runner.invoke(app, ["eval", "--dataset", "gopro", "--data-dir", str(tmp_path / "GOPRO_Large"),
                              "--model", str(tiny_model), "--save-dir", str(save), "--json", "--quiet"])
    assert res.exit_code == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["dataset"] == "gopro" and result["protocol"] == "matlab"
    assert result["summary"]["count"] == 6 and len(result["images"]) == 6
    for rec in result["images"]:
        name = rec["name"]
        assert "blur_gamma" not in name and "/blur/" not in name
        restored = np.asarray(Image.open(save / name))
        seq, file = name.split("/")
        sharp = np.asarray(Image.open(tmp_path / "GOPRO_Large" / "test" / seq / "sharp" / file))
        assert psnr(restored, sharp) == pytest.approx(rec["psnr"], abs=1e-9)


def test_eval_unknown_layout_shows_expected_trees(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "nothing").mkdir()
    res = runner.invoke(app, ["eval", "--dataset", "gopro", "--data-dir", str(tmp_path / "nothing"),
                              "--model", str(tiny_model)])
    assert res.exit_code == 1 and res.stdout == ""
    err = res.stderr
    assert err.startswith(f"error: no GoPro test set found under {tmp_path / 'nothing'}. Expected one of these trees:")
    assert "GOPRO_Large/test/<sequence>/blur/*.png  with  GOPRO_Large/test/<sequence>/sharp/*.png" in err
    assert "<dir>/test/input/*.png     with  <dir>/test/target/*.png" in err
    assert err.rstrip().endswith("Point the data folder at one of them (or pass the blurred and sharp folders "
                                 "separately).")
    assert "Traceback" not in err


def test_synth_writes_a_layout_eval_reads(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _png(tmp_path / "photos" / "a.png", (rng.random((96, 96, 3)) * 255).astype(np.uint8))
    res = runner.invoke(app, ["synth", str(tmp_path / "photos"), str(tmp_path / "pairs"), "--count", "2",
                              "--dead-leaves", "2", "--crop", "64", "--quiet"])
    assert res.exit_code == 0, res.stderr
    from deblurcli.eval.datasets import find_pairs

    pairs = find_pairs("gopro", tmp_path / "pairs")
    assert len(pairs) == 4
    for k in (tmp_path / "pairs").rglob("kernels/*.npy"):
        kern = np.load(k)
        assert abs(float(kern.reshape(-1, *kern.shape[-2:])[0].sum()) - 1.0) < 1e-5


def test_bench_json(tiny_model: Path) -> None:
    res = runner.invoke(app, ["bench", "--model", str(tiny_model), "--size", "64x48", "--repeat", "1",
                              "--no-scan-shapes", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.stderr
    m = json.loads(res.stdout)["model"]
    assert m["width"] == 64 and m["height"] == 48 and m["seconds"] > 0 and m["peak_memory_mb"] > 0


def test_train_then_run_the_exported_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, [
        "train", "--arch", "algnet", "--steps", "2", "--patch-size", "32", "--batch-size", "2",
        "--dead-leaves", "1.0", "--out", str(out), "--num-workers", "0", "--device", "cpu",
        "--set", "model.width=4", "--set", "model.middle_blk_num=1", "--set", "model.enc_blk_nums=[1,1,1,1]",
        "--set", "model.dec_blk_nums=[1,1,1,1]", "--set", "model.d_state=4", "--set", "val.count=2",
        "--set", "val.size=32",
    ])
    assert res.exit_code == 0, res.stderr
    exported = out / "last.safetensors"
    assert exported.is_file()
    img = tmp_path / "x.png"
    _png(img, (np.random.default_rng(2).random((40, 40, 3)) * 255).astype(np.uint8))
    res = runner.invoke(app, ["run", str(img), "--model", str(exported), "-o", str(tmp_path / "y.png"), "--quiet"])
    assert res.exit_code == 0, res.stderr
    assert Image.open(tmp_path / "y.png").size == (40, 40)


def test_train_print_config_and_bad_key() -> None:
    res = runner.invoke(app, ["train", "--print-config", "evssm"])
    assert res.exit_code == 0 and "arch: evssm" in res.stdout
    res = runner.invoke(app, ["train", "--set", "train.lrr=1"])
    assert res.exit_code == 2 and "train.lr" in res.stderr


EMBEDDED = Path(__file__).parent.parent / "weights" / "default.safetensors"


@pytest.mark.skipif(not EMBEDDED.is_file(), reason="weights/default.safetensors is not shipped yet")
def test_tiles_agree_with_whole_image_on_a_photo() -> None:
    """Embedded model on the example photo, at the smallest tile the tool runs it with unwarned
    (its architecture's minimum; below it `deblur` warns that results degrade): tiled vs whole
    >= 40 dB, and no excess error at seams. The default sees the whole tile through its scans, so
    tiles far below that minimum legitimately differ more (128 px gave 37 dB at step 22500)."""
    from deblurcli.api import Deblurrer
    from deblurcli.imageio import read_image
    from deblurcli.models import find_arch

    photo = read_image(Path(__file__).parent.parent / "examples" / "blurry.jpg").pixels
    d = Deblurrer(None, device="cpu", tile=find_arch("scanunet").min_tile, tile_overlap=32, progress=False)
    assert d.tile == 256
    report = d.tile_check(photo, tile=d.tile)
    assert report["crop"] == "384x384"  # the whole 384 px photo, two tiles wide: real seams inside
    assert report["psnr"] >= 40, report
    assert report["seam_ratio"] < 2.0, report
