"""Training: config round trips and errors, a loss that falls, exact resume, export, torchrun.

Most runs use a tiny stand-in network put in place of an architecture module (the loop only
talks to the architecture contract), so the loop itself is what these tests time; export and
torchrun use real, scaled-down networks because they must go through the real modules.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import deblurcli.models
from deblurcli.errors import UsageError
from deblurcli.models import ARCH_NAMES
from deblurcli.train import default_config, load_config, print_config, run
from deblurcli.train import loop as train_loop
from deblurcli.train.config import resolve_stages

torch.set_num_threads(1)

TINY_XYSCANNET = ["model.dim=4", "model.num_blocks=[1, 1, 1]"]


class TinyNet(nn.Module):
    """Not residual, so an untrained one is clearly wrong and a few steps visibly help."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 3, 3, padding=1)
        self.unused = nn.Parameter(torch.zeros(3))  # must be frozen, as ALGNet's unused tensors are

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.gelu(self.conv1(x)))


@pytest.fixture
def tiny_arch(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    mod = dataclasses.replace(
        deblurcli.models.get_arch("xyscannet"), input_range="[0, 1]",
        pad_multiple=lambda kwargs, variant="plain": 4,
        restore=lambda model, x: model(x),
        training_outputs=lambda model, x: [F.avg_pool2d(model(x), 2), model(x)],
    )
    monkeypatch.setattr(deblurcli.models, "get_arch", lambda name: mod)
    monkeypatch.setattr(deblurcli.models, "create", lambda arch, kwargs, variant=None, **s: TinyNet())
    monkeypatch.setattr(train_loop.Trainer, "export", lambda self, path, **kw: None)
    return mod


@pytest.fixture
def torch_scan():
    """The pure-torch scan: these few tiny steps would spend most of their time compiling numba."""
    from deblurcli import ssm

    before = ssm.get_backend()
    ssm.set_backend("torch")
    yield
    ssm.set_backend(before)


def tiny_config(out: Path, steps: int = 6, *extra: str, **flags) -> dict:
    sets = ["data.dead_leaves=1", "log.every=1", "val.count=2", "val.size=16", "val.every=3",
            "checkpoint.every=3", "train.lr=3e-3", "train.ema_decay=0.9", *extra]
    flags = {"arch": "xyscannet", "steps": steps, "patch_size": 16, "batch_size": 2, "num_workers": 0,
             "threads": 1, "device": "cpu", "out": str(out), **flags}
    return load_config(None, sets, **flags)


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(out) if "loss" in r}


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_print_config_parses_back_to_the_defaults(arch: str, tmp_path: Path) -> None:
    text = print_config(arch)
    assert "#" in text  # commented
    assert yaml.safe_load(text) == default_config(arch)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path) == default_config(arch)


def test_paper_recipes() -> None:
    a, e, x = (default_config(n) for n in ("algnet", "evssm", "xyscannet"))  # the papers' three
    assert (a["loss"]["pixel"], a["loss"]["edge"], a["loss"]["fft"], a["loss"]["all_scales"]) == (
        "charbonnier", 0.05, 0.1, True)
    assert a["train"]["optimizer"] == "adam" and a["variant"] == "plain"
    assert (e["loss"]["pixel"], e["loss"]["fft"], e["train"]["optimizer"], e["train"]["grad_clip"]) == (
        "l1", 0.1, "adamw", 0.01)
    assert [s[1] for s in resolve_stages(e)] == [128, 256] and e["variant"] == "global"
    assert (x["loss"]["edge"], x["loss"]["contrastive"]) == (0.05, 0.0)


