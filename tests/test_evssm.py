"""EVSSM: checkpoint compatibility, conformance with the authors' outputs, and the two forms.

Everything here is small (dim 8 networks, maps of a few dozen pixels, the full-size model only on
the meta device) so the file runs in seconds on one shared CPU core.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from deblurcli.errors import UsageError
from deblurcli.models import detect_arch, get_arch
from deblurcli.models.evssm import SPEC
from deblurcli.models.evssm import network as evssm
from deblurcli.weights import read_checkpoint


def _conformance_root() -> Path | None:
    here = Path(__file__).parent
    for root in (
        os.environ.get("DEBLUR_CONFORMANCE_DIR"),
        here / "fixtures" / "conformance",
        here.parent.parent / "shared" / "conformance",
    ):
        if root and (Path(root) / "official_state_dicts.json").is_file():
            return Path(root)
    return None


ROOT = _conformance_root()
needs_fixtures = pytest.mark.skipif(ROOT is None, reason="conformance fixtures not found")
CASES = sorted(p.name for p in ROOT.glob("evssm_*") if (p / "case.json").is_file()) if ROOT else []
SMALL: dict[str, Any] = {"dim": 8, "num_blocks": [1, 2, 2]}
DEFAULTS = {"inp_channels": 3, "out_channels": 3, "dim": 48, "num_blocks": [6, 6, 12],
            "ffn_expansion_factor": 3, "bias": False}


def _official(name: str) -> dict[str, Any]:
    assert ROOT is not None
    return json.loads((ROOT / "official_state_dicts.json").read_text())[name]


def _meta_state_dict(keys: dict[str, list[int]]) -> dict[str, Tensor]:
    """Shapes without storage: enough for everything that reads only names and shapes."""
    return {k: torch.empty(shape, device="meta") for k, shape in keys.items()}


def _case(name: str) -> tuple[dict[str, Any], nn.Module, dict[str, Tensor]]:
    assert ROOT is not None
    folder = ROOT / name
    case = json.loads((folder / "case.json").read_text())
    sd, _ = read_checkpoint(folder / "weights.safetensors")
    settings = {"scan_window": case["scan_window"]} if "scan_window" in case else {}
    model = evssm.build(case["kwargs"], case["variant"], **settings)
    model.load_state_dict(sd, strict=True)
    return case, model.eval(), load_file(str(folder / "io.safetensors"))


# --- the module contract -----------------------------------------------------------------------


def test_contract() -> None:
    assert get_arch("evssm") is SPEC and SPEC.build.module == "deblurcli.models.evssm.network"
    assert SPEC.name == "evssm"
    assert SPEC.variants == ("global", "windowed")
    assert SPEC.default_variant == "windowed"
    assert SPEC.input_range == "[0, 1]"
    assert evssm.pad_multiple({}, "windowed") == 4
    assert evssm.pad_multiple({}, "global") == 32
    with pytest.raises(UsageError):
        evssm.pad_multiple({}, "local")


def test_build_settings() -> None:
    assert evssm.build(SMALL).scan_window == evssm.OFFICIAL_WINDOWS
    assert evssm.build(SMALL, "global").variant == "global"
    model = evssm.build(SMALL, "windowed", scan_window={"level1": 24, "level2": 12, "level3": 8})
    assert model.decoder_level3.block1.window == 8 and model.encoder_level1.block0.window == 24
    model.set_scan_window(None)
    assert model.variant == "global" and model.encoder_level2.block0.window is None
    with pytest.raises(UsageError):
        evssm.build(SMALL, "global", scan_window=(8, 8, 8))
    with pytest.raises(UsageError):
        evssm.build(SMALL, "windowed", local_pool=(2, 2))
    with pytest.raises(UsageError):
        evssm.build(SMALL, "tiled")


def test_parse_scan_window() -> None:
    assert evssm.parse_scan_window(None) is None
    assert evssm.parse_scan_window([24, 12, 8]) == (24, 12, 8)
    assert evssm.parse_scan_window({"level1": 24, "level2": 12, "level3": 8}) == (24, 12, 8)
    assert evssm.parse_scan_window(384) == evssm.OFFICIAL_WINDOWS
    for bad in ([1, 2], {"level1": 3}, (0, 4, 4), "384", True, ("a", 1, 1)):
        with pytest.raises(UsageError):
            evssm.parse_scan_window(bad)  # type: ignore[arg-type]


# --- checkpoints --------------------------------------------------------------------------------


@needs_fixtures
def test_official_full_size_keys_and_config() -> None:
    """The released model's every key and shape, checked without allocating its 17M parameters."""
    official = _official("evssm")
    sd = _meta_state_dict(official["keys"])
    assert evssm.detect(sd) and detect_arch(sd) == "evssm"
    config = evssm.infer_config(sd)
    assert config == {**DEFAULTS, **official["kwargs"]}
    with torch.device("meta"):
        model = evssm.build(config, "windowed")
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: list(v) for k, v in official["keys"].items()}
    assert sum(p.numel() for p in model.parameters()) == official["n_params"]
    assert evssm.infer_config({f"module.{k}": v for k, v in sd.items()}) == config


