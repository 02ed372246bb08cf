"""Error lines a user acts on: plain text, and advice the command in hand can follow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from safetensors.torch import save_file
from typer.testing import CliRunner

from deblurcli.cli import app


class _RunsCode:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def _photo(tmp_path: Path) -> Path:
    p = tmp_path / "photo.png"
    PILImage.fromarray(np.zeros((32, 32, 3), np.uint8)).save(p)
    return p


def test_refused_pickle_is_one_plain_line(tmp_path: Path, capfd) -> None:  # noqa: ANN001 - pytest fixture
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": _RunsCode()}, evil)
    res = CliRunner().invoke(app, ["run", str(_photo(tmp_path)), "--model", str(evil), "--device", "cpu"])
    assert res.exit_code != 0
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "\x1b" not in err  # torch styles its own message with terminal escapes
    assert "refused to load" in err and "could run code" in err and "print" in err
    assert "this must never run" not in capfd.readouterr().out + res.stdout


def test_unrecognised_weights_in_run_point_to_convert_not_to_a_missing_flag(tmp_path: Path) -> None:
    weights = tmp_path / "mystery.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, weights)
    res = CliRunner().invoke(app, ["run", str(_photo(tmp_path)), "--model", str(weights), "--device", "cpu"])
    assert res.exit_code != 0
    err = res.stderr.strip()
    assert "could not recognise the architecture" in err
    assert f"deblur convert {weights} OUT.safetensors --arch" in err  # run itself has no --arch
    assert "--arch" in CliRunner().invoke(app, ["convert", "--help"]).stdout
    assert "--arch" not in CliRunner().invoke(app, ["run", "--help"]).stdout
