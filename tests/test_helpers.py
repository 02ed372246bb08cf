"""Helpers that exist once and are used everywhere: the output-is-input refusal, ``module.`` stripping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deblurcli.errors import CheckpointError
from deblurcli.fsutil import input_as_output
from deblurcli.models.contract import strip_module_prefix
from deblurcli.weights import convert


def test_module_prefix_is_stripped_only_when_every_key_has_it() -> None:
    assert strip_module_prefix({"module.a.weight": 1, "module.b": 2}) == {"a.weight": 1, "b": 2}
    mixed = {"module.a": 1, "b": 2}  # a real submodule named 'module', not a DataParallel wrapper
    assert strip_module_prefix(mixed) == mixed
    assert strip_module_prefix({}) == {}


def test_input_as_output_sees_through_links_and_dots(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    os.link(src, tmp_path / "hard.png")
    for same in (src, tmp_path / "sub" / ".." / "a.png", tmp_path / "hard.png"):
        msg = input_as_output(src, same)
        assert msg is not None and msg.startswith(f"{same}: output is the input file")
    assert input_as_output(src, tmp_path / "b.png") is None
    assert input_as_output(None, src) is None
    assert "-o" in (input_as_output(src, src, fix="choose another -o") or "")


def test_convert_refuses_to_write_over_its_input_by_another_name(tmp_path: Path, tiny_model: Path) -> None:
    src = tmp_path / "w.safetensors"
    src.write_bytes(tiny_model.read_bytes())
    os.link(src, tmp_path / "same.safetensors")
    before = src.read_bytes()
    with pytest.raises(CheckpointError, match="output is the input file"):
        convert(src, tmp_path / "same.safetensors")
    assert src.read_bytes() == before


def test_synth_recipes_do_not_need_torch_and_the_dataset_lives_in_train() -> None:
    import subprocess
    import sys

    code = ("import sys, deblurcli.synth as s; assert 'torch' not in sys.modules, 'synth imported torch'; "
            "import deblurcli.train.synthetic; assert not hasattr(s, 'SyntheticPairs'), 'synth imports train'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_documented_import_works_and_stays_lazy() -> None:
    import subprocess
    import sys

    code = ("import sys, deblurcli; assert 'torch' not in sys.modules; "
            "from deblurcli import Deblurrer, EngineOptions; from deblurcli.api import Deblurrer as D; "
            "assert Deblurrer is D and EngineOptions().tile == 'auto'")
    subprocess.run([sys.executable, "-c", code], check=True)
