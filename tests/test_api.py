"""The library under the CLI: device/precision choice, output planning, and `Deblurrer` itself.

A tiny random ALGNet stands in for a trained model: these tests check plumbing (shapes, ranges,
refusals, identity of settings), never restoration quality.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from deblurcli import api
from deblurcli.api import Deblurrer, RestoreResult, pick_device, pick_precision
from deblurcli.errors import DeblurError, UsageError
from deblurcli.runplan import STDIO, compare_path, plan_outputs


@pytest.fixture(scope="module")
def deblurrer(tiny_model: Path) -> Deblurrer:
    return Deblurrer(tiny_model, device="cpu", tile=0, progress=False)


def _photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


# -- pick_device / pick_precision -------------------------------------------------------------------
def _no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_pick_device_auto_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_gpu(monkeypatch)
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")


def test_pick_device_auto_prefers_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda"


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_pick_device_refuses_missing_accelerator_as_usage_error(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    _no_gpu(monkeypatch)
    with pytest.raises(UsageError, match=f"^device='{device}'") as info:  # the CLI says --device {device}
        pick_device(device)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_pick_device_takes_one_gpu_of_several(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(UsageError, match="cuda:0 to cuda:1"):
        pick_device("cuda:2")
    with pytest.raises(UsageError, match="unknown device 'cuda:x'"):
        pick_device("cuda:x")


def test_pick_device_unknown_name() -> None:
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        pick_device("tpu")


@pytest.mark.parametrize(("asked", "got"), [("auto", "fp32"), ("fp32", "fp32"), ("bf16", "bf16")])
def test_pick_precision_cpu(asked: str, got: str) -> None:
    assert pick_precision(asked, torch.device("cpu")) == got


def test_pick_precision_refuses_fp16_on_cpu() -> None:
    with pytest.raises(UsageError, match="fp16") as info:
        pick_precision("fp16", torch.device("cpu"))
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("bf16", "got"), [(True, "bf16"), (False, "fp16")])
def test_pick_precision_auto_on_cuda_is_half(monkeypatch: pytest.MonkeyPatch, bf16: bool, got: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert pick_precision("auto", torch.device("cuda")) == got
    assert pick_precision("fp32", torch.device("cuda")) == "fp32"
    assert pick_precision("fp16", torch.device("cuda")) == "fp16"


def test_pick_precision_unknown() -> None:
    with pytest.raises(UsageError, match="unknown precision"):
        pick_precision("fp8", torch.device("cpu"))


# -- plan_outputs ---------------------------------------------------------------------------------
@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for name in ("a.png", "b.jpg"):
        PILImage.new("RGB", (8, 8)).save(tmp_path / name)
    return tmp_path


def test_plan_default_name_beside_input(photos: Path) -> None:
    (p,) = plan_outputs([str(photos / "a.png")], None)
    assert p.error is None and p.dst == str(photos / "a_deblurred.png")
    (p,) = plan_outputs([str(photos / "b.jpg")], None, suffix="_sharp", fmt="tiff")
    assert p.dst == str(photos / "b_sharp.tif")


def test_plan_output_file_and_folder(photos: Path) -> None:
    (p,) = plan_outputs([str(photos / "a.png")], str(photos / "x.webp"))
    assert p.error is None and p.dst == str(photos / "x.webp")
    out = photos / "new" / "deeper"
    plans = plan_outputs([str(photos / "a.png"), str(photos / "b.jpg")], str(out))
    assert [p.dst for p in plans] == [str(out / "a.png"), str(out / "b.jpg")]
    assert out.is_dir()  # made during planning, so a bad location fails before the model loads
    (p,) = plan_outputs([str(photos / "a.png")], str(photos / "single") + "/")
    assert p.dst == str(photos / "single" / "a.png")
    plans = plan_outputs([str(photos / "a.png"), str(photos / "b.jpg")], str(photos / "one.png"))
    assert all(p.usage and "names one image" in (p.error or "") for p in plans)
    assert not (photos / "one.png").exists()


def test_plan_refuses_overwriting_inputs_and_outputs(photos: Path) -> None:
    a, b = str(photos / "a.png"), str(photos / "b.jpg")
    (p,) = plan_outputs([a], a)
    assert p.usage and "output is the input" in (p.error or "")
    (p,) = plan_outputs([a], str(photos / ".." / photos.name / "a.png"))
    assert p.usage and "output is the input" in (p.error or "")
    (p,) = plan_outputs([a], b)
    assert not p.usage and "already exists" in (p.error or "")
    (p,) = plan_outputs([a], b, overwrite=True)
    assert p.error is None
    # a_deblurred.png is also an input: with --overwrite it would be replaced before being read
    PILImage.new("RGB", (8, 8)).save(photos / "a_deblurred.png")
    plans = plan_outputs([a, str(photos / "a_deblurred.png")], None, overwrite=True)
    assert "is also an input" in (plans[0].error or "") and plans[1].error is None


def test_plan_collisions_and_formats(photos: Path) -> None:
    a = str(photos / "a.png")
    PILImage.new("RGB", (8, 8)).save(photos / "a.jpg")
    plans = plan_outputs([a, str(photos / "a.jpg")], str(photos / "out"), fmt="png")
    assert plans[0].error is None and "would also be written" in (plans[1].error or "")
    (p,) = plan_outputs([a], str(photos / "x.png"), fmt="jpg")
    assert p.usage and "--format" in (p.error or "")
    (p,) = plan_outputs([a], None, fmt="gif")
    assert p.usage and "unknown image format" in (p.error or "")
    (p,) = plan_outputs([a], str(photos / "noext"))
    assert p.usage and "end it with /" in (p.error or "")


def test_plan_bad_inputs_and_locations(photos: Path) -> None:
    (p,) = plan_outputs([str(photos / "missing.png")], None)
    assert not p.usage and "no such file" in (p.error or "")
    (p,) = plan_outputs([str(photos)], None)
    assert p.usage and "is a folder" in (p.error or "")
    (p,) = plan_outputs([str(photos / "a.png")], str(photos / "b.jpg" / "out.png"))
    assert "is a file, not a folder" in (p.error or "")
    (p,) = plan_outputs([str(photos / "a.png")], str(photos / "nope" / "out.png"))
    assert "does not exist" in (p.error or "")


def test_plan_stdio(photos: Path) -> None:
    a = str(photos / "a.png")
    assert plan_outputs([STDIO], None)[0].dst == STDIO
    assert plan_outputs([STDIO], str(photos / "o.png"))[0].dst == str(photos / "o.png")
    assert plan_outputs([a], STDIO)[0].dst == STDIO
    assert plan_outputs([STDIO, a], None)[0].usage
    assert all(p.usage for p in plan_outputs([a, str(photos / "b.jpg")], STDIO))
    assert "--json" in (plan_outputs([a], STDIO, json_stdout=True)[0].error or "")
    assert "--json" in (plan_outputs([STDIO], None, json_stdout=True)[0].error or "")
    assert "--compare" in (plan_outputs([a], STDIO, compare=True)[0].error or "")
    assert "terminal" in (plan_outputs([a], STDIO, stdout_tty=True)[0].error or "")
    assert "terminal" in (plan_outputs([STDIO], str(photos / "o.png"), stdin_tty=True)[0].error or "")


def test_plan_compare_path(photos: Path) -> None:
    a = str(photos / "a.png")
    (p,) = plan_outputs([a], str(photos / "x.jpg"), compare=True)
    assert p.compare == compare_path(photos / "x.jpg") == str(photos / "x_compare.png")
    PILImage.new("RGB", (8, 8)).save(photos / "x_compare.png")
    (p,) = plan_outputs([a], str(photos / "x.jpg"), compare=True)
    assert "already exists" in (p.error or "")


# -- Deblurrer -----------------------------------------------------------------------------------
def test_restore_shape_range_and_strength(deblurrer: Deblurrer) -> None:
    x = _photo(40, 56)  # not a multiple of the model's 16: padded and cropped back
    y = deblurrer.restore(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert 0.0 <= y.min() and y.max() <= 1.0
    from deblurcli.imageio import Image

    img = Image(pixels=x)
    np.testing.assert_array_equal(deblurrer.restore_image(img, strength=0.0), x)
    half = deblurrer.restore_image(img, strength=0.5)
    np.testing.assert_allclose(half, x + 0.5 * (y - x), atol=1e-6)
    with pytest.raises(UsageError):
        deblurrer.restore_image(img, strength=1.5)


def test_settings_key_ignores_how_the_weights_were_named(tiny_model: Path, deblurrer: Deblurrer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_model.parent)
    relative = Deblurrer(tiny_model.name, device="cpu", tile=0, progress=False)
    assert relative.settings_key() == deblurrer.settings_key()
    other = Deblurrer(tiny_model, device="cpu", tile=64, progress=False)
    assert other.settings_key() != deblurrer.settings_key()


# The library names its own parameters (a Python caller has no flags); the CLI names the flag
# (tests/test_options.py checks that side).
@pytest.mark.parametrize(("bad", "match"), [({"tile": "big"}, "^tile="), ({"tile": -1}, "^tile="),
                                            ({"tile_overlap": -1}, "^tile_overlap="), ({"threads": -1}, "^threads=")])
def test_bad_settings_are_usage_errors(tiny_model: Path, bad: dict, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Deblurrer(tiny_model, device="cpu", progress=False, **bad)


def test_restore_file_refuses_input_and_existing(deblurrer: Deblurrer, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    PILImage.fromarray((_photo() * 255).astype(np.uint8)).save(src)
    with pytest.raises(UsageError, match="output is the input"):
        deblurrer.restore_file(src, src, overwrite=True)
    res = deblurrer.restore_file(src, tmp_path / "out.png", compare=tmp_path / "cmp.png")
    assert res.status == "ok" and res.bytes == (tmp_path / "out.png").stat().st_size
    assert PILImage.open(tmp_path / "cmp.png").size == (2 * 64 + 8, 48)
    with pytest.raises(DeblurError, match="already exists"):
        deblurrer.restore_file(src, tmp_path / "out.png")
    deblurrer.restore_file(src, tmp_path / "out.png", overwrite=True)


def test_restore_file_streams(deblurrer: Deblurrer, tmp_path: Path) -> None:
    buf = io.BytesIO()
    PILImage.fromarray((_photo() * 255).astype(np.uint8)).save(buf, format="PNG")
    sink = io.BytesIO()
    res = deblurrer.restore_file(buf.getvalue(), sink, format="jpg", tile_check=True)
    assert res.input == "-" and res.output == "-"
    assert PILImage.open(io.BytesIO(sink.getvalue())).format == "JPEG"
    json.dumps(res.as_dict(), allow_nan=False)  # the tile-check report must be valid JSON too
    # The crop (48x48) is smaller than one tile: tiling cannot change a pixel, so the report must say identical.
    assert res.tile_check == {"crop": "48x48", "tile": 80, "psnr": 100.0, "seam_ratio": 1.0, "whole": True}


def test_tile_check_reports_the_true_difference_at_real_seams(tiny_model: Path) -> None:
    """A crop two tiles wide: the reported PSNR is that of whole vs tiled restorations, recomputed here."""
    photo = _photo(160, 160, seed=1)
    report = Deblurrer(tiny_model, device="cpu", tile=0, progress=False).tile_check(photo)
    assert report["crop"] == "128x128" and report["tile"] == 80
    crop = photo[16:144, 16:144]
    whole = Deblurrer(tiny_model, device="cpu", tile=0, progress=False).restore(crop)
    tiled = Deblurrer(tiny_model, device="cpu", tile=80, tile_overlap=32, progress=False).restore(crop)
    mse = float(np.mean((whole.astype(np.float64) - tiled) ** 2))
    assert 0 < mse and report["psnr"] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)
    assert 40 < report["psnr"] < 100 and report["seam_ratio"] < 2.0, report  # ~55 dB with the tiny model


def test_result_dict_always_has_error_and_size() -> None:
    d = RestoreResult(input="a.png", output="b.png", width=4, height=3, bytes=10).as_dict()
    assert d["error"] is None and d["size"] == "4x3" and d["bytes"] == 10
    d = RestoreResult(input="a.png", output=None, status="failed", error="bad").as_dict()
    assert d["status"] == "failed" and d["error"] == "bad" and "size" not in d


def test_conv_only_model_tiles_exactly(deblurrer: Deblurrer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blending is exact for any model whose receptive field fits in a quarter of the overlap."""
    monkeypatch.setattr(deblurrer, "arch", dataclasses.replace(deblurrer.arch, restore=_local_model))
    x = _photo(150, 200, seed=3)
    whole = deblurrer.restore(x)
    monkeypatch.setattr(deblurrer, "tile", 64)
    monkeypatch.setattr(deblurrer, "tile_overlap", 16)
    tiled = deblurrer.restore(x)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def _local_model(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear 5x5 filter (radius 2), reflect-padded like the tiler pads image edges."""
    g = torch.Generator().manual_seed(0)
    w = torch.rand(3, 3, 5, 5, generator=g)
    w = w / w.sum(dim=(1, 2, 3), keepdim=True)
    y = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect"), w)
    return torch.sigmoid(4 * (y - 0.5)) * 0.8 + 0.1 * x


def test_threads_option_sets_torch(tiny_model: Path) -> None:
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 3  # a count other than the current one, or the test proves nothing
    try:
        Deblurrer(tiny_model, device="cpu", threads=wanted, progress=False)
        assert torch.get_num_threads() == wanted
        Deblurrer(tiny_model, device="cpu", threads=None, progress=False)  # no --threads: leave it alone
        assert torch.get_num_threads() == wanted
        Deblurrer(tiny_model, device="cpu", threads=0, progress=False)  # 0: torch's default, as in train
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)
    assert os.environ.get("OMP_WAIT_POLICY")  # set before any pool spins up


def test_available_memory_reads_memavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """MemAvailable (what the kernel can hand out without swapping), not MemFree and not the 4 GB guess."""
    meminfo = "MemTotal:       16000000 kB\nMemFree:          100000 kB\nMemAvailable:    5000000 kB\n"
    monkeypatch.setattr(api, "open", lambda *a, **k: io.StringIO(meminfo), raising=False)
    assert api._available_memory() == 5000000 * 1024


def test_available_memory_falls_back_to_sysconf_then_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(*a: object, **k: object) -> None:
        raise FileNotFoundError("/proc/meminfo")

    monkeypatch.setattr(api, "open", no_proc, raising=False)
    pages = {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(api.os, "sysconf", lambda name: pages[name])
    assert api._available_memory() == 1000 * 4096

    def no_sysconf(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(api.os, "sysconf", no_sysconf)
    with pytest.warns(UserWarning, match="could not read free memory"):
        assert api._available_memory() == 4 << 30


@pytest.mark.skipif(not Path("/proc/meminfo").is_file(), reason="Linux only")
def test_available_memory_on_this_machine_is_not_the_guess() -> None:
    real = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemAvailable:"))
    assert api._available_memory() == pytest.approx(real, rel=0.2)  # free memory moves a little between reads


# -- large images: stored samples, strip-by-strip output ---------------------------------------------
@pytest.mark.parametrize("depth,grey,strength", [(8, False, 1.0), (16, False, 0.4), (8, True, 0.7), (16, True, 1.0)])
def test_strip_output_equals_the_float_result_written(tiny_model: Path, tmp_path: Path, depth: int, grey: bool,
                                                      strength: float) -> None:
    """The integer result finished strip by strip (in place over the photo) equals what writing the float
    result gives, byte for byte, and the photo is never held as float."""
    from deblurcli.imageio import Image, output_layout, read_image, write_image

    d = Deblurrer(tiny_model, device="cpu", tile=32, tile_overlap=8, progress=False)
    rng = np.random.default_rng(3)
    maxval = 255 if depth == 8 else 65535
    shape = (70, 90) if grey else (70, 90, 3)
    stored = (rng.random(shape) * maxval).astype(np.uint8 if depth == 8 else np.uint16)
    src = tmp_path / "in.png"
    write_image(Image(stored, bit_depth=depth, channels="L" if grey else "RGB"), stored, src)
    img = read_image(src)
    assert img.samples.dtype == stored.dtype and img.samples.shape == shape  # no float copy on read
    np.testing.assert_array_equal(img.samples, stored)

    expected = d.restore_image(img, strength=strength)  # float result, as before
    write_image(img, expected, tmp_path / "float.png")
    layout = output_layout(img, tmp_path / "strip.png")
    assert layout == (depth, grey)
    out = d.restore_image(img, strength=strength, layout=layout, in_place=True)
    assert out is img.samples and out.dtype == stored.dtype  # the result replaced the photo's buffer
    write_image(img, out, tmp_path / "strip.png")
    assert (tmp_path / "strip.png").read_bytes() == (tmp_path / "float.png").read_bytes()


def test_restore_file_writes_what_the_float_path_writes(deblurrer: Deblurrer, tmp_path: Path) -> None:
    from deblurcli.imageio import read_image, write_image

    arr = (np.random.default_rng(5).random((40, 56, 3)) * 255).astype(np.uint8)
    PILImage.fromarray(arr).save(tmp_path / "in.png")
    img = read_image(tmp_path / "in.png")
    write_image(img, deblurrer.restore_image(img, strength=0.5), tmp_path / "float.jpg")
    deblurrer.restore_file(tmp_path / "in.png", tmp_path / "out.jpg", strength=0.5, compare=tmp_path / "c.png")
    assert (tmp_path / "out.jpg").read_bytes() == (tmp_path / "float.jpg").read_bytes()
    np.testing.assert_array_equal(np.asarray(PILImage.open(tmp_path / "c.png"))[:, :56], arr)  # input side intact


SMALL_CONFIGS = {
    "algnet": {"width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1],
               "d_state": 4},
    "evssm": {"dim": 8, "num_blocks": [1, 1, 1]},
    "xyscannet": {"dim": 8, "num_blocks": [1, 1, 1]},
    "scanunet": {"width": 8, "enc_blk_nums": [1, 1, 1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1],
                 "scan_levels": [2], "d_state": 4},
}


@pytest.mark.parametrize("arch", sorted(SMALL_CONFIGS))
def test_bf16_on_cpu_runs_every_architecture(arch: str, tmp_path: Path) -> None:
    """`--precision bf16` on a CPU casts the whole model; every architecture must run so and stay
    near its fp32 result (EVSSM once fed the fp32 scan output to a bf16 LayerNorm and crashed)."""
    from deblurcli.models import create, get_arch
    from deblurcli.weights import save_model

    spec = get_arch(arch)
    torch.manual_seed(0)
    path = tmp_path / f"{arch}.safetensors"
    save_model(create(arch, SMALL_CONFIGS[arch], spec.default_variant), path, arch=arch,
               config=SMALL_CONFIGS[arch], variant=spec.default_variant)
    x = _photo(64, 64)
    said: list[str] = []
    fp32 = Deblurrer(path, device="cpu", tile=0, progress=False, precision="fp32").restore(x)
    low = Deblurrer(path, device="cpu", tile=0, progress=False, precision="bf16", on_note=said.append)
    assert next(low.model.parameters()).dtype == torch.bfloat16
    y = low.restore(x)
    assert not said, said  # no fall-back to fp32 hiding a bf16 failure
    assert y.shape == x.shape and np.isfinite(y).all()
    diff = np.abs(y.astype(np.float32) - fp32.astype(np.float32))
    assert 0 < diff.mean() < 0.01


def test_auto_tiles_follow_pixel_count_not_side(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU a 1280x720 video frame runs whole (it has fewer pixels than the 1024 px tile cap),
    and an image just over the cap gets tiles no bigger than the fewest-tiles cover needs."""
    monkeypatch.setattr(api, "_available_memory", lambda: 64 << 30)
    d = Deblurrer(tiny_model, device="cpu", progress=False)
    assert d.tile == "auto"
    assert d.tile_for(720, 1280) == 0 and d.tile_for(1280, 720) == 0
    t = d.tile_for(1100, 1100)
    assert 0 < t < 700 and t % d.spec.pad_multiple == 0
    assert d.tile_for(4000, 3000) <= 1024


def test_each_thread_reads_what_was_done_to_its_own_photo(tmp_path: Path) -> None:
    """One Deblurrer shared by threads (a server, a pool): `last_outcome` is the calling thread's."""
    import threading

    from deblurcli.api import Deblurrer

    kernel = np.zeros((5, 5), np.float32)
    kernel[2, :] = 1.0
    np.save(tmp_path / "k.npy", kernel)
    d = Deblurrer("default", device="cpu", progress=False, kernel=str(tmp_path / "k.npy"))
    photo = np.random.default_rng(0).random((48, 48, 3)).astype(np.float32)
    first_done, second_done = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def with_kernel() -> None:
        d.restore(photo)
        first_done.set()
        second_done.wait(60)
        seen["kernel"] = d.last_outcome

    def network_only() -> None:
        first_done.wait(60)
        d.restore(photo, deconv=False)
        seen["network"] = d.last_outcome
        second_done.set()

    threads = [threading.Thread(target=with_kernel), threading.Thread(target=network_only)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert seen["network"] is None
    assert getattr(seen["kernel"], "path", None) == "kernel"
