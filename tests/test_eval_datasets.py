"""Layout detection and name-based pairing on tiny datasets written in every supported tree."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from deblurcli.errors import DeblurError, UsageError
from deblurcli.eval.datasets import default_protocol, find_pairs, scan_dataset


def _png(path: Path, value: int) -> Path:
    """A small image whose pixel value identifies it, so a wrong pairing is visible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, dtype=np.uint8))
    return path


def _value(path: Path) -> int:
    return int(cv2.imread(str(path))[0, 0, 0])


def _two_folder(base: Path, names: list[str], blur: str = "input", sharp: str = "target") -> None:
    for i, name in enumerate(names):
        _png(base / blur / name, i)
        _png(base / sharp / name, 100 + i)


def _assert_paired(pairs) -> None:
    for p in pairs:
        assert _value(p.sharp) == _value(p.blur) + 100, p


def _gopro(root: Path) -> Path:
    large = root / "GOPRO_Large"
    for s, seq in enumerate(["GOPR0384_11_00", "GOPR0862_11_00"]):
        for i in range(1, 4):
            name = f"{i:06d}.png"
            _png(large / "test" / seq / "blur" / name, s * 10 + i)
            _png(large / "test" / seq / "blur_gamma" / name, 250)
            _png(large / "test" / seq / "sharp" / name, 100 + s * 10 + i)
    _png(large / "train" / "GOPR0372_07_00" / "blur" / "000047.png", 7)
    _png(large / "train" / "GOPR0372_07_00" / "sharp" / "000047.png", 107)
    return large


@pytest.mark.parametrize("level", ["parent", "large", "test"])
def test_gopro_release_any_level(tmp_path: Path, level: str) -> None:
    large = _gopro(tmp_path)
    data = {"parent": tmp_path, "large": large, "test": large / "test"}[level]
    scan = scan_dataset("gopro", data)
    assert scan.complete
    assert scan.root == large / "test"
    names = [p.name for p in scan.pairs]
    assert len(names) == 6
    assert names[0] == "GOPR0384_11_00/000001.png"
    assert all("blur_gamma" not in str(p.blur) and p.blur.parent.name == "blur" for p in scan.pairs)
    _assert_paired(scan.pairs)


def test_gopro_missing_sharp_reported_by_name(tmp_path: Path) -> None:
    large = _gopro(tmp_path)
    gone = large / "test" / "GOPR0384_11_00" / "sharp" / "000002.png"
    gone.unlink()
    scan = scan_dataset("gopro", large)
    assert [p.name for p in scan.unmatched_blur] == ["000002.png"]
    assert len(scan.pairs) == 5
    _assert_paired(scan.pairs)  # the later pairs did not shift
    with pytest.raises(DeblurError, match=r"1 blurred image\(s\) have no ground truth.*000002\.png"):
        find_pairs("gopro", large)
    assert len(find_pairs("gopro", large, allow_unmatched=True)) == 5


@pytest.mark.parametrize(
    ("tree", "point_at"),
    [
        ("test", ""),  # <dir>/test/input|target
        ("", ""),  # input|target directly
        ("Datasets/test/GoPro", "Datasets"),  # Restormer
        ("Datasets/test/GoPro", "Datasets/test"),
        ("Datasets/test/GoPro", "Datasets/test/GoPro"),
        ("GoPro/test", ""),  # MPRNet: Datasets/GoPro/test/input
    ],
)
def test_input_target_layouts(tmp_path: Path, tree: str, point_at: str) -> None:
    _two_folder(tmp_path / tree, ["b.png", "a.png", "c.png"])
    if tree.startswith("Datasets"):
        _two_folder(tmp_path / "Datasets/test/HIDE", ["z.png"])  # another dataset beside it
    pairs = find_pairs("gopro", tmp_path / point_at)
    assert [p.name for p in pairs] == ["a.png", "b.png", "c.png"]
    _assert_paired(pairs)


def test_testa_testb_layout(tmp_path: Path) -> None:
    _two_folder(tmp_path / "GoPro" / "test", ["1.png", "2.png"], blur="testA", sharp="testB")
    pairs = find_pairs("gopro", tmp_path)
    assert [p.blur.parent.name for p in pairs] == ["testA", "testA"]
    _assert_paired(pairs)


def test_pairing_by_name_not_order(tmp_path: Path) -> None:
    # Blurred names sort differently from the sharp ones once one sharp file is missing and the
    # sharp side has an extra: pairing by position would mismatch every pair after the gap.
    for i, name in enumerate(["x/03.png", "01.png", "x/02.jpg", "10.png"]):
        _png(tmp_path / "input" / name, i)
    for i, name in enumerate(["x/03.png", "01.png", "x/02.png"]):
        _png(tmp_path / "target" / name, 100 + i)
    _png(tmp_path / "target" / "00_extra.png", 200)
    scan = scan_dataset("pairs", tmp_path)
    assert sorted(p.name for p in scan.pairs) == ["01.png", "x/02.jpg", "x/03.png"]
    _assert_paired(scan.pairs)
    assert [p.name for p in scan.unmatched_blur] == ["10.png"]
    assert [p.name for p in scan.unmatched_sharp] == ["00_extra.png"]
    with pytest.raises(DeblurError) as err:
        find_pairs("pairs", tmp_path)
    assert "10.png" in str(err.value) and "00_extra.png" in str(err.value)
    assert "\n" not in str(err.value)


def test_pairs_with_separate_folders(tmp_path: Path) -> None:
    _two_folder(tmp_path, ["a.png", "sub/b.png"], blur="mine_blurry", sharp="mine_gt")
    pairs = find_pairs("pairs", tmp_path / "mine_blurry", sharp_dir=tmp_path / "mine_gt")
    assert [p.name for p in pairs] == ["a.png", "sub/b.png"]
    _assert_paired(pairs)