def test_set_overrides_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('arch = "evssm"\n[train]\nlr = 5e-4\n[model]\ndim = 16\n')
    cfg = load_config(path, ["train.lr=1e-4", "model.num_blocks=[1, 1, 2]", "data.synth.noise_p=0.1",
                             "train.progressive=[[0.5, 64, 4], [1.0, 128, 2]]"], steps=10, out="x")
    assert cfg["arch"] == "evssm" and cfg["model"]["dim"] == 16 and cfg["model"]["num_blocks"] == [1, 1, 2]
    assert cfg["train"]["lr"] == 1e-4 and cfg["data"]["synth"] == {"noise_p": 0.1} and cfg["out"] == "x"
    assert resolve_stages(cfg) == [(5, 64, 4), (10, 128, 2)]
    assert [s[1] for s in resolve_stages(load_config(path, []))] == [128, 256]  # EVSSM's own schedule
    flat = load_config(path, [], patch_size=64)  # a crop size flag replaces the progressive schedule
    assert resolve_stages(flat) == [(flat["train"]["steps"], 64, 8)]
    flat = load_config(path, ["train.batch_size=64"])  # and so does --set, as a GPU run gives it
    assert resolve_stages(flat) == [(flat["train"]["steps"], flat["train"]["patch_size"], 64)]
    both = load_config(path, ["train.batch_size=64", "train.progressive=[[1.0, 96, 2]]"], steps=10)
    assert resolve_stages(both) == [(10, 96, 2)]  # unless a schedule is given beside it
    # YAML reads a bare `off` as false: it still means the choice a person typed
    assert load_config(None, ["train.amp=off"])["train"]["amp"] == "off"
    (tmp_path / "c.yaml").write_text("train:\n  amp: off\n")
    assert load_config(tmp_path / "c.yaml", [])["train"]["amp"] == "off"


@pytest.mark.parametrize(("override", "message"), [
    ("train.lrr=1", "'train.lr'"),
    ("trian.lr=1", "'train.lr'"),
    ("lr=1", "'train.lr'"),
    ("model.widht=8", "'model.width'"),
])
def test_unknown_key_names_the_closest(override: str, message: str) -> None:
    with pytest.raises(UsageError, match=f"unknown config key .*did you mean {message}"):
        load_config(None, [override], arch="algnet")


def test_bad_values_are_one_line_errors(tmp_path: Path) -> None:
    for sets, pattern in ((["train.lr=abc"], "must be a number"), (["train.optimizer=sgd"], "adam, adamw"),
                          (["train.progressive=[[1, 2]]"], r"\[until, patch, batch\]"), (["oops"], "key=value")):
        with pytest.raises(UsageError, match=pattern):
            load_config(None, sets)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 3\n")
    with pytest.raises(UsageError, match="'train.steps'"):
        load_config(bad)


# ------------------------------------------------------------------------------------------ loop


