"""The training loop: one resumable run from a validated configuration to exported weights.

Exact resumption is the design constraint everything here serves. ``out/last.pt`` holds the model,
the EMA, the optimizer, the step (the learning rate is a pure function of it), the AMP scaler,
the Python/NumPy/torch RNG states and the data stream's position (the next sample id; see
``data.py``), so a resumed run takes the very same next step an uninterrupted one would. It holds
only tensors, numbers, strings, lists and dicts, so it loads with ``torch.load(weights_only=True)``
and opening a checkpoint can never run code.

What users run is the EMA of the weights (smoother than the raw weights late in training), written
through ``deblurcli.weights.save_model`` as ``last.safetensors`` at every checkpoint and as
``best.safetensors`` whenever the validation PSNR improves, so ``deblur run --model out/best.safetensors``
works as is.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from rich.console import Console
from torch import Tensor, nn

from ..errors import CheckpointError, DeblurError, UsageError
from ..fsutil import atomic_output, atomic_write
from ..hardware import cpu_has_native_bf16
from . import data as D
from . import memory
from .config import CPU_DEFAULT_ARCH, dump_config, resolve_stages, trained_blur_px, validate
from .dist import World, barrier, detect_world, init_process_group, pick_device, shutdown
from .losses import DeblurLoss
from .report import Reporter, truncate_log

CHECKPOINT_FORMAT = "deblurcli-train"
CHECKPOINT_VERSION = 1
#: Keys whose change makes a checkpoint's weights or optimizer state meaningless for this config.
_SHAPE_KEYS = ("arch", "variant", "model")


def run(config: Mapping[str, Any], *, resume: bool = False, console: Console | None = None) -> Path:
    """Train as ``config`` says (see ``deblurcli.train.config``); returns the output folder.

    With ``resume`` the run continues from ``out/last.pt`` exactly where it stopped.
    """
    cfg = validate(copy.deepcopy(dict(config)))
    world = detect_world()
    trainer: Trainer | None = None
    try:
        trainer = Trainer(cfg, world, resume=resume, console=console)
        trainer.fit()
    finally:
        if trainer is not None:
            trainer.close()
        shutdown()
    return Path(cfg["out"])


def _say(message: str) -> None:
    """A line for the person watching, on stderr (stdout carries only the run folder)."""
    print(message, file=sys.stderr, flush=True)


def lr_at(step: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then a half cosine down to ``min_lr``."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


# ------------------------------------------------------------------------------------------------
# RNG and checkpoint plumbing (weights_only-safe containers)
# ------------------------------------------------------------------------------------------------


def rng_state(device: torch.device) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's generators from one seed: the same config makes the same run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """A crash mid-save leaves the previous checkpoint intact, never a torn one."""
    with atomic_output(path, make_parents=True) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """``out/last.pt`` as a dict, refusing anything that is not one of ours."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling and I/O fail in many ways; all mean the same to the user
        raise CheckpointError(f"{path}: cannot read this training checkpoint ({str(exc).splitlines()[0][:160]}); "
                              "it may be truncated or from another program") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a deblurcli training checkpoint")
    if int(state.get("version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: written by a newer deblurcli (checkpoint version {state['version']}); "
                              "upgrade to resume it")
    return state


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in model.parameters()], 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


# ------------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------------