def test_extension_clash_is_an_error(tmp_path: Path) -> None:
    _two_folder(tmp_path, ["a.png"])
    _png(tmp_path / "input" / "a.jpg", 3)
    with pytest.raises(DeblurError, match="differ only in extension"):
        find_pairs("pairs", tmp_path)


def _hide(root: Path) -> Path:
    base = root / "HIDE_dataset"
    for i, name in enumerate(["1fromGOPR0950.png", "2fromGOPR1096.png"]):
        _png(base / "test" / "test-close-ups" / name, i)
        _png(base / "GT" / name, 100 + i)
    for i, name in enumerate(["9fromGOPR0100.png"]):
        _png(base / "test" / "test-long-shot" / name, 10 + i)
        _png(base / "GT" / name, 110 + i)
    _png(base / "GT" / "trainonly.png", 50)  # GT/ also holds the training split
    _png(base / "train" / "trainonly.png", 51)
    return base


@pytest.mark.parametrize("level", ["parent", "base", "test"])
def test_hide_release(tmp_path: Path, level: str) -> None:
    base = _hide(tmp_path)
    data = {"parent": tmp_path, "base": base, "test": base / "test"}[level]
    scan = scan_dataset("hide", data)
    assert scan.complete
    assert [p.name for p in scan.pairs] == [
        "test-close-ups/1fromGOPR0950.png",
        "test-close-ups/2fromGOPR1096.png",
        "test-long-shot/9fromGOPR0100.png",
    ]
    _assert_paired(scan.pairs)


def test_hide_missing_gt(tmp_path: Path) -> None:
    base = _hide(tmp_path)
    (base / "GT" / "9fromGOPR0100.png").unlink()
    with pytest.raises(DeblurError, match="9fromGOPR0100.png"):
        find_pairs("hide", base)


def _realblur(root: Path, kind: str = "J") -> Path:
    top = {
        "J": "RealBlur-J_ECC_IMCORR_centroid_itensity_ref",
        "R": "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref",
    }[kind]
    lines = []
    for i, (scene, n) in enumerate([("scene230", 1), ("scene230", 2), ("scene003", 5)]):
        gt = f"{top}/{scene}/gt/gt_{n}.png"
        blur = f"{top}/{scene}/blur/blur_{n}.png"
        _png(root / gt, 100 + i)
        _png(root / blur, i)
        lines.append(f"{gt} {blur}")
    (root / f"RealBlur_{kind}_test_list.txt").write_text("\n".join(lines) + "\n")
    (root / f"RealBlur_{kind}_train_list.txt").write_text("")
    return root


@pytest.mark.parametrize("kind", ["J", "R"])
def test_realblur_list(tmp_path: Path, kind: str) -> None:
    _realblur(tmp_path / "RealBlur", kind)
    dataset = f"realblur-{kind.lower()}"
    for data in (tmp_path, tmp_path / "RealBlur"):
        pairs = find_pairs(dataset, data)
        assert [p.name for p in pairs] == ["scene003/blur_5.png", "scene230/blur_1.png", "scene230/blur_2.png"]
        _assert_paired(pairs)
    assert default_protocol(dataset) == "realblur"


def test_realblur_missing_and_malformed(tmp_path: Path) -> None:
    root = _realblur(tmp_path)
    (root / "RealBlur-J_ECC_IMCORR_centroid_itensity_ref/scene230/gt/gt_2.png").unlink()
    scan = scan_dataset("realblur-j", root)
    assert [p.name for p in scan.missing] == ["gt_2.png"] and len(scan.pairs) == 2
    with pytest.raises(DeblurError, match="do not exist.*gt_2.png"):
        find_pairs("realblur-j", root)
    (root / "RealBlur_J_test_list.txt").write_text("only_one_field.png\n")
    with pytest.raises(DeblurError, match="line 1"):
        find_pairs("realblur-j", root)


def test_realblur_restructured(tmp_path: Path) -> None:
    _two_folder(tmp_path / "Datasets" / "test" / "RealBlur_J", ["scene1_1.png"])
    assert [p.name for p in find_pairs("realblur-j", tmp_path / "Datasets")] == ["scene1_1.png"]


def test_layout_error_shows_expected_trees(tmp_path: Path) -> None:
    _png(tmp_path / "random" / "x.png", 1)
    for dataset, needle in [("gopro", "GOPRO_Large/test/<sequence>/blur"), ("hide", "test-close-ups"),
                            ("realblur-j", "RealBlur_J_test_list.txt"), ("pairs", "input|target")]:
        with pytest.raises(DeblurError) as err:
            scan_dataset(dataset, tmp_path)
        assert needle in str(err.value) and str(tmp_path) in str(err.value)
    # blur_gamma alone is not the GoPro test set
    _png(tmp_path / "test" / "GOPR0001_00_00" / "blur_gamma" / "000001.png", 1)
    _png(tmp_path / "test" / "GOPR0001_00_00" / "sharp" / "000001.png", 1)
    with pytest.raises(DeblurError, match="no GoPro test set"):
        scan_dataset("gopro", tmp_path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DeblurError, match="does not exist"):
        scan_dataset("gopro", tmp_path / "nope")
    with pytest.raises(UsageError) as err:
        scan_dataset("kitti", tmp_path)
    assert err.value.exit_code == 2
    (tmp_path / "input").mkdir()
    (tmp_path / "target").mkdir()
    with pytest.raises(DeblurError, match="holds no blurred images"):
        scan_dataset("pairs", tmp_path)
    assert default_protocol("RealBlur_R") == "realblur" and default_protocol("hide") == "matlab"
