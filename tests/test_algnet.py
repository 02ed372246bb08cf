"""ALGNet against the authors' code: key layout of the released models, configuration read back
from weights, and the conformance fixtures (outputs of the official ``algnet.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from deblurcli.models.algnet import SPEC
from deblurcli.models.algnet import network as algnet

FIXTURES = Path(__file__).parent / "fixtures" / "conformance"
CASES = sorted(p.name for p in FIXTURES.glob("algnet_*") if (p / "case.json").exists())
# Defaults of the official constructor (the json records only the arguments that were passed).
OFFICIAL_DEFAULTS = {
    "img_channel": 3, "width": 32, "middle_blk_num": 8, "enc_blk_nums": [2, 2, 4, 8], "dec_blk_nums": [8, 4, 2, 2],
}


def _official() -> dict:
    return json.loads((FIXTURES / "official_state_dicts.json").read_text())


def _shape_only(keys: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """A state dict with the right keys and shapes but no storage (the real ones are 200M params)."""
    return {k: torch.empty(shape, device="meta") for k, shape in keys.items()}


def _case(name: str) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    folder = FIXTURES / name
    return (
        json.loads((folder / "case.json").read_text()),
        load_file(folder / "weights.safetensors"),
        load_file(folder / "io.safetensors"),
    )


def test_fixtures_present() -> None:
    assert {"algnet_w8_1x64x48", "algnet_w8_1x60x44", "algnet_local_w8_1x64x48"} <= set(CASES)


@pytest.mark.parametrize("name", ["algnet", "algnet-b"])
def test_official_layout(name: str) -> None:
    entry = _official()[name]
    fake = _shape_only(entry["keys"])
    assert algnet.detect(fake)
    expected = {**OFFICIAL_DEFAULTS, **entry["kwargs"]}
    assert algnet.infer_config(fake) == expected
    with torch.device("meta"):
        model = algnet.build(expected, "plain")
    sd = model.state_dict()
    assert list(sd) == list(entry["keys"])  # same names, same order
    assert {k: list(v.shape) for k, v in sd.items()} == entry["keys"]
    assert sum(p.numel() for p in model.parameters()) == entry["n_params"]


def test_detect_rejects_other_architectures() -> None:
    official = _official()
    for name in ("evssm", "xyscannet", "xyscannetp"):
        assert not algnet.detect(_shape_only(official[name]["keys"])), name


@pytest.mark.parametrize("name", CASES)
def test_fixture_conformance(name: str) -> None:
    case, weights, io = _case(name)
    assert algnet.detect(weights)
    assert algnet.infer_config(weights) == case["kwargs"]
    model = algnet.build(case["kwargs"], case["variant"], local_pool=case.get("local_pool")).eval()
    model.load_state_dict(weights, strict=True)
    assert sum(p.numel() for p in model.parameters()) == case["n_params"]
    tol = case["tolerance"]
    with torch.no_grad():
        outputs = model(io["input"])
    assert len(outputs) == len(case["outputs"])
    for got, key in zip(outputs, case["outputs"], strict=True):
        torch.testing.assert_close(got, io[key], atol=tol["atol"], rtol=tol["rtol"], msg=f"{name} {key}")


def test_local_fixture_depends_on_local_pool() -> None:
    """The local fixture must not pass with the plain pooling (i.e. it really tests TLC)."""
    _, weights, io = _case("algnet_local_w8_1x64x48")
    model = algnet.build(algnet.infer_config(weights), "plain").eval()
    model.load_state_dict(weights)
    with torch.no_grad():
        assert (model(io["input"])[-1] - io["output_3"]).abs().max() > 0.1


def _kernels(model: algnet.ALGNet) -> list[tuple[int, int]]:
    return [model.encoders[i][0].l_layer.ap.kernel for i in range(4)] + [model.middle_blks[0].l_layer.ap.kernel]


def test_tlc_kernels_follow_training_feature_size() -> None:
    small = {"width": 4, "middle_blk_num": 1, "enc_blk_nums": [1] * 4, "dec_blk_nums": [1] * 4, "d_state": 4}
    default = algnet.build(small, "local")
    assert _kernels(default) == [(384, 384), (192, 192), (96, 96), (48, 48), (24, 24)]
    # The fixture's 16 px training size: the 1 px bottleneck gets a 1 px window, not base / 16.
    tiny = algnet.build(small, "local", local_pool={"train_size": [1, 3, 16, 16], "base_size": [24, 24]})
    assert _kernels(tiny) == [(24, 24), (12, 12), (6, 6), (3, 3), (1, 1)]
    # A training size that is not a multiple of 16 is padded before the layers see it.
    odd = algnet.build(small, "local", local_pool={"train_size": [250, 200]})
    assert _kernels(odd)[0] == (256 * 375 // 250, 208 * 300 // 200)
    # Decoders share their level's window.
    assert tiny.decoders[0][0].l_layer.ap.kernel == (3, 3)
    assert tiny.decoders[3][0].l_layer.ap.kernel == (24, 24)


def _naive_sliding_mean(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if kh >= h and kw >= w:
        return x.mean(dim=(-2, -1), keepdim=True)
    kh, kw = min(kh, h), min(kw, w)
    out = F.avg_pool2d(x, (kh, kw), stride=1)
    return F.pad(out, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2), mode="replicate")


@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (4, 7), (5, 40), (20, 2), (13, 17), (50, 50)])
def test_sliding_mean_matches_avg_pool(kernel: tuple[int, int]) -> None:
    x = torch.randn(2, 3, 13, 17, generator=torch.Generator().manual_seed(0))
    got = algnet.SlidingMean(kernel)(x)
    want = _naive_sliding_mean(x, *kernel)
    torch.testing.assert_close(got.expand_as(x), want.expand_as(x), atol=1e-5, rtol=1e-5)


def _tiny(d_state: int = 4, **kw) -> algnet.ALGNet:
    torch.manual_seed(0)
    return algnet.ALGNet(width=4, middle_blk_num=1, enc_blk_nums=(1, 0, 1, 1), dec_blk_nums=(1, 1, 0, 2),
                         d_state=d_state, **kw)


def test_infer_config_round_trip_and_d_state() -> None:
    model = _tiny(d_state=8)
    cfg = algnet.infer_config(model.state_dict())
    assert cfg == {**model.config, "enc_blk_nums": [1, 0, 1, 1], "dec_blk_nums": [1, 1, 0, 2]}
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    assert algnet.detect(prefixed) and algnet.infer_config(prefixed) == cfg
    rebuilt = algnet.build(cfg, "plain")
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_restore_and_training_outputs() -> None:
    model = _tiny().eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        outs = algnet.training_outputs(model, x)
        assert [tuple(o.shape[-2:]) for o in outs] == [(4, 6), (8, 12), (16, 24), (32, 48)]
        torch.testing.assert_close(algnet.restore(model, x), outs[-1])
        # The official forward pads odd sizes; restore crops back.
        assert algnet.restore(model, x[..., :30, :41]).shape == (2, 3, 30, 41)
    assert algnet.pad_multiple({}, "local") == 16


def test_global_branch_runs_in_float32_under_autocast() -> None:
    model = _tiny().eval()
    dtypes: list[torch.dtype] = []
    model.encoders[0][0].g_layer.mamba.register_forward_pre_hook(lambda _m, args: dtypes.append(args[0].dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 3, 16, 16))[-1]
    assert dtypes == [torch.float32] and torch.isfinite(out).all()


def test_build_rejects_bad_settings() -> None:
    kwargs = {"width": 4, "middle_blk_num": 0, "enc_blk_nums": [0] * 4, "dec_blk_nums": [0] * 4}
    with pytest.raises(ValueError):
        algnet.build(kwargs, "global")
    with pytest.raises(ValueError):
        algnet.build(kwargs, "plain", local_pool={"train_size": [64, 64]})
    with pytest.raises(ValueError):
        algnet.build(kwargs, "local", scan_window=8)
    assert algnet.build(kwargs, "plain", local_pool=None, scan_window=None).variant == "plain"
    assert (SPEC.name, SPEC.default_variant, SPEC.input_range) == ("algnet", "local", "[0, 1]")
