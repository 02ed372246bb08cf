"""The architecture contract: a new network is one ArchSpec and one registration, nothing else.

The fifth architecture below lives in this file alone. Registering it must be enough for the
whole tool to know it: ``deblur convert`` recognises an authors'-style checkpoint of it from its
keys, ``deblur run`` restores a photo with it, and ``deblur train`` trains it from its recipe and
exports it through its export hook.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from deblurcli import api, models, tiling
from deblurcli.api import Deblurrer
from deblurcli.cli import app
from deblurcli.errors import CheckpointError
from deblurcli.models import ArchSpec, TrainRecipe, create, detect_arch, get_arch
from deblurcli.models.contract import CODE_HOOKS, CONV_MIN_TILE, lazy, width_memory
from deblurcli.weights import load_model, save_model

runner = CliRunner()


class TwoScaleNet(nn.Module):
    """A small residual network predicting a half-size and a full-size image, as ALGNet does."""

    def __init__(self, width: int = 4, depth: int = 1) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.down = nn.Conv2d(width, width, 2, stride=2)
        self.tail_half = nn.Conv2d(width, 3, 3, padding=1)
        self.tail = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = F.gelu(self.head(x))
        for conv in self.body:
            f = f + F.gelu(conv(f))
        half = F.avg_pool2d(x, 2) + self.tail_half(self.down(f))
        return half, x + self.tail(f)


def _build(kwargs: Mapping[str, Any], variant: str = "plain", **settings: Any) -> nn.Module:
    if variant != "plain" or settings:
        raise ValueError(f"twoscale has only the plain form and no settings (got {variant}, {settings})")
    return TwoScaleNet(**kwargs)


def _detect(sd: Mapping[str, Any]) -> bool:
    return {"head.weight", "down.weight", "tail_half.weight", "tail.weight"} <= set(sd)


def _infer_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    depth = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    return {"width": int(sd["head.weight"].shape[0]), "depth": depth}


EXPORTS: list[tuple[str, int]] = []


def _export_settings(variant: str, settings: dict[str, Any], train_patch: int) -> dict[str, Any]:
    EXPORTS.append((variant, train_patch))
    return settings


SPEC = ArchSpec(
    name="twoscale", title="TwoScale", variants=("plain",), default_variant="plain", input_range="[0, 1]",
    build=_build, detect=_detect, infer_config=_infer_config,
    pad_multiple=lambda kwargs, variant="plain": 2,
    restore=lambda model, x: model(x)[-1],
    training_outputs=lambda model, x: list(model(x)),
    min_tile=CONV_MIN_TILE, bytes_per_pixel=width_memory("width"), export_settings=_export_settings,
    configs={"twoscale": {"width": 6, "depth": 2}},
    recipe=TrainRecipe(
        model={"width": 4, "depth": 1}, variant="plain",
        overrides={"train": {"optimizer": "adam", "lr": 1.0e-3}, "loss": {"fft": 0.0}},
        comments={"arch": "TwoScale: a test network with two outputs"},
    ),
)


@pytest.fixture
def twoscale() -> Iterator[ArchSpec]:
    models.register_arch(SPEC)
    EXPORTS.clear()
    try:
        yield SPEC
    finally:
        models.unregister_arch(SPEC.name)


def _authors_checkpoint(path: Path, config: dict[str, Any]) -> nn.Module:
    """A BasicSR-style file (weights under ``params``) saved from a DataParallel model (``module.``)."""
    torch.manual_seed(1)
    net = TwoScaleNet(**config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)  # far enough from the identity that a wrong path could not pass
    torch.save({"params": {f"module.{k}": v for k, v in net.state_dict().items()}, "iter": 1000}, path)
    return net


def test_a_fifth_architecture_runs_end_to_end(twoscale: ArchSpec, tmp_path: Path) -> None:
    assert "twoscale" in models.arch_names() and get_arch("TwoScale") is twoscale

    # convert: recognised from its keys, config read from their shapes
    authors = tmp_path / "net_g_twoscale.pth"
    net = _authors_checkpoint(authors, {"width": 6, "depth": 2})
    ours = tmp_path / "twoscale.safetensors"
    res = runner.invoke(app, ["convert", str(authors), str(ours), "--json"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["arch"] == "twoscale"
    assert json.loads(res.stdout)["config"] == {"width": 6, "depth": 2}
    _, spec = load_model(ours)
    assert (spec.arch, spec.pad_multiple, spec.input_range) == ("twoscale", 2, "[0, 1]")

    # run: the registered restore hook with the converted weights makes the pixels
    photo = (np.random.default_rng(0).random((32, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    out = tmp_path / "sharp.png"
    res = runner.invoke(app, ["run", str(tmp_path / "photo.png"), "--model", str(ours), "-o", str(out),
                              "--device", "cpu", "--tile", "0", "--quiet"])
    assert res.exit_code == 0, res.stderr
    got = np.asarray(Image.open(out)).astype(np.int16)
    with torch.no_grad():
        x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
        want = (net(x)[-1].clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.int16)
    assert np.abs(got - want).max() <= 1
    assert np.abs(got - photo).mean() > 5  # the network really changed the photo
    # the authors' file runs as it is too, recognised from its keys
    res = runner.invoke(app, ["run", str(tmp_path / "photo.png"), "--model", str(authors), "-o",
                              str(tmp_path / "direct.png"), "--device", "cpu", "--tile", "0", "--quiet"])
    assert res.exit_code == 0, res.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "direct.png")).astype(np.int16), got)

    # train: its recipe is the default config, its two outputs feed the loss, its hook exports
    res = runner.invoke(app, ["train", "--print-config", "twoscale"])
    assert res.exit_code == 0 and "TwoScale: a test network" in res.stdout and "width: 4" in res.stdout
    run = tmp_path / "run"
    res = runner.invoke(app, [
        "train", "--arch", "twoscale", "--steps", "3", "--patch-size", "16", "--batch-size", "2",
        "--dead-leaves", "1.0", "--out", str(run), "--num-workers", "0", "--device", "cpu", "--threads", "1",
        "--set", "val.count=2", "--set", "val.size=16", "--set", "log.every=1",
    ])
    assert res.exit_code == 0, res.stderr
    losses = [r["loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert losses and all(np.isfinite(losses))
    trained, spec = load_model(run / "last.safetensors")
    assert spec.arch == "twoscale" and spec.config == {"width": 4, "depth": 1}
    assert isinstance(trained, TwoScaleNet) and EXPORTS and EXPORTS[-1] == ("plain", 16)


def test_registered_arch_reaches_tiling_and_memory_hint(twoscale: ArchSpec, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert models.find_arch("twoscale").min_tile == CONV_MIN_TILE  # registered: the tiler gets its minimum
    assert tiling.too_small_tile_warning(CONV_MIN_TILE, twoscale.min_tile, twoscale.title) is None
    assert isinstance(create("twoscale", {"width": 4, "depth": 1}), TwoScaleNet)
    path = tmp_path / "w.safetensors"
    save_model(TwoScaleNet(), path, arch="twoscale", config={"width": 4, "depth": 1})
    d = Deblurrer(path, device="cpu", progress=False)
    # Automatic tiles come from the spec's memory hint and never go below its minimum tile.
    monkeypatch.setattr(api, "_available_memory", lambda: 1)
    assert d.tile_for(4000, 3000) == CONV_MIN_TILE
    gib = 1 << 30
    monkeypatch.setattr(api, "_available_memory", lambda: gib)
    small = d.tile_for(4000, 3000)
    monkeypatch.setattr(d, "arch", dataclasses.replace(twoscale, bytes_per_pixel=lambda config: 4.0))
    assert CONV_MIN_TILE < small < d.tile_for(4000, 3000)


def test_unregistered_arch_is_unknown_everywhere(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="unknown architecture 'twoscale'"):
        get_arch("twoscale")
    sd = TwoScaleNet().state_dict()
    with pytest.raises(CheckpointError, match="could not recognise"):
        detect_arch(sd)
    res = runner.invoke(app, ["train", "--print-config", "twoscale"])
    assert res.exit_code == 2 and "algnet" in res.stderr


def test_builtin_specs_are_checked_and_complete() -> None:
    for name in models.ARCH_NAMES:
        spec = get_arch(name)
        assert spec.name == name and spec.default_variant in spec.variants
        # every named full-size config builds and is what infer_config reads back from its keys
        for config in spec.configs.values():
            with torch.device("meta"):
                net = spec.create(config)
            assert spec.detect(net.state_dict()) and detect_arch(net.state_dict()) == name
            assert spec.infer_config(net.state_dict()) == dict(config)


def test_network_code_has_one_home() -> None:
    """Each built-in's hooks run its ``network`` module's functions, so patching that module is
    seen by every caller; the torch-free package is the description only, not a second way in."""
    import importlib

    for name in models.ARCH_NAMES:
        spec = get_arch(name)
        assert all(getattr(spec, hook) == lazy(f"deblurcli.models.{name}.network", hook) for hook in CODE_HOOKS)
        assert not hasattr(importlib.import_module(f"deblurcli.models.{name}"), "build"), name
        assert not hasattr(spec, "DEFAULT_VARIANT"), name


def test_contract_violations_fail_at_registration() -> None:
    with pytest.raises(TypeError, match="default_variant"):
        dataclasses.replace(SPEC, default_variant="local")
    with pytest.raises(TypeError, match="recipe.variant"):
        dataclasses.replace(SPEC, recipe=dataclasses.replace(SPEC.recipe, variant="windowed"))
    with pytest.raises(TypeError, match="restore must be callable"):
        dataclasses.replace(SPEC, restore=None)
    with pytest.raises(TypeError, match="name"):
        dataclasses.replace(SPEC, name="Two Scale")
    with pytest.raises(ValueError, match="built-in"):
        models.register_arch(dataclasses.replace(get_arch("evssm")))
    models.register_arch(SPEC)
    try:
        with pytest.raises(ValueError, match="already registered"):
            models.register_arch(SPEC)
    finally:
        models.unregister_arch(SPEC.name)


def test_descriptions_import_no_torch() -> None:
    """`deblur models` and `train --print-config` read every built-in spec and must stay instant."""
    import subprocess
    import sys

    code = ("import sys; from deblurcli.models import ARCH_NAMES, get_arch, registry; "
            "from deblurcli.train.config import print_config; registry.entries(); "
            "[print_config(n) and get_arch(n).recipe for n in ARCH_NAMES]; "
            "assert 'torch' not in sys.modules, 'an architecture description imported torch'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_an_installed_package_adds_an_architecture_through_its_entry_point(tmp_path: Path) -> None:
    """A package declaring ``[project.entry-points."deblurcli.architectures"]`` is known to every
    command from the start, --help included; a broken one costs one warning line, not the tool."""
    import os
    import subprocess
    import sys

    (tmp_path / "deblur_plugnet.py").write_text(
        "from deblurcli.models import ArchSpec, TrainRecipe\n"
        "def _build(kwargs, variant='plain', **settings):\n"
        "    from torch import nn\n"
        "    return nn.Conv2d(3, 3, 3, padding=1)\n"
        "SPEC = ArchSpec(name='plugnet', title='PlugNet', variants=('plain',), default_variant='plain',\n"
        "    input_range='[0, 1]', build=_build, detect=lambda sd: set(sd) == {'plug.weight'},\n"
        "    infer_config=lambda sd: {}, pad_multiple=lambda kwargs, variant='plain': 1,\n"
        "    restore=lambda model, x: model(x), training_outputs=lambda model, x: [model(x)],\n"
        "    recipe=TrainRecipe(model={}, variant='plain', comments={'arch': 'PlugNet: from a plug-in'}))\n")
    dist = tmp_path / "deblur_plugnet-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: deblur-plugnet\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[deblurcli.architectures]\nplugnet = deblur_plugnet:SPEC\nbroken = no_such_module_here:SPEC\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}

    def deblur(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "deblurcli", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    res = deblur("convert", "--help")
    assert res.returncode == 0, res.stderr
    assert "scanunet | plugnet" in " ".join(res.stdout.split())  # the --arch choices, however wrapped
    assert res.stderr.count("architecture plug-in 'broken'") == 1 and "no_such_module_here" in res.stderr
    assert "plugnet" not in res.stderr  # loaded, not warned about
    res = deblur("train", "--print-config", "plugnet")
    assert res.returncode == 0, res.stderr
    assert "arch: plugnet" in res.stdout and "PlugNet: from a plug-in" in res.stdout
