"""ScanUNet, the embedded default's network: shapes, identity start, and a checkpoint that the
public loader recognises and rebuilds from its keys alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deblurcli.models import create, detect_arch
from deblurcli.models.scanunet import network as su
from deblurcli.weights import load_model, read_checkpoint, save_model

SMALL = {"img_channel": 3, "width": 4, "enc_blk_nums": [1, 1, 2, 1], "middle_blk_num": 1,
         "dec_blk_nums": [1, 1, 1, 1], "scan_levels": [2, 4], "d_state": 4, "max_mult": 2}


def test_output_shape_and_untrained_identity() -> None:
    torch.manual_seed(0)
    model = create("scanunet", SMALL).eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        y = su.restore(model, x)
    assert y.shape == x.shape
    assert torch.equal(y, x), "an untrained ScanUNet must return its input (zero-initialised tail)"
    assert su.pad_multiple(SMALL) == 32


def test_trains_away_from_identity_and_scans_receive_gradient() -> None:
    torch.manual_seed(0)
    model = create("scanunet", SMALL)
    x, target = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss = (su.training_outputs(model, x)[-1] - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    scan = model.mid.mixers[0].scan_h
    assert scan.in_proj.weight.grad is not None and scan.in_proj.weight.grad.abs().sum() > 0
    assert not torch.equal(model(x), x)


def test_checkpoint_detected_and_config_inferred(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = create("scanunet", SMALL).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.01)
    path = tmp_path / "m.safetensors"
    save_model(model, path, arch="scanunet", config=SMALL)
    sd, _ = read_checkpoint(path)
    assert detect_arch(sd) == "scanunet"
    assert su.infer_config(sd) == SMALL
    # and from keys alone (a bare .pth), with a DataParallel prefix
    pth = tmp_path / "bare.pth"
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, pth)
    loaded, spec = load_model(pth)
    assert spec.arch == "scanunet" and spec.config == SMALL
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_rejects_bad_levels() -> None:
    with pytest.raises(ValueError, match="scan_levels"):
        create("scanunet", {**SMALL, "scan_levels": [7]})


def test_a_gap_in_the_block_numbering_is_refused() -> None:
    from deblurcli.errors import CheckpointError

    sd = create("scanunet", SMALL).state_dict()
    holed = {k: v for k, v in sd.items() if not k.startswith("enc.2.blocks.0.")}
    with pytest.raises(CheckpointError, match=r"ScanUNet weights have gaps in the blocks under 'enc.2.blocks.': \[1\]"):
        su.infer_config(holed)


def test_config_inferred_without_middle_blocks() -> None:
    config = {**SMALL, "middle_blk_num": 0, "max_mult": 8, "scan_levels": [3]}
    assert su.infer_config(create("scanunet", config).state_dict()) == config