class Trainer:
    """Holds one run's state; ``fit()`` trains to ``train.steps``."""

    def __init__(self, cfg: dict[str, Any], world: World, *, resume: bool, console: Console | None) -> None:
        self.cfg = cfg
        self.world = world
        self.out = Path(cfg["out"]).expanduser()
        self.ckpt_path = self.out / "last.pt"
        self.reporter: Reporter | None = None
        self.loader_iter: Iterator[Any] | None = None
        self.loader: Any = None
        t = cfg["train"]

        self._check_run_folder(resume)
        if cfg["threads"] > 0:
            torch.set_num_threads(cfg["threads"])
        self.device = pick_device(cfg["device"], world)
        init_process_group(world, self.device)
        _seed_everything(int(cfg["seed"]))
        self._check_arch()
        self.total = int(t["steps"])
        self.amp_dtype = self._amp_dtype(t["amp"])
        if world.main:
            self._announce()
        self._find_data()  # before building the model: a wrong folder should fail in a second, not a minute
        model = self._build_model(resume)

        self.step = 0
        self.samples = 0
        self.best_psnr: float | None = None
        self.elapsed_before = 0.0
        if resume:
            self._restore(load_checkpoint(self.ckpt_path))

        self.net: nn.Module = model
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        self._make_loader()
        self._start_reporting(resume, console)

    # -- setup steps (in __init__'s order) -------------------------------------------------------

    def _check_run_folder(self, resume: bool) -> None:
        """A resume needs a checkpoint, a new run an empty place: neither may overwrite the other."""
        if resume and not self.ckpt_path.is_file():
            raise UsageError(f"{{resume}}: no checkpoint at {self.ckpt_path}; start a new run without {{resume}}, "
                             "or set {out} to the run to continue", names=("resume", "out"))
        if not resume and self.ckpt_path.exists():
            raise UsageError(f"{self.out} already holds a run ({self.ckpt_path.name}); continue it with {{resume}}, "
                             "or choose another {out}", names=("resume", "out"))

    def _check_arch(self) -> None:
        """The architecture, its variants and the patch sizes, refused before any data or model is touched."""
        from ..models import get_arch

        cfg = self.cfg
        try:
            self.arch = get_arch(cfg["arch"])
        except DeblurError as exc:
            raise UsageError(str(exc)) from None
        if cfg["variant"] not in self.arch.variants:
            raise UsageError(f"{cfg['arch']} has no variant {cfg['variant']!r}: choose {', '.join(self.arch.variants)}")
        export_variant = cfg["export"]["variant"] or self.arch.default_variant
        if export_variant not in self.arch.variants:
            raise UsageError(f"export.variant: {cfg['arch']} has no variant {export_variant!r}: "
                             f"choose {', '.join(self.arch.variants)}")
        self.multiple = int(self.arch.pad_multiple(cfg["model"], cfg["variant"]))
        self.stages = resolve_stages(cfg)
        for _, patch, _ in self.stages:
            if patch % self.multiple:
                lo = max(self.multiple, patch - patch % self.multiple)
                raise UsageError(f"patch size {patch} is not a multiple of {self.multiple}, which {cfg['arch']} "
                                 f"({cfg['variant']}) needs; use {lo} or {lo + self.multiple}")

    def _build_model(self, resume: bool) -> nn.Module:
        """The network on its device (from ``train.init`` when fine-tuning), measured and checked
        against the device's memory, with its loss, EMA copy and optimizer."""
        from ..models import create

        cfg, t = self.cfg, self.cfg["train"]
        try:
            model = create(cfg["arch"], cfg["model"], cfg["variant"])
        except (TypeError, ValueError) as exc:
            raise UsageError(f"model: cannot build {cfg['arch']} from {cfg['model']}: {exc}") from None
        if t["init"] and not resume:
            self._load_init(model, Path(t["init"]).expanduser())
        model = model.to(self.device)
        self.criterion = DeblurLoss(cfg["loss"]).to(self.device)
        self.memory = self._probe(model)
        self.model = model.train()
        self._check_memory()
        self.ema: nn.Module | None = None
        if t["ema_decay"] > 0:
            self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        self._make_optimizer()
        return model

    def _start_reporting(self, resume: bool, console: Console | None) -> None:
        """The run folder's config.yaml and log (cut back to the checkpoint on a resume), and the reporter."""
        cfg, t, world = self.cfg, self.cfg["train"], self.world
        if world.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write(self.out / "config.yaml", dump_config(cfg))
            if resume:
                truncate_log(self.out / "log.jsonl", self.step)
        self.reporter = Reporter(self.out, total=self.total, start=self.step, enabled=world.main, console=console,
                                 tensorboard=bool(cfg["log"]["tensorboard"]))
        if world.main and self.device.type == "cpu" and t["amp"] != "off":
            if self.amp_dtype is not None:
                self.reporter.note("this CPU computes bf16 natively: training with bf16 autocast "
                                   "(train.amp=off for float32)")
            elif t["amp"] != "auto":
                self.reporter.note(f"train.amp={t['amp']} is not used on this CPU (bf16 needs AVX512-BF16 or AMX; "
                                   "fp16 is slower than float32 on CPUs): training in float32")
        if world.main and resume:
            self.reporter.note(f"resuming {self.out} at step {self.step}/{self.total}")

    # -- setup helpers ---------------------------------------------------------------------------

    def _load_init(self, model: nn.Module, path: Path) -> None:
        """Start from existing weights (fine-tuning); they must fit the configured network exactly."""
        from ..weights import ModelSpec, build_model, read_checkpoint

        sd, _ = read_checkpoint(path)
        spec = ModelSpec(arch=self.cfg["arch"], config=dict(self.cfg["model"]), variant=self.cfg["variant"])
        model.load_state_dict(build_model(spec, sd, source=str(path)).state_dict())

    def _probe(self, model: nn.Module) -> memory.StepMemory:
        """One small forward/backward pass that both measures and prepares.

        It freezes parameters no output depends on (ALGNet carries two such tensors per block):
        DDP would otherwise wait forever for their gradients (or need the slower
        find_unused_parameters), and weight decay would shrink them for nothing. And it counts
        what autograd keeps for the backward pass, which sizes a step before the first one is
        taken (``memory.py``). Done by running the network, so it adapts to whatever the
        architecture module builds.
        """
        side = max(64, self.multiple)
        side += (-side) % self.multiple
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 3, side, side, generator=g).to(self.device)
        with memory.saved_activations(model) as saved, self._autocast():
            outs = self.arch.training_outputs(model, x)
            self.criterion(outs, x, x)
        sum(o.float().mean() for o in outs).backward()
        for p in model.parameters():
            if p.grad is None:
                p.requires_grad_(False)
        model.zero_grad(set_to_none=True)
        return memory.StepMemory.from_probe(model, saved.bytes, side=side, device=self.device.type,
                                            ema=self.cfg["train"]["ema_decay"] > 0,
                                            workers=int(self.cfg["data"]["num_workers"]))

    def _make_optimizer(self) -> None:
        t = self.cfg["train"]
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        opt_cls = torch.optim.AdamW if t["optimizer"] == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.params, lr=t["lr"], betas=tuple(t["betas"]), weight_decay=t["weight_decay"])
        fp16 = self.amp_dtype == torch.float16
        if hasattr(torch.amp, "GradScaler"):
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        else:  # torch < 2.3
            self.scaler = torch.cuda.amp.GradScaler(enabled=fp16)

    def _announce(self) -> None:
        """The recipe in one line, before anything slow: what a run does should never be a guess."""
        cfg, t = self.cfg, self.cfg["train"]
        crops = ", then ".join(f"{patch} px x {batch}" + (f" to step {end}" if i < len(self.stages) - 1 else "")
                               for i, (end, patch, batch) in enumerate(self.stages))
        accumulate = f" (x{t['accumulate']} accumulated)" if t["accumulate"] > 1 else ""
        others = " | ".join(n for n in ("algnet", "evssm", "xyscannet") if n != cfg["arch"])
        which = f" (the CPU default; the papers' networks: --arch {others})" if cfg["arch"] == CPU_DEFAULT_ARCH else ""
        precision = {torch.bfloat16: ", bf16", torch.float16: ", fp16"}.get(self.amp_dtype, "")  # type: ignore[arg-type]
        _say(f"recipe: {cfg['arch']}{which}; {crops} crops per step{accumulate}, {t['steps']} steps, "
             f"{t['optimizer']} lr {t['lr']:g}, on {self.device}{precision}")

    def _check_memory(self) -> None:
        """Refuse a run whose step will not fit, before the first one: one line, with the numbers
        and a run that would fit, instead of a kernel OOM kill minutes (or, on a GPU, hours) in."""
        mem = self.memory
        patch, batch = max(((p, b) for _, p, b in self.stages), key=lambda pb: pb[0] * pb[0] * pb[1])
        copies = self.world.size if self.device.type == "cpu" else 1  # CPU ranks share one machine's RAM
        held = sum(p.numel() * p.element_size() for p in self.model.parameters())
        available = (memory.available_bytes(self.device) + held) // copies
        need = mem.total(patch, batch)
        if need <= memory.USABLE_SHARE * available:
            if self.world.main:
                params = sum(p.numel() for p in self.model.parameters()) / 1e6
                _say(f"memory: {self.cfg['arch']} has {params:.1f} M parameters; a step needs about "
                     f"{need / memory.GB:.1f} GB of {available / memory.GB:.1f} GB available"
                     + (" per process" if copies > 1 else ""))
            return
        cfg = self.cfg
        fits = mem.largest_fitting(available, patch, batch, self.multiple)
        fixes = []
        if fits is not None:
            fp, fb = fits
            fixes.append(f"{{train.patch_size}} {fp} {{train.batch_size}} {fb} (about "
                         f"{mem.total(fp, fb) / memory.GB:.1f} GB)")
        if cfg["arch"] != CPU_DEFAULT_ARCH:
            fixes.append(f"{{arch}} {CPU_DEFAULT_ARCH}")
        if self.device.type == "cpu" and cfg["data"]["num_workers"] > 0 and fits is None:
            fixes.append("{data.num_workers} 0")
        where = "GPU memory" if self.device.type == "cuda" else "memory"
        fix = " or ".join(fixes) or "a machine with more memory"
        raise UsageError(
            f"{cfg['arch']} at {patch} px x {batch} needs about {memory.describe(mem, patch, batch)} per "
            f"training step, but {available / memory.GB:.1f} GB of {where} is available; use {fix}",
            names=("train.patch_size", "train.batch_size", "arch", "data.num_workers"))

    def _amp_dtype(self, setting: str) -> torch.dtype | None:
        if setting == "off":
            return None
        if self.device.type == "cpu":
            # bf16 autocast where the CPU multiplies bf16 natively: measured on a Zen 4 core, a
            # ScanUNet training step takes 0.20 s instead of 0.31 s; emulated bf16 (AVX2 only)
            # would be slower than float32, and CPU fp16 is slower still, so those stay float32.
            return torch.bfloat16 if setting in ("auto", "bf16") and cpu_has_native_bf16() else None
        if self.device.type != "cuda":
            return None
        if setting == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if setting == "bf16" else torch.float16

    def _find_data(self) -> None:
        """The training stream and the validation set (made once, on rank 0)."""
        cfg, d, v = self.cfg, self.cfg["data"], self.cfg["val"]
        photos = D.list_photos(d["synthetic"]) if d["synthetic"] else []
        pairs = D.find_paired(d["paired"]) if d["paired"] else []
        val_pairs: list[D.PairFiles] = []
        val_photos: list[Path] = []
        if v["paired"]:
            val_pairs = D.find_paired(v["paired"], split="test")
        elif d["paired"] and (Path(d["paired"]).expanduser() / "test").is_dir():
            val_pairs = D.find_paired(Path(d["paired"]).expanduser() / "test")
        elif pairs:
            pairs, val_pairs = D.split_holdout(pairs, v["holdout"])
        if photos and not val_pairs:
            photos, val_photos = D.split_holdout(photos, v["holdout"])
        self.dataset = D.PatchStream(seed=int(cfg["seed"]), photos=photos, dead_leaves=d["dead_leaves"], pairs=pairs,
                                     paired_fraction=d["paired_fraction"], synth=d["synth"],
                                     cache=bool(d["cache_images"]))
        self.val_set: list[D.Sample] = []
        self._val_input_psnr: float | None = None
        if self.world.main and v["count"] > 0:
            if val_pairs:
                self.val_set = D.paired_val(val_pairs, count=v["count"], size=v["size"], multiple=self.multiple)
            elif self.dataset.synthetic:
                self.val_set = D.synthetic_val(
                    photos=val_photos or photos, dead_leaves=d["dead_leaves"], count=v["count"], size=v["size"],
                    multiple=self.multiple, seed=int(v["seed"]), synth=d["synth"])
        if self.val_set:
            when = f"every {v['every']} steps and at the end" if 0 < v["every"] < self.total else "at the end"
            h, w = self.val_set[0][0].shape[-2:]
            _say(f"validation: {len(self.val_set)} {'pairs' if val_pairs else 'synthetic pairs'} of {w}x{h} px {when}")

    def _make_loader(self) -> None:
        """The loader starts where the run stands (step and sample id), fresh or resumed."""
        cfg = self.cfg
        sampler = D.StepBatches(D.Position(self.step, self.samples), self.stages,
                                accumulate=int(cfg["train"]["accumulate"]), world=self.world.size,
                                rank=self.world.rank)
        self.loader = D.make_loader(self.dataset, sampler, num_workers=int(cfg["data"]["num_workers"]),
                                    prefetch=int(cfg["data"]["prefetch"]),
                                    seed=int(cfg["seed"]) * 1_000_003 + self.world.rank * 7919 + self.step,
                                    pin_memory=self.device.type == "cuda")

    def _restore(self, state: Mapping[str, Any]) -> None:
        try:
            import yaml

            saved = yaml.safe_load(state["config"])
            for key in _SHAPE_KEYS:
                if saved.get(key) != self.cfg.get(key):
                    raise UsageError(
                        f"{self.ckpt_path} was trained with {key}={saved.get(key)!r}, but the config says "
                        f"{self.cfg.get(key)!r}; resume with the run's own config ({self.out / 'config.yaml'}) "
                        "or start a new run in another {out}", names=("out",))
            self.model.load_state_dict(state["model"])
            if self.ema is not None:
                if state.get("ema"):
                    self.ema.load_state_dict(state["ema"])
                else:  # EMA switched on mid-run: start it from the current weights
                    self.ema.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scaler.is_enabled() and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
            self.samples = int(state["samples"])
            best = state.get("best_psnr")
            self.best_psnr = float(best) if best is not None else None
            self.elapsed_before = float(state.get("elapsed", 0.0))
            set_rng_state(state["rng"], self.device)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.ckpt_path}: does not fit this run ({str(exc).splitlines()[0][:160]}); "
                                  "resume with the run's own config or start a new run in another {out}",
                                  names=("out",)) from None

    # -- the loop ----------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _next_batch(self) -> tuple[Tensor, Tensor]:
        if self.loader_iter is None:
            self.loader_iter = iter(self.loader)
        try:
            blurred, sharp = next(self.loader_iter)
        except DeblurError as exc:
            # A worker's error comes back wrapped in its traceback; the user needs the one line.
            text = str(exc).strip().splitlines()
            line = text[-1].split(": ", 1)[-1] if len(text) > 1 else str(exc)
            raise type(exc)(line) from None
        return (blurred.to(self.device, non_blocking=True), sharp.to(self.device, non_blocking=True))

    def train_step(self) -> tuple[Tensor, dict[str, Tensor], int]:
        """One optimizer step (``accumulate`` micro-batches); returns the summed loss, its parts and
        the number of images this rank consumed."""
        t = self.cfg["train"]
        accumulate = int(t["accumulate"])
        lr = lr_at(self.step, lr=t["lr"], min_lr=t["min_lr"], warmup=t["warmup_steps"], total=self.total)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        parts_sum: dict[str, Tensor] = {}
        images = 0
        for micro in range(accumulate):
            blurred, sharp = self._next_batch()
            images += blurred.shape[0]
            sync = self.world.distributed and micro < accumulate - 1
            ctx = self.net.no_sync() if sync else contextlib.nullcontext()  # type: ignore[operator]
            with ctx:
                with self._autocast():
                    outputs = self.arch.training_outputs(self.net, blurred)
                loss, parts = self.criterion(outputs, sharp, blurred)
                self.scaler.scale(loss / accumulate).backward()
            loss_sum += loss.detach() / accumulate
            for k, val in parts.items():
                parts_sum[k] = parts_sum.get(k, 0) + val / accumulate
        if t["grad_clip"] > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, t["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            decay = min(float(t["ema_decay"]), (1 + self.step) / (10 + self.step))
            ema_update(self.ema, self.model, decay)
        self.step += 1
        return loss_sum, parts_sum, images

    def _reduce_mean(self, values: list[Tensor]) -> list[float]:
        stacked = torch.stack([v.float() for v in values])
        if self.world.distributed:
            tdist.all_reduce(stacked)
            stacked /= self.world.size
        return [float(x) for x in stacked.cpu()]

    def fit(self) -> None:
        cfg = self.cfg
        log_every, val_every, ckpt_every = cfg["log"]["every"], cfg["val"]["every"], cfg["checkpoint"]["every"]
        t_start = time.monotonic()
        t_log = time.monotonic()
        images_since = 0
        loss_acc = torch.zeros((), device=self.device)
        parts_acc: dict[str, Tensor] = {}
        n_acc = 0
        if self.step >= self.total and self.reporter is not None:
            self.reporter.note(f"{self.out} already reached step {self.total}; raise train.steps to train further")
        while self.step < self.total:
            loss, parts, images = self.train_step()
            loss_acc += loss
            for k, v in parts.items():
                parts_acc[k] = parts_acc.get(k, 0) + v
            n_acc += 1
            images_since += images * self.world.size
            self.samples += images * self.world.size
            step, last = self.step, self.step == self.total
            if self.reporter is not None:
                self.reporter.advance(step)
            record: dict[str, Any] = {}
            if step % log_every == 0 or last:
                keys = sorted(parts_acc)
                means = self._reduce_mean([loss_acc / n_acc] + [parts_acc[k] / n_acc for k in keys])
                if not math.isfinite(means[0]):
                    raise DeblurError(f"the loss became {means[0]} at step {step}; lower train.lr (now "
                                      f"{cfg['train']['lr']}) or raise train.warmup_steps, then resume or restart")
                now = time.monotonic()
                patch, batch = D.stage_at(self.stages, step - 1)
                record.update(step=step, loss=means[0])
                record.update({f"loss_{k}": m for k, m in zip(keys, means[1:], strict=True)})
                record.update(lr=self.optimizer.param_groups[0]["lr"], patch=patch, batch=batch,
                              images_per_s=images_since / max(now - t_log, 1e-9))
                t_log, images_since, n_acc = now, 0, 0
                loss_acc = torch.zeros((), device=self.device)
                parts_acc = {}
            validate_now = (val_every > 0 and step % val_every == 0) or last
            if validate_now and self.world.main and self.val_set:
                if self.reporter is not None:
                    self.reporter.phase(f"validating on {len(self.val_set)} crops")
                psnr, ssim = self.validate()
                record.update(step=step, val_psnr=psnr, val_ssim=ssim, val_input_psnr=self.val_input_psnr())
                if self.best_psnr is None or psnr > self.best_psnr:
                    self.best_psnr = psnr
                    self.export(self.out / "best.safetensors", psnr=psnr, ssim=ssim)
            elapsed = self.elapsed_before + time.monotonic() - t_start
            if record and self.reporter is not None:
                record["elapsed"] = round(elapsed, 3)
                self.reporter.log(record)
            if ((ckpt_every > 0 and step % ckpt_every == 0) or last) and self.world.main:
                self.save(elapsed)
        barrier(self.world)

    # -- validation, checkpoints, export -------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """Mean PSNR/SSIM of the EMA weights, scored as ``deblur eval`` scores (8-bit, MATLAB SSIM)."""
        from ..eval.metrics import psnr, ssim_matlab, to_uint8

        net = self.ema if self.ema is not None else self.model
        was_training = net.training
        net.eval()
        ps, ss = [], []
        for blurred, sharp in self.val_set:
            with self._autocast():
                y = self.arch.restore(net, blurred[None].to(self.device))
            restored = to_uint8(y[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            target = to_uint8(sharp.permute(1, 2, 0).numpy())
            ps.append(min(psnr(restored, target), 100.0))
            ss.append(ssim_matlab(restored, target))
        net.train(was_training)
        return float(np.mean(ps)), float(np.mean(ss))

    def val_input_psnr(self) -> float:
        """PSNR of the blurred validation inputs themselves: the baseline a model must beat."""
        if self._val_input_psnr is None:
            from ..eval.metrics import psnr, to_uint8

            self._val_input_psnr = float(np.mean([
                min(psnr(to_uint8(b.permute(1, 2, 0).numpy()), to_uint8(s.permute(1, 2, 0).numpy())), 100.0)
                for b, s in self.val_set]))
        return self._val_input_psnr

    def export(self, path: Path, *, psnr: float | None = None, ssim: float | None = None) -> None:
        from ..weights import save_model

        cfg = self.cfg
        variant = cfg["export"]["variant"] or self.arch.default_variant
        final_patch = self.stages[-1][1]
        # Settings that depend on training (ALGNet's TLC windows: the final crop) come from the arch.
        settings = self.arch.export_settings(variant, dict(cfg["export"]["settings"]), final_patch)
        extra = {"trained_by": "deblur train", "train_steps": str(self.step), "train_patch": str(final_patch),
                 "train_variant": cfg["variant"], "weights": "ema" if self.ema is not None else "raw"}
        blur = trained_blur_px(cfg)
        if blur is not None:  # `Deblurrer` runs photos whose shake is likely larger at a reduced scale
            extra["train_blur_px"] = str(blur)
        if psnr is not None:
            extra.update(val_psnr=f"{psnr:.4f}", val_ssim=f"{ssim:.6f}")
        weights = (self.ema if self.ema is not None else self.model).state_dict()
        try:
            save_model(weights, path, arch=cfg["arch"], config=cfg["model"], variant=variant, settings=settings,
                       extra_metadata=extra)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"export: {exc}") from None

    def save(self, elapsed: float) -> None:
        """``last.pt`` (full state) and ``last.safetensors`` (the EMA weights, ready to run)."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "step": self.step,
            "samples": self.samples,
            "world_size": self.world.size,
            "config": dump_config(self.cfg),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "step": self.step},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "rng": rng_state(self.device),
            "best_psnr": self.best_psnr,
            "elapsed": float(elapsed),
        }
        atomic_torch_save(state, self.ckpt_path)
        self.export(self.out / "last.safetensors")

    def close(self) -> None:
        """Stop the display and the data-loader workers now, on every exit: left to the garbage
        collector, workers outlive an error whose traceback still holds the iterator."""
        if self.reporter is not None:
            self.reporter.close()
        iterator, self.loader_iter, self.loader = self.loader_iter, None, None
        stop = getattr(iterator, "_shutdown_workers", None)  # what the iterator's __del__ calls
        if stop is not None:
            stop()