def test_training_lowers_the_loss(tiny_arch: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert run(tiny_config(out, 24, "val.every=0", "checkpoint.every=0")) == out
    got = losses(out)
    assert len(got) == 24
    first, last = sum(got[s] for s in range(1, 5)) / 4, sum(got[s] for s in range(21, 25)) / 4
    assert last < 0.7 * first, (first, last)
    record = read_log(out)[-1]
    assert {"step", "loss", "lr", "images_per_s", "elapsed", "val_psnr", "val_ssim", "val_input_psnr"} <= set(record)
    # the baseline is the blurred inputs' own score: a trained model must be measured against it
    assert 10 < record["val_input_psnr"] < 60 and record["val_input_psnr"] != record["val_psnr"]
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["steps"] == 24
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 24 and "unused" in state["model"]
    assert len(state["optimizer"]["param_groups"][0]["params"]) == 4  # the unused tensor was frozen


@pytest.mark.parametrize("native", [True, False])
def test_cpu_trains_in_bf16_only_where_the_cpu_computes_it(tiny_arch: SimpleNamespace, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], native: bool) -> None:
    """amp=auto on a CPU: bf16 autocast (1.5x faster steps) with native bf16, float32 without it
    (emulated bf16 would be slower); amp=off always float32. Either way the loss falls."""
    seen: list[torch.dtype] = []
    forward = TinyNet.forward

    def spy(self: TinyNet, x: torch.Tensor) -> torch.Tensor:
        y = forward(self, x)
        if self.training and len(x) > 1:  # training batches, not the one-image probe for unused parameters
            seen.append(y.dtype)
        return y

    monkeypatch.setattr(TinyNet, "forward", spy)
    monkeypatch.setattr(train_loop, "cpu_has_native_bf16", lambda: native)
    out = tmp_path / "run"
    run(tiny_config(out, 24, "val.every=0", "checkpoint.every=0"))
    assert set(seen) == {torch.bfloat16 if native else torch.float32}
    assert ("bf16 autocast" in capsys.readouterr().err) == native
    got = losses(out)
    assert sum(got[s] for s in range(21, 25)) < 0.7 * sum(got[s] for s in range(1, 5))
    seen.clear()
    run(tiny_config(tmp_path / "off", 2, "val.every=0", "checkpoint.every=0", "train.amp=off"))
    assert set(seen) == {torch.float32}


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly(tiny_arch: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  workers: int) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    extra = ("train.grad_clip=0.5", "train.warmup_steps=2")  # every part of the step in play
    run(tiny_config(full, 6, *extra, num_workers=workers))

    class Stop(Exception):
        pass

    save = train_loop.Trainer.save

    def save_then_stop(self, elapsed):
        save(self, elapsed)
        if self.step == 3:
            raise Stop

    with monkeypatch.context() as m:
        m.setattr(train_loop.Trainer, "save", save_then_stop)
        with pytest.raises(Stop):
            run(tiny_config(cut, 6, *extra, num_workers=workers))
    with pytest.raises(UsageError, match="already holds a run.*continue it with resume"):  # CLI: --resume
        run(tiny_config(cut, 6, *extra, num_workers=workers))  # never silently overwrite a run
    run(tiny_config(cut, 6, *extra, num_workers=workers), resume=True)

    a, b = losses(full), losses(cut)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]  # the log holds each step once
    for step in range(1, 7):
        assert b[step] == pytest.approx(a[step], abs=1e-6, rel=0), step
    sa, sb = (torch.load(d / "last.pt", weights_only=True) for d in (full, cut))
    for key in sa["ema"]:
        torch.testing.assert_close(sa["ema"][key], sb["ema"][key], rtol=0, atol=1e-6)
    assert sb["samples"] == sa["samples"] == 12