@needs_fixtures
@pytest.mark.parametrize("other", ["algnet", "algnet-b", "xyscannet", "xyscannetp"])
def test_detect_rejects_other_architectures(other: str) -> None:
    assert not evssm.detect(_meta_state_dict(_official(other)["keys"]))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"inp_channels": 3, "out_channels": 3, "dim": 16, "num_blocks": [2, 1, 3],
         "ffn_expansion_factor": 2, "bias": True},
        {"inp_channels": 1, "out_channels": 1, "dim": 24, "num_blocks": [1, 1, 1],
         "ffn_expansion_factor": 2.66, "bias": False},
    ],
)
def test_infer_config_round_trip(kwargs: dict[str, Any]) -> None:
    """Inferred kwargs rebuild the exact same shapes, even for a truncated non-integer factor."""
    with torch.device("meta"):
        sd = evssm.EVSSM(**kwargs).state_dict()
        inferred = evssm.infer_config(sd)
        rebuilt = evssm.EVSSM(**inferred).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in sd.items()}
    for key in ("inp_channels", "out_channels", "dim", "num_blocks", "bias"):
        assert inferred[key] == kwargs[key]
    assert inferred["ffn_expansion_factor"] == kwargs["ffn_expansion_factor"]


# --- conformance --------------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("name", CASES)
def test_fixture(name: str) -> None:
    case, model, io = _case(name)
    sd, _ = read_checkpoint(ROOT / name / "weights.safetensors")  # type: ignore[operator]
    assert evssm.detect(sd)
    assert evssm.infer_config(sd) == case["kwargs"]
    assert sum(p.numel() for p in model.parameters()) == case["n_params"]
    x = io["input"]
    assert x.shape[-1] % evssm.pad_multiple(case["kwargs"], case["variant"]) == 0
    with torch.no_grad():
        y = evssm.restore(model, x)
    tol = case["tolerance"]
    torch.testing.assert_close(y, io["output"], atol=tol["atol"], rtol=tol["rtol"])
    with torch.no_grad():
        (out,) = evssm.training_outputs(model, x)
    torch.testing.assert_close(out, y)


@needs_fixtures
def test_windowed_with_large_windows_equals_global() -> None:
    """Windows at least as big as every map make the test form the training form exactly."""
    _, model, io = _case("evssm_global_d8_1x32x64")
    x = io["input"]
    with torch.no_grad():
        ref = model(x)
        for windows in ((64, 64, 64), evssm.OFFICIAL_WINDOWS):
            model.set_scan_window(windows)
            torch.testing.assert_close(model(x), ref, atol=1e-6, rtol=1e-6)


@needs_fixtures
def test_windowed_case_really_uses_windows() -> None:
    """Guard against a fixture that a global scan would pass too."""
    _, model, io = _case("evssm_windowed_d8_1x40x52")
    with torch.no_grad():
        model.set_scan_window(None)
        y = model(io["input"])
    assert (y - io["output"]).abs().max() > 1e-2


# --- the windowed form's parts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "window", "expected"),
    [(52, 24, (24, [0, 14, 28])), (40, 24, (24, [0, 16])), (13, 8, (8, [0, 5])), (10, 8, (8, [0, 2])),
     (8, 8, (8, [0])), (5, 8, (5, [0])), (720, 384, (384, [0, 336])), (1280, 384, (384, [0, 299, 598, 896]))],
)
def test_window_starts(size: int, window: int, expected: tuple[int, list[int]]) -> None:
    k, starts = evssm.window_starts(size, window)
    assert (k, starts) == expected
    assert len(starts) == math.ceil(size / k) and starts[-1] + k == size


def test_windowed_apply_averages_overlaps() -> None:
    """A per-pixel function gives the same map whatever the tiling: only the averaging can differ."""
    torch.manual_seed(0)
    fn = nn.Conv2d(4, 4, 1)
    x = torch.randn(2, 4, 13, 21)
    with torch.no_grad():
        ref = fn(x)
        for window in (5, 8, 12, 40):
            torch.testing.assert_close(evssm.windowed_apply(fn, x, window), ref, atol=1e-6, rtol=1e-6)


def test_batched_windowed_matches_single_images() -> None:
    """The official test model takes one image at a time; batches must not mix windows."""
    torch.manual_seed(0)
    model = evssm.build(SMALL, "windowed", scan_window=(16, 8, 4)).eval()
    x = torch.rand(2, 3, 24, 28)
    with torch.no_grad():
        both = evssm.restore(model, x)
        one = torch.cat([model(x[:1]), model(x[1:])])
    torch.testing.assert_close(both, one, atol=1e-5, rtol=1e-5)


# --- numerics, training, size rules -------------------------------------------------------------


def test_scan_runs_in_float32_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.dtype, ...]] = []
    real = evssm.selective_scan

    def spy(*args: Any, **kwargs: Any) -> Any:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
        seen.append(tuple(t.dtype for t in tensors))
        assert not torch.is_autocast_enabled("cpu")
        return real(*args, **kwargs)

    monkeypatch.setattr(evssm, "selective_scan", spy)
    torch.manual_seed(0)
    model = evssm.build(SMALL, "global").eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert seen and all(dt == torch.float32 for dts in seen for dt in dts)
    assert torch.isfinite(y).all()


def test_every_parameter_trains() -> None:
    torch.manual_seed(0)
    model = evssm.build(SMALL, "global")
    (out,) = evssm.training_outputs(model, torch.rand(1, 3, 32, 32))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_restore_checks_sizes() -> None:
    model = evssm.build(SMALL, "global").eval()
    with pytest.raises(UsageError):
        evssm.restore(model, torch.rand(1, 3, 36, 32))
    model.set_scan_window((16, 8, 4))
    with pytest.raises(UsageError):
        evssm.restore(model, torch.rand(1, 3, 16, 32))
    with torch.no_grad():
        assert evssm.restore(model, torch.rand(1, 3, 20, 36)).shape == (1, 3, 20, 36)
