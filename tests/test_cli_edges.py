"""Rough edges of `deblur run`, `convert` and `models info` that a demanding first user meets:
each message is one plain line that names the file or the option and the way out.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from rich.console import Console
from typer.testing import CliRunner, Result

from deblurcli import api
from deblurcli.cli import app
from deblurcli.progress import bar

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _lines(text: str) -> list[str]:
    return [line for line in ANSI.sub("", text).splitlines() if line.strip()]


def _photo(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    PILImage.fromarray(arr).save(path)
    return path


def _run(tiny_model: Path, *args: str | Path) -> Result:
    return CliRunner().invoke(app, ["run", *map(str, args), "--model", str(tiny_model), "--device", "cpu"])


# -- usage errors said once, before any work -------------------------------------------------------
def test_stdout_with_two_inputs_is_said_once(tiny_model: Path, tmp_path: Path) -> None:
    a, b = _photo(tmp_path / "a.png"), _photo(tmp_path / "b.png", seed=1)
    res = _run(tiny_model, a, b, "-o", "-")
    assert res.exit_code == 2
    assert _lines(res.stderr) == ["error: -o - (stdout) takes a single input"]


@pytest.mark.parametrize("command", ["run", "batch", "bench"])
def test_negative_threads_is_a_usage_error_before_anything_else(tmp_path: Path, command: str) -> None:
    """Refused by the parser, so even a run whose input is missing is told about --threads first."""
    args = {"run": [str(tmp_path / "missing.png")], "batch": [str(tmp_path / "nope"), str(tmp_path / "out")],
            "bench": []}[command]
    res = CliRunner().invoke(app, [command, *args, "--threads", "-1"])
    assert res.exit_code == 2
    lines = _lines(res.stderr)
    assert len(lines) == 1 and "--threads" in lines[0], lines


def test_gpu_scan_on_a_cpu_is_a_usage_error_listing_what_runs_here(tiny_model: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the tests' CPU emulation of Triton
    src = _photo(tmp_path / "a.png")
    res = _run(tiny_model, src, "-o", tmp_path / "out.png", "--scan", "triton")
    assert res.exit_code == 2, res.stderr
    lines = _lines(res.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: --scan triton:"), lines
    assert "RuntimeError" not in lines[0] and "CUDA" in lines[0] and "torch" in lines[0] and "reference" in lines[0]
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(api.OptionError, match="^scan_backend='cuda'"):
        api.Deblurrer(tiny_model, device="cpu", scan_backend="cuda", progress=False)


# -- --tile-check and --scale auto ------------------------------------------------------------------
def test_tile_check_does_not_advise_about_tiles_a_whole_image_run_did_not_use(tiny_model: Path,
                                                                             tmp_path: Path) -> None:
    src = _photo(tmp_path / "a.png", size=(200, 200))
    res = _run(tiny_model, src, "-o", tmp_path / "out.png", "--tile-check", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)["tile_check"]
    assert report["whole"] is True  # auto tiles: a 200 px photo runs whole
    line = next(x for x in _lines(res.stderr) if x.startswith("tile check"))
    assert "restored whole" in line and "--tile" not in line, line
    tiled = _run(tiny_model, src, "-o", tmp_path / "tiled.png", "--tile", "96", "--tile-check", "--json")
    assert json.loads(tiled.stdout)["tile_check"]["whole"] is False
    assert "restored whole" not in tiled.stderr


def test_scale_auto_never_shrinks_the_short_side_below_the_models_minimum(tiny_model: Path) -> None:
    d = api.Deblurrer(tiny_model, device="cpu", progress=False)
    d.trained_blur_px = 41  # as the embedded default records: auto reduces large photos
    assert d.scale_for(3000, 4000) == 2  # a 12 MP photo still runs at half size
    assert d.scale_for(20, 20000) == 1  # a strip is not cut to 3 px tall
    assert d.scale_for(600, 20000) == 2  # a panorama: as far as 300 px rows, no further
    strip = np.random.default_rng(0).random((20, 2000, 3), dtype=np.float32)
    assert d.restore(strip).shape == strip.shape


# -- the progress bar --------------------------------------------------------------------------------
def test_tile_bar_never_shows_none_before_the_count_is_known() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None)
    progress = bar(console, "tiles")
    task = progress.add_task("photo.jpg", total=None)
    console.print(progress.get_renderable())
    progress.update(task, total=12, completed=3)
    console.print(progress.get_renderable())
    text = buf.getvalue()
    assert "None" not in text and "3/12 tiles" in text


# -- models info --------------------------------------------------------------------------------------
def test_models_info_default_describes_in_words_not_json() -> None:
    from deblurcli.models import registry

    if registry.embedded_path(registry.default_entry()) is None:
        pytest.skip("this checkout has no embedded default weights")
    res = CliRunner().invoke(app, ["models", "info", "default"])
    assert res.exit_code == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("description"))
    assert "{" not in line and '"' not in line and "scanunet" in line.lower(), line


# -- convert on hostile or broken files --------------------------------------------------------------
class _Payload:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo this must never run",))


def _convert(src: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    res = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "out.safetensors")])
    captured = capfd.readouterr()
    assert "must never run" not in captured.out + res.stdout
    assert not (tmp_path / "out.safetensors").exists()
    return res.exit_code, _lines(res.stderr + captured.err)


@pytest.mark.parametrize("legacy", [False, True])
def test_convert_refuses_a_hostile_pickle_in_one_line_naming_the_file(tmp_path: Path, legacy: bool,
                                                                      capfd: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload()}, evil, _use_new_zipfile_serialization=not legacy)
    code, lines = _convert(evil, tmp_path, capfd)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"error: {evil}: refused to load"), lines
    assert "system" in lines[0] and "could run code" in lines[0]
    assert "weights_only" not in lines[0] and "PyTorch 2.6" not in lines[0]  # not torch's advice, cut short


def test_convert_on_a_damaged_pickle_says_so_without_quoting_torch(tmp_path: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(64)}, good)
    data = good.read_bytes()
    for name, content in (("cut.pth", data[: len(data) // 2]), ("noise.pth", b"\x80\x02" + bytes(range(7, 250)))):
        (tmp_path / name).write_bytes(content)
        code, lines = _convert(tmp_path / name, tmp_path, capfd)
        assert code == 1 and len(lines) == 1, lines
        assert lines[0].startswith(f"error: {tmp_path / name}: not a readable PyTorch checkpoint"), lines
        assert "miniz" not in lines[0] and "weights_only" not in lines[0] and "Warning" not in lines[0]


def test_convert_unknown_architecture_names_the_file(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "mystery.pth"
    torch.save({"foo.weight": torch.zeros(3, 3), "bar.bias": torch.zeros(3)}, src)
    code, lines = _convert(src, tmp_path, capfd)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {src}: could not recognise the architecture"), lines
    assert "--arch" in lines[0]


_LEAVE = """
import atexit, sys, threading, time, torch
from pathlib import Path
from deblurcli.commands.common import leave
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
if sys.argv[2] == "thread":
    def late() -> None:
        time.sleep(0.5)
        (out / "thread").write_text("done")
    threading.Thread(target=late).start()
sys.stdout.write("unflushed output")
leave(int(sys.argv[3]))
"""


@pytest.mark.parametrize("mode", ["plain", "thread"])
def test_the_quick_exit_keeps_output_exit_code_cleanup_and_running_threads(tmp_path: Path, mode: str) -> None:
    """`deblur` skips torch's teardown at exit; what a user relies on must survive that."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _LEAVE, str(tmp_path), mode, "3"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "unflushed output"
    assert (tmp_path / "atexit").read_text() == "ran"
    if mode == "thread":  # a live non-daemon thread gets the ordinary exit, which waits for it
        assert (tmp_path / "thread").read_text() == "done"
