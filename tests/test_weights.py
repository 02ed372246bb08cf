"""The checkpoint loader and `deblur convert`: formats, detection, strictness, safety."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from deblurcli.cli import app
from deblurcli.errors import CheckpointError
from deblurcli.weights import load_model, read_checkpoint, save_model

FIXTURES = Path(__file__).parent / "fixtures" / "conformance"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "case.json").is_file())
runner = CliRunner()


def _case(name: str) -> dict:
    return json.loads((FIXTURES / name / "case.json").read_text())


def _convert(args: list[str]) -> tuple[int, str]:
    res = runner.invoke(app, ["convert", *args])
    return res.exit_code, res.stdout


@pytest.mark.parametrize("case", CASES)
def test_convert_detects_every_fixture(case: str, tmp_path: Path) -> None:
    spec = _case(case)
    code, out = _convert([str(FIXTURES / case / "weights.safetensors"), str(tmp_path / "o.safetensors"), "--json"])
    assert code == 0, out
    got = json.loads(out)
    assert got["arch"] == spec["arch"]
    for key, value in spec["kwargs"].items():
        assert got["config"][key] == value, key
    # the converted file alone is enough: it loads with no hints and gives the same weights
    model, loaded = load_model(tmp_path / "o.safetensors")
    assert loaded.arch == spec["arch"] and loaded.config == got["config"]
    sd, _ = read_checkpoint(FIXTURES / case / "weights.safetensors")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sd[k])


@pytest.mark.parametrize("wrapper", ["params", "params_ema", "state_dict", "net_g", "model"])
def test_basicsr_and_other_wrappers(wrapper: str, tmp_path: Path) -> None:
    sd, _ = read_checkpoint(FIXTURES / "evssm_global_d8_1x32x64" / "weights.safetensors")
    path = tmp_path / "net_g_latest.pth"
    torch.save({wrapper: sd, "iter": 12345}, path)
    code, out = _convert([str(path), str(tmp_path / "o.safetensors"), "--json"])
    assert code == 0, out
    assert json.loads(out)["arch"] == "evssm"


def test_dataparallel_prefix_is_stripped(tmp_path: Path) -> None:
    sd, _ = read_checkpoint(FIXTURES / "algnet_w8_1x64x48" / "weights.safetensors")
    path = tmp_path / "ALGNet.pth"
    torch.save({"module." + k: v for k, v in sd.items()}, path)
    code, out = _convert([str(path), str(tmp_path / "o.safetensors"), "--json"])
    assert code == 0, out
    assert json.loads(out)["config"]["width"] == 8


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint would do on load
        return (os.system, (f"touch {self.marker}",))


def test_refuses_pickle_that_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Evil(marker)}, path)
    res = runner.invoke(app, ["convert", str(path), str(tmp_path / "o.safetensors")])
    assert res.exit_code == 1
    assert "refused to load" in res.stderr and "could run code" in res.stderr
    assert "Traceback" not in res.stderr
    assert not marker.exists(), "the pickle's code ran"
    assert not (tmp_path / "o.safetensors").exists()


def test_mismatch_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    sd, _ = read_checkpoint(FIXTURES / "algnet_w8_1x64x48" / "weights.safetensors")
    sd = dict(sd)
    sd.pop("encoders.0.0.conv4.weight")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.safetensors"
    from safetensors.torch import save_file

    save_file(sd, str(path))
    pattern = r"missing \(e\.g\. encoders\.0\.0\.conv4\.weight\).*unexpected \(e\.g\. extra\.weight\)"
    with pytest.raises(CheckpointError, match=pattern):
        load_model(path)


def test_truncated_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    good = FIXTURES / "evssm_global_d8_1x32x64" / "weights.safetensors"
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(cut)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a weights file"):
        read_checkpoint(junk)
    zipped = tmp_path / "broken.pth"
    zipped.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(zipped)
    with pytest.raises(CheckpointError, match="no such weights file"):
        read_checkpoint(tmp_path / "nope.pth")
    other = tmp_path / "other.safetensors"
    from safetensors.torch import save_file

    save_file({"conv.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(CheckpointError, match="could not recognise"):
        load_model(other)


def test_arch_override_must_fit(tmp_path: Path) -> None:
    res = runner.invoke(app, ["convert", str(FIXTURES / "evssm_global_d8_1x32x64" / "weights.safetensors"),
                              str(tmp_path / "o.safetensors"), "--arch", "algnet"])
    assert res.exit_code == 1 and res.stdout == ""
    src = FIXTURES / "evssm_global_d8_1x32x64" / "weights.safetensors"
    assert res.stderr.strip() == f"error: {src}: these weights are not algnet's (detected: evssm); check --arch"
    assert not (tmp_path / "o.safetensors").exists()


def test_metadata_records_source_and_settings(tmp_path: Path) -> None:
    src = FIXTURES / "algnet_local_w8_1x64x48" / "weights.safetensors"
    dst = tmp_path / "o.safetensors"
    code, out = _convert([str(src), str(dst), "--variant", "local", "--json"])
    assert code == 0, out
    _, meta = read_checkpoint(dst)
    import hashlib

    assert meta["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["arch"] == "algnet" and meta["variant"] == "local" and meta["input_range"] == "[0, 1]"
    assert meta["pad_multiple"] == "16"


def test_save_model_round_trip_fp16(tmp_path: Path) -> None:
    from deblurcli.models import create

    cfg = {"width": 4, "middle_blk_num": 1, "enc_blk_nums": [1, 1, 1, 1], "dec_blk_nums": [1, 1, 1, 1]}
    net = create("algnet", cfg, "plain")
    save_model(net, tmp_path / "m.safetensors", arch="algnet", config=cfg, variant="plain", dtype=torch.float16)
    back, spec = load_model(tmp_path / "m.safetensors")
    assert spec.variant == "plain" and spec.config == cfg
    for k, v in net.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v.half().float(), atol=0, rtol=0)