def test_resume_refuses_another_model(tiny_arch: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(UsageError, match="no checkpoint"):
        run(tiny_config(out, 2), resume=True)
    run(tiny_config(out, 2, "val.count=0"))
    with pytest.raises(UsageError, match="model="):
        run(tiny_config(out, 4, "model.dim=8"), resume=True)


def test_progressive_stages_and_accumulation(tiny_arch: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny_config(out, 4, "train.accumulate=2", "val.count=0")  # (the patch flag cleared any schedule)
    cfg["train"]["progressive"] = [[2, 8, 1], [4, 16, 2]]
    run(cfg)
    log = read_log(out)
    assert [(r["patch"], r["batch"]) for r in log] == [(8, 1), (8, 1), (16, 2), (16, 2)]
    assert torch.load(out / "last.pt", weights_only=True)["samples"] == 2 * (1 + 1 + 2 + 2)


def test_no_data_is_a_clear_error(tiny_arch: SimpleNamespace, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", 2)
    cfg["data"]["dead_leaves"] = 0.0
    with pytest.raises(UsageError, match="no training data"):
        run(cfg)


def test_paired_folder_training(tiny_arch: SimpleNamespace, tmp_path: Path) -> None:
    from PIL import Image

    from deblurcli.synth import write_pairs

    sharp = tmp_path / "sharp"
    sharp.mkdir()
    gen = torch.Generator().manual_seed(0)
    for i in range(3):
        Image.fromarray(torch.randint(0, 256, (40, 48, 3), generator=gen, dtype=torch.uint8).numpy()).save(
            sharp / f"p{i}.png")
    write_pairs(sharp, tmp_path / "pairs", count_per_image=2, seed=0, degrade_kwargs={"kernel_size": (3, 7)})
    out = tmp_path / "run"
    cfg = tiny_config(out, 3, "data.dead_leaves=0", "val.holdout=0.2", data=str(tmp_path / "pairs"))
    run(cfg)
    record = read_log(out)[-1]
    # Validation ran on one held-out pair as read from the folder: its baseline is that pair's own
    # score (the 16x16 centre, 8-bit), recomputed here from the files; a mismatched pair scores ~8 dB.
    # The model's score is that of the saved EMA weights on that pair (recomputed here too).
    import numpy as np

    from deblurcli.eval.metrics import psnr

    def centre(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).convert("RGB"))[12:28, 16:32]

    net = TinyNet()
    net.load_state_dict(torch.load(out / "last.pt", weights_only=True)["ema"])
    found = []
    for b in sorted(f for f in (tmp_path / "pairs").rglob("*.png") if f.parent.name != "sharp"):
        x, gt = centre(b), centre(b.parent.parent / "sharp" / b.name)
        with torch.no_grad():
            y = net(torch.from_numpy(x.copy()).permute(2, 0, 1)[None].float() / 255)[0].clamp(0, 1)
        y8 = np.floor(y.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        found.append((psnr(x, gt), psnr(y8, gt)))
    assert len(found) == 6 and (record["val_input_psnr"], record["val_psnr"]) in [
        pytest.approx(f, abs=1e-3) for f in found], (record, found)


def test_unreadable_training_files_are_skipped_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One corrupt photo or pair among many must not end an hours-long run: warn once, use others."""
    from PIL import Image

    from deblurcli.errors import DeblurError
    from deblurcli.synth import write_pairs
    from deblurcli.train.data import PatchStream, find_paired

    sharp = tmp_path / "sharp"
    sharp.mkdir()
    Image.fromarray(torch.randint(0, 256, (48, 48, 3), dtype=torch.uint8).numpy()).save(sharp / "good.png")
    (sharp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    photos = sorted(sharp.glob("*.png"))
    stream = PatchStream(seed=0, photos=photos)
    with caplog.at_level("WARNING"):
        samples = [stream[(k, 16)] for k in range(12)]
    assert all(b.shape == (3, 16, 16) and s.shape == (3, 16, 16) for b, s in samples)
    warned = [r.getMessage() for r in caplog.records if "broken.png" in r.getMessage()]
    assert len(warned) == 1 and "skipping" in warned[0]

    write_pairs(sharp, tmp_path / "pairs", count_per_image=2, seed=0, degrade_kwargs={"kernel_size": (3, 7)})
    pairs = find_paired(tmp_path / "pairs")
    assert len(pairs) == 2  # only good.png made pairs (write_pairs reports broken.png)
    pairs[0].blur.write_bytes(b"garbage")
    stream = PatchStream(seed=0, pairs=pairs)
    assert all(stream[(k, 16)][0].shape == (3, 16, 16) for k in range(6))

    (sharp / "good.png").write_bytes(b"")
    with pytest.raises(DeblurError, match="none of the 2 sharp images can be read"):
        PatchStream(seed=0, photos=photos)[(0, 16)]
    pairs[1].sharp.write_bytes(b"")
    with pytest.raises(DeblurError, match="none of the 2 training pairs can be read"):
        PatchStream(seed=0, pairs=pairs)[(0, 16)]


# ------------------------------------------------------------------------------------------ export


def test_exported_weights_load(tmp_path: Path, torch_scan: None) -> None:
    from deblurcli.weights import load_model

    out = tmp_path / "run"
    cfg = tiny_config(out, 2, *TINY_XYSCANNET, "val.count=1", "val.size=32", patch_size=32)
    run(cfg)
    tuned = tmp_path / "tuned"  # fine-tuning starts from the exported weights
    run(tiny_config(tuned, 1, *TINY_XYSCANNET, "val.count=0", f"train.init={out / 'last.safetensors'}",
                    "train.lr=0", "train.ema_decay=0", patch_size=32))
    start, _ = load_model(out / "last.safetensors")
    after, _ = load_model(tuned / "last.safetensors")
    for key, value in start.state_dict().items():
        torch.testing.assert_close(after.state_dict()[key], value, rtol=0, atol=0)
    for name in ("best.safetensors", "last.safetensors"):
        model, spec = load_model(out / name)
        assert spec.arch == "xyscannet" and spec.config["dim"] == 4
        assert spec.metadata.get("train_steps") == "2"
        assert spec.metadata.get("train_blur_px") == "31"  # synth's default kernels: what --scale auto goes by
        state = torch.load(out / "last.pt", weights_only=True)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(value, state["ema"][key], rtol=0, atol=0)


def test_algnet_exports_the_local_form_sized_from_the_crop(tmp_path: Path, torch_scan: None) -> None:
    from deblurcli.weights import load_model

    out = tmp_path / "run"
    cfg = tiny_config(out, 1, "model.width=4", "model.middle_blk_num=1", "model.enc_blk_nums=[1, 1, 1, 1]",
                      "model.dec_blk_nums=[1, 1, 1, 1]", "model.d_state=4", "val.count=0", arch="algnet",
                      patch_size=32, batch_size=1)
    run(cfg)
    _, spec = load_model(out / "last.safetensors")
    assert spec.variant == "local" and spec.settings["local_pool"]["train_size"] == [32, 32]


# ------------------------------------------------------------------------------------------ torchrun


def test_torchrun_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "deblurcli.train", "--arch", "xyscannet", "--steps", "2", "--patch-size", "32",
           "--batch-size", "1", "--num-workers", "0", "--threads", "1", "--device", "cpu", "--out", str(out),
           "--set", "data.dead_leaves=1", "--set", "val.count=1", "--set", "val.size=32", "--set", "log.every=1"]
    for s in TINY_XYSCANNET:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "DEBLUR_SCAN_BACKEND": "torch"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines() == [str(out)]  # printed by rank 0 only
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 2 and state["world_size"] == 2 and state["samples"] == 4
    assert [r["step"] for r in read_log(out)] == [1, 2]  # one log, from rank 0
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".pt", ".safetensors")) == [
        "best.safetensors", "last.pt", "last.safetensors"]


# ------------------------------------------------------------------------------------------ sized to the machine


def test_a_cpu_trains_scanunet_by_default_and_the_papers_recipes_stay_one_flag_away() -> None:
    cpu = load_config(None, [], device="cpu")
    assert cpu["arch"] == "scanunet" and cpu == load_config(None, [], device="cpu", arch="scanunet")
    assert load_config(None, [], device="cuda")["arch"] == "algnet"  # a GPU keeps the paper's network
    paper = load_config(None, [], device="cpu", arch="algnet")
    assert (paper["train"]["patch_size"], paper["train"]["batch_size"], paper["model"]["width"]) == (256, 8, 32)
    assert load_config(None, ["arch=evssm"], device="cpu")["arch"] == "evssm"


def test_validation_is_sized_to_the_run() -> None:
    """16 crops of 256 px through ALGNet took over 10 minutes after a 20-step run; a short run now
    validates on as many as cost about a tenth of its training, a long one on all of them."""
    short = load_config(None, [], device="cpu", steps=20)
    assert 1 <= short["val"]["count"] < 16
    assert load_config(None, [], device="cpu", steps=5000)["val"]["count"] == 16
    small = load_config(None, [], arch="algnet", steps=20, patch_size=64, batch_size=2)
    assert small["val"]["count"] == 1  # still one score, and still a best.safetensors
    assert load_config(None, ["val.count=16"], device="cpu", steps=20)["val"]["count"] == 16  # asked for: kept


def test_a_step_that_will_not_fit_stops_before_the_first_one(tiny_arch: SimpleNamespace, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from deblurcli.train import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 64 << 20)
    steps: list[int] = []

    def step(self: train_loop.Trainer) -> tuple[torch.Tensor, dict, int]:
        steps.append(1)
        self.step += 1
        return torch.zeros(()), {}, 1

    monkeypatch.setattr(train_loop.Trainer, "train_step", step)
    out = tmp_path / "run"
    with pytest.raises(UsageError) as info:
        run(tiny_config(out, 2, patch_size=512, batch_size=64))
    message = str(info.value)
    assert "\n" not in message and steps == [] and not (out / "last.pt").exists()
    assert "at 512 px x 64 needs about" in message and "GB of memory is available" in message
    cli = info.value.cli_message(lambda name: {"train.patch_size": "--patch-size", "train.batch_size": "--batch-size",
                                               "arch": "--arch"}.get(name, name))
    fit = re.search(r"use --patch-size (\d+) --batch-size (\d+) \(about ([\d.]+) GB\) or --arch scanunet", cli)
    assert fit, cli
    ok = tiny_config(tmp_path / "ok", 2, patch_size=int(fit[1]), batch_size=int(fit[2]))
    run(ok)  # the run it proposes does fit
    assert steps == [1, 1]


def test_the_algnet_paper_recipe_is_refused_on_a_24_gb_machine(tmp_path: Path, torch_scan: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper's ALGNet (54.6 M parameters, 256 px x 8) was OOM-killed at 23 GB on a laptop;
    the estimate must see that before step 1, whatever memory the test machine has."""
    from deblurcli.train import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 22 << 30)
    cfg = load_config(None, ["data.dead_leaves=1", "val.count=0"], arch="algnet", device="cpu", steps=20,
                      out=str(tmp_path / "run"), num_workers=0)
    with pytest.raises(UsageError, match=r"algnet at 256 px x 8 needs about (\d+\.\d) GB") as info:
        run(cfg)
    need = float(re.search(r"needs about (\d+\.\d) GB", str(info.value))[1])  # type: ignore[index]
    assert need > 23, str(info.value)
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_progress_moves_every_step(tiny_arch: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar stayed at "0/N starting" until the first log interval (50 steps)."""
    from io import StringIO

    from rich.console import Console
    from rich.progress import Progress

    seen: list[int] = []
    update = Progress.update

    def spy(self: Progress, task: object, **kwargs: object) -> None:
        if isinstance(kwargs.get("completed"), int):
            seen.append(int(kwargs["completed"]))  # type: ignore[arg-type]
        update(self, task, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Progress, "update", spy)
    console = Console(file=StringIO(), force_terminal=True)
    run(tiny_config(tmp_path / "run", 5, "log.every=100", "val.count=0"), console=console)
    assert sorted(set(seen)) == [1, 2, 3, 4, 5]


def test_without_a_terminal_a_line_comes_at_least_every_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from io import StringIO

    from rich.console import Console

    from deblurcli.train import report

    monkeypatch.setattr(report, "HEARTBEAT_S", 0.05)
    reporter = report.Reporter(tmp_path, total=10, start=0, enabled=True, console=Console(file=StringIO()),
                               tensorboard=False)
    try:
        reporter.advance(3)
        reporter.phase("validating on 2 crops")
        for _ in range(200):  # the timer's line, with no log interval reached
            if "step 3/10" in capsys.readouterr().err:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no progress line without a log interval")
    finally:
        reporter.close()


def test_a_resumed_log_keeps_the_steps_up_to_the_checkpoint_and_drops_a_torn_line(tmp_path: Path) -> None:
    """A run resumed at step 20 logs steps 21.. again: the log must not hold them twice, nor a line
    the crash cut in half (which would glue itself to the next record)."""
    from deblurcli.train.report import truncate_log

    log = tmp_path / "log.jsonl"
    lines = [json.dumps({"step": s, "loss": 0.1}) for s in (10, 20, 30)] + ['{"event": "start"}']
    log.write_text("\n".join(lines) + '\n{"step": 4')  # torn mid-append, and no newline
    truncate_log(log, 20)
    assert log.read_text() == "\n".join(lines[:2] + [lines[3]]) + "\n"
    truncate_log(tmp_path / "none.jsonl", 5)
    assert not (tmp_path / "none.jsonl").exists()
