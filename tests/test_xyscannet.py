"""XYScanNet: configuration from keys, the authors' outputs, and batch-independent restoration."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from deblurcli.errors import CheckpointError, UsageError
from deblurcli.models.xyscannet import SPEC
from deblurcli.models.xyscannet import network as xy
from deblurcli.weights import read_checkpoint

_HERE = Path(__file__).parent
_CANDIDATES = [
    Path(os.environ["DEBLUR_CONFORMANCE_DIR"]) if os.environ.get("DEBLUR_CONFORMANCE_DIR") else None,
    _HERE / "fixtures" / "conformance",
    _HERE.parent.parent / "shared" / "conformance",
]
ROOT = next((p for p in _CANDIDATES if p is not None and (p / "official_state_dicts.json").is_file()), None)
needs_fixtures = pytest.mark.skipif(ROOT is None, reason="conformance fixtures not found")

CASES = sorted(p.name for p in ROOT.glob("xyscannet_*") if (p / "case.json").is_file()) if ROOT else []
DEFAULTS: dict[str, Any] = {
    "inp_channels": 3, "out_channels": 3, "dim": 72, "num_blocks": [3, 3, 6],
    "vssm_expansion_factor": 1, "ffn_expansion_factor": 1, "bias": False, "LayerNorm_type": "WithBias",
}


def _official(name: str) -> dict[str, Any]:
    assert ROOT is not None
    return json.loads((ROOT / "official_state_dicts.json").read_text())[name]


def _meta_state_dict(entry: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Shapes only, keys as the loader hands them over (``module.`` stripped)."""
    prefix = entry.get("key_prefix", "")
    return {k.removeprefix(prefix): torch.empty(shape, device="meta") for k, shape in entry["keys"].items()}


def _load_case(case: str) -> tuple[torch.nn.Module, dict[str, Any], dict[str, torch.Tensor]]:
    assert ROOT is not None
    folder = ROOT / case
    spec = json.loads((folder / "case.json").read_text())
    sd, _ = read_checkpoint(folder / "weights.safetensors")
    model = xy.build(spec["kwargs"], spec.get("variant", SPEC.default_variant))
    model.load_state_dict(sd, strict=True)
    return model.eval(), spec, load_file(str(folder / "io.safetensors"))


@needs_fixtures
@pytest.mark.parametrize("name", ["xyscannet", "xyscannetp"])
def test_infer_config_official_full_size(name: str) -> None:
    entry = _official(name)
    sd = _meta_state_dict(entry)
    assert xy.detect(sd)
    config = xy.infer_config(sd)
    assert config == {**DEFAULTS, **entry["kwargs"]}
    # Our module has exactly the authors' keys and shapes, and their parameter count.
    with torch.device("meta"):
        model = xy.build(config)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == {k: list(v.shape) for k, v in sd.items()}
    assert sum(p.numel() for p in model.parameters()) == entry["n_params"]


@needs_fixtures
@pytest.mark.parametrize("name", ["algnet", "algnet-b", "evssm"])
def test_detect_rejects_other_architectures(name: str) -> None:
    assert not xy.detect(_meta_state_dict(_official(name)))


@needs_fixtures
@pytest.mark.parametrize("case", CASES)
def test_reproduces_official_outputs(case: str) -> None:
    model, spec, io = _load_case(case)
    sd, _ = read_checkpoint(ROOT / case / "weights.safetensors")  # type: ignore[operator]
    assert xy.detect(sd)
    assert xy.infer_config(sd) == {**DEFAULTS, **spec["kwargs"]}
    assert sum(p.numel() for p in model.parameters()) == spec["n_params"]
    with torch.no_grad():
        restored, residual, extra = model(io["input"])
    assert extra is None
    tol = spec["tolerance"]
    for name, ours in zip(spec["outputs"], (restored, residual), strict=True):
        torch.testing.assert_close(ours, io[name], atol=tol["atol"], rtol=tol["rtol"])


@needs_fixtures
def test_restore_is_per_image() -> None:
    model, _, io = _load_case("xyscannet_d8_2x40x40")
    x = io["input"] + 0.5
    with torch.no_grad():
        batched = xy.restore(model, x)
        alone = torch.cat([xy.restore(model, x[i : i + 1]) for i in range(x.shape[0])])
        # The raw forward is the authors' and mixes the batch through the CLFF gates ...
        raw_single = model(x[:1] - 0.5)[0] + 0.5
        assert not torch.allclose(model(x - 0.5)[0][:1] + 0.5, raw_single, atol=1e-4, rtol=0)
    # ... restore() does not.
    torch.testing.assert_close(batched, alone)
    torch.testing.assert_close(batched[:1], raw_single)


@needs_fixtures
def test_training_outputs_one_full_size_prediction() -> None:
    model, _, io = _load_case("xyscannet_d8_2x40x40")
    with torch.no_grad():
        outs = xy.training_outputs(model, io["input"] + 0.5)
    assert len(outs) == 1
    torch.testing.assert_close(outs[0], io["output_0"] + 0.5, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dim": 8, "num_blocks": [1, 2, 1]},
        {"dim": 8, "num_blocks": [2, 1, 1], "vssm_expansion_factor": 2, "ffn_expansion_factor": 3,
         "bias": True, "LayerNorm_type": "BiasFree", "out_channels": 1, "inp_channels": 1},
    ],
)
def test_infer_config_round_trip(kwargs: dict[str, Any]) -> None:
    sd = xy.build(kwargs).state_dict()
    assert xy.infer_config(sd) == {**DEFAULTS, **kwargs}


def test_fractional_ffn_factor_rebuilds_same_shapes() -> None:
    model = xy.build({"dim": 12, "num_blocks": [1, 1, 1], "ffn_expansion_factor": 2.66})
    sd = model.state_dict()
    rebuilt = xy.build(xy.infer_config(sd)).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in sd.items()}


def test_sizes_and_errors() -> None:
    model = xy.build({"dim": 4, "num_blocks": [1, 1, 1]}).eval()
    assert xy.pad_multiple({}, "plain") == 4
    with torch.no_grad():
        assert xy.restore(model, torch.rand(1, 3, 12, 20)).shape == (1, 3, 12, 20)
        with pytest.raises(ValueError, match="divisible by 4"):
            model(torch.rand(1, 3, 14, 20))
    with pytest.raises(UsageError):
        xy.build({"dim": 4}, "windowed")
    with pytest.raises(UsageError):
        xy.build({"dim": 4}, scan_window=8)
    with pytest.raises(CheckpointError):
        xy.infer_config({"patch_embed.proj.weight": torch.empty(8, 3, 3, 3)})
