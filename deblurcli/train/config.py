"""Training configuration: per-architecture defaults, a commented starting file, and validation.

A run is described by one nested dict (what ``out/config.yaml`` holds). It comes from, in order of
precedence: command-line flags, ``--set key=value`` overrides (dotted keys, values read as YAML),
a YAML or TOML file, and the architecture's defaults, which follow the authors' training recipes.
Every key is checked against the defaults so that a typo fails loudly with the nearest valid key
instead of being silently ignored for a multi-day run.

The per-architecture parts (full-size model, trained variant, recipe, comments) are each
architecture's ``ArchSpec.recipe``. This module imports no torch and no network code, so
``deblur train --print-config`` is instant.
"""

from __future__ import annotations

import copy
import difflib
import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError
from ..models import arch_names, get_arch
from ..options import TRAIN_FLAGS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: What a run trains when neither --arch nor the config file names an architecture: on a GPU the
#: paper network (ALGNet, 54.6 M parameters, 256 px crops x 8), on a CPU our own ScanUNet, whose
#: recipe steps in well under a second and about 1 GB there, where ALGNet's needs over 23 GB.
GPU_DEFAULT_ARCH = "algnet"
CPU_DEFAULT_ARCH = "scanunet"
#: Validation may cost about this share of the training time between two validations.
VAL_TIME_SHARE = 0.1
#: A training step (forward and backward) costs about this many times a validation forward pass
#: of the same pixels.
TRAIN_TO_EVAL_COST = 3.0

_COMMON: dict[str, Any] = {
    "arch": None,
    "variant": None,
    "model": None,
    "seed": 0,
    "out": None,
    "device": "auto",
    "threads": 0,
    "data": {
        "paired": None,
        "synthetic": None,
        "dead_leaves": 0.0,
        "paired_fraction": 0.5,
        "synth": {},
        "cache_images": False,
        "num_workers": 2,
        "prefetch": 2,
    },
    "train": {
        "init": None,
        "steps": 300000,
        "patch_size": 256,
        "batch_size": 8,
        "progressive": [],
        "accumulate": 1,
        "optimizer": "adam",
        "lr": 2.0e-4,
        "min_lr": 1.0e-7,
        "betas": [0.9, 0.999],
        "weight_decay": 0.0,
        "warmup_steps": 0,
        "grad_clip": 0.0,
        "ema_decay": 0.999,
        "amp": "auto",
    },
    "loss": {
        "pixel": "charbonnier",
        "eps": 1.0e-3,
        "edge": 0.05,
        "fft": 0.0,
        "contrastive": 0.0,
        "all_scales": True,
    },
    "val": {
        "every": 1000,
        "paired": None,
        "count": 16,
        "size": 256,
        "holdout": 0.05,
        "seed": 12345,
    },
    "log": {
        "every": 50,
        "tensorboard": False,
    },
    "checkpoint": {
        "every": 1000,
    },
    "export": {
        "variant": None,
        "settings": {},
    },
}

# Keys whose default is None (or open-ended), with the types they accept.
_PATH_KEYS = {"out", "data.paired", "data.synthetic", "val.paired", "train.init"}
_FREE_DICTS = {"data.synth", "export.settings"}

_CHOICES: dict[str, tuple[str, ...]] = {
    "train.optimizer": ("adam", "adamw"),
    "train.amp": ("auto", "off", "bf16", "fp16"),
    "loss.pixel": ("charbonnier", "l1"),
}



#: ``deblur train`` flags -> the dotted key each sets (derived from TRAIN_FLAGS).
FLAG_KEYS: dict[str, str] = {s.name: s.key for s in TRAIN_FLAGS if s.key is not None}


def default_config(arch: str) -> dict[str, Any]:
    """The complete default configuration for ``arch`` (a fresh, deep copy)."""
    arch = _check_arch(arch)
    recipe = get_arch(arch).recipe
    cfg = copy.deepcopy(_COMMON)
    cfg.update(arch=arch, variant=recipe.variant, model=copy.deepcopy(dict(recipe.model)), out=f"runs/{arch}")
    for section, values in recipe.overrides.items():
        cfg[section].update(copy.deepcopy(dict(values)))
    return cfg


def _check_arch(arch: Any) -> str:
    key = str(arch).lower() if arch is not None else ""
    names = arch_names()
    if key not in names:
        hint = _closest(key, names)
        raise UsageError(f"unknown architecture {arch!r}: choose {', '.join(names)}" + (f" (did you mean {hint}?)"
                                                                                       if hint else ""))
    return key


# ------------------------------------------------------------------------------------------------
# The commented starting file
# ------------------------------------------------------------------------------------------------

_COMMENTS: dict[str, str] = {
    "variant": "the form trained; the exported file gets the inference form (export.variant)",
    "model": "constructor arguments of the network (the paper's full-size model; shrink for CPU)",
    "seed": "seeds weights, data stream and augmentation: same seed + same config = same run",
    "out": "run folder: last.pt (resume state), best/last.safetensors, config.yaml, log.jsonl",
    "device": "auto (CUDA if present, else CPU) | cpu | cuda | cuda:N",
    "threads": "CPU threads for torch (torch.set_num_threads); 0 keeps torch's default",
    "data": "training pairs: a paired folder, synthetic blur of sharp photos, or both",
    "data.paired": "folder of blurred/sharp pairs in any layout `deblur eval` understands (GoPro, input|target, ...)",
    "data.synthetic": "folder of sharp photos (searched recursively), blurred on the fly by deblurcli.synth",
    "data.dead_leaves": "fraction of synthetic samples drawn as dead-leaves images (1.0 needs no photos)",
    "data.paired_fraction": "share of samples taken from data.paired when synthetic data is also given",
    "data.synth": "keyword arguments for deblurcli.synth.degrade, e.g. {kernel_size: [7, 31], noise_p: 0.4}",
    "data.cache_images": "keep decoded photos/pairs in each worker's memory (fast, but RAM x num_workers)",
    "data.num_workers": "DataLoader worker processes making patches while the model trains; 0 = in-process",
    "data.prefetch": "batches each worker prepares ahead",
    "train": "optimisation",
    "train.init": "weights to start from (any checkpoint `deblur run --model` reads), to fine-tune; empty = random",
    "train.steps": "optimizer steps in total (the cosine schedule spans them)",
    "train.patch_size": "square training crop (a multiple of the network's size rule)",
    "train.batch_size": "crops per step per process (per GPU under torchrun)",
    "train.progressive": (
        "progressive crops: [[until, patch, batch], ...]; until is a step, or a fraction of steps if "
        "written with a decimal point (0.5); empty = patch_size/batch_size throughout"
    ),
    "train.accumulate": "micro-batches whose gradients are summed per step (effective batch x this)",
    "train.optimizer": "adam | adamw",
    "train.lr": "peak learning rate",
    "train.min_lr": "learning rate at the end of the cosine decay",
    "train.betas": "Adam betas",
    "train.weight_decay": "decoupled for adamw, L2 for adam",
    "train.warmup_steps": "linear warm-up from 0 to lr; a few hundred steadies small-batch runs",
    "train.grad_clip": "clip the gradient norm to this (0 = off)",
    "train.ema_decay": (
        "moving average of the weights, validated and exported (0 = off); the decay ramps up as "
        "(1+step)/(10+step) so a short run's average is not mostly the random initialisation"
    ),
    "train.amp": "mixed precision: auto (GPUs: bf16 if supported, else fp16; CPUs: bf16 where computed natively, "
                 "AVX512-BF16 or AMX, else float32) | bf16 | fp16 | off",
    "loss": "the training loss, summed over the network's outputs",
    "loss.pixel": "charbonnier | l1",
    "loss.eps": "Charbonnier epsilon",
    "loss.edge": "weight of the edge (Laplacian) Charbonnier loss",
    "loss.fft": "weight of the L1 loss between Fourier spectra",
    "loss.contrastive": (
        "weight of the VGG-19 contrastive term (XYScanNet's paper: 0.0005); needs torchvision and "
        "downloads ImageNet weights, hence off"
    ),
    "loss.all_scales": "apply the loss to every output scale (ALGNet's four), not only the full-size one",
    "val": "validation with the EMA weights; the best PSNR is exported as best.safetensors",
    "val.every": "validate every N steps (0 = only at the end)",
    "val.paired": "folder of held-out blurred/sharp pairs; empty = synthetic pairs made once from val.seed",
    "val.count": ("number of validation pairs (synthetic ones, or N spread over the paired folder); unless set, "
                  "a short run uses fewer, so validating costs about a tenth of its training time"),
    "val.size": "side of the validation crops (centre crops of pairs; 0 = whole images)",
    "val.holdout": "fraction of the sharp photos / training pairs kept out of training for validation",
    "val.seed": "seed of the synthetic validation pairs",
    "log": "progress and metrics",
    "log.every": "write a line to log.jsonl (and the progress display) every N steps",
    "log.tensorboard": "also write TensorBoard event files under out/tb (needs tensorboard installed)",
    "checkpoint": "resumable state",
    "checkpoint.every": "save out/last.pt and out/last.safetensors every N steps",
    "export": "the exported .safetensors files",
    "export.variant": "inference form written into the file; empty = the architecture's default",
    "export.settings": "settings of that form; ALGNet's local form gets its train_size from the final crop",
}

def default_arch(device: str = "auto") -> str:
    """The architecture a run on ``device`` trains unless told otherwise (see CPU_DEFAULT_ARCH).

    ``auto`` asks torch whether a GPU is there, which imports it: only a run, never
    ``--print-config``, comes here without a device.
    """
    device = str(device).lower()
    if device == "cpu":
        return CPU_DEFAULT_ARCH
    if device.startswith("cuda"):
        return GPU_DEFAULT_ARCH
    import torch

    return GPU_DEFAULT_ARCH if torch.cuda.is_available() else CPU_DEFAULT_ARCH


def print_config(arch: str = CPU_DEFAULT_ARCH) -> str:
    """A complete, commented YAML starting configuration for ``arch`` that loads back unchanged."""
    cfg = default_config(arch)
    # An architecture's own comments win; "arch" falls back to the list of choices.
    comments = {**_COMMENTS, "arch": " | ".join(arch_names()), **get_arch(cfg["arch"]).recipe.comments}
    lines = [
        f"# deblur train configuration for {cfg['arch']}.",
        "# Every key can be overridden on the command line: --set train.lr=1e-4 --set train.steps=2000",
        "# Values are the architecture's recipe and full-size model (the papers' for algnet, evssm and",
        "# xyscannet, which a CPU run wants smaller: deblur train stops before step 1 if a step will not fit).",
        "",
    ]
    _emit(cfg, "", 0, comments, lines)
    return "\n".join(lines) + "\n"


def _dump(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def _emit(d: Mapping[str, Any], prefix: str, depth: int, comments: Mapping[str, str], lines: list[str]) -> None:
    pad = "  " * depth
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        note = comments.get(dotted)
        if isinstance(value, dict) and value and dotted not in _FREE_DICTS:
            if depth == 0:
                lines.append("")
            if note:
                lines.append(f"{pad}# {note}")
            lines.append(f"{pad}{key}:")
            _emit(value, dotted + ".", depth + 1, comments, lines)
        else:
            lines.append(f"{pad}{key}: {_dump(value)}" + (f"  # {note}" if note else ""))


# ------------------------------------------------------------------------------------------------
# Loading, overriding, validating
# ------------------------------------------------------------------------------------------------


def _closest(key: str, options: Iterable[str], cutoff: float = 0.6) -> str | None:
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=cutoff)
    return match[0] if match else None


def _all_keys(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        out.append(dotted)
        if isinstance(value, dict) and dotted not in _FREE_DICTS:
            out += _all_keys(value, dotted + ".")
    return out


def _unknown_key(dotted: str, defaults: Mapping[str, Any], source: str) -> UsageError:
    options = _all_keys(defaults)
    hint = _closest(dotted, options)
    if hint is None:  # a misspelt or misplaced last part: compare it with every key's last part
        tails = {k.rpartition(".")[2]: k for k in reversed(options)}
        tail = _closest(dotted.rpartition(".")[2], tails)
        hint = tails[tail] if tail else None
    where = f" in {source}" if source else ""
    return UsageError(f"unknown config key {dotted!r}{where}" + (f"; did you mean {hint!r}?" if hint else
                      "; see `deblur train --print-config` for all keys"))


def parse_value(text: str) -> Any:
    """A ``--set`` value read as YAML, with ``1e-4`` as a number (YAML 1.1 reads it as a string)."""
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        return text
    return _numeric(value)


def _numeric(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            f = float(value)
        except ValueError:
            return value
        return f if math.isfinite(f) or value.strip().lower() in ("inf", "-inf", "nan") else value
    return value


def _merge(dst: dict[str, Any], src: Any, defaults: Mapping[str, Any], prefix: str, source: str,
           root: Mapping[str, Any]) -> None:
    """Merge ``src`` into ``dst`` key by key, refusing keys that ``defaults`` does not have."""
    if not isinstance(src, Mapping):
        where = f" in {source}" if source else ""
        raise UsageError(f"config section {prefix.rstrip('.') or 'top level'}{where} must be a mapping, "
                         f"got {type(src).__name__}")
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            raise _unknown_key(dotted, root, source)
        if isinstance(defaults[key], dict) and dotted not in _FREE_DICTS:
            _merge(dst[key], value if value is not None else {}, defaults[key], dotted + ".", source, root)
        else:
            dst[key] = copy.deepcopy(value)


def set_key(cfg: dict[str, Any], dotted: str, value: Any, *, source: str = "--set") -> None:
    """Set ``a.b.c`` in ``cfg``, refusing keys the configuration does not have."""
    parts = dotted.split(".")
    node: Any = cfg
    for i, part in enumerate(parts):
        free = ".".join(parts[:i]) in _FREE_DICTS or (i > 0 and node is not cfg and _inside_free(parts[:i]))
        if not isinstance(node, dict) or (part not in node and not free):
            raise _unknown_key(dotted, cfg, source)
        if i == len(parts) - 1:
            node[part] = value
        else:
            node = node.setdefault(part, {})


def _inside_free(parts: list[str]) -> bool:
    return any(".".join(parts[:j]) in _FREE_DICTS for j in range(1, len(parts) + 1))


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"config file {path} not found; write one with `deblur train --print-config > {path.name}`")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        first = str(exc).strip().splitlines()
        raise UsageError(f"{path}: not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'} "
                         f"({' '.join(first)[:200]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the configuration must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), **flags: Any) -> dict[str, Any]:
    """The resolved, validated configuration.

    Precedence, lowest first: the architecture's defaults, the file, ``overrides``
    (``key=value`` strings), then ``flags`` (``deblur train`` options; None means not given).
    Giving ``patch_size`` or ``batch_size`` as a flag, or as a ``--set`` without a
    ``train.progressive`` beside it, replaces any progressive schedule (the file's or the
    architecture's), since a user asking for one crop size means it: otherwise the schedule would
    silently win, as it did for a GPU run's ``--set train.batch_size=64``.
    """
    unknown_flags = set(flags) - set(FLAG_KEYS)
    if unknown_flags:
        raise TypeError(f"load_config() got unknown flag(s): {', '.join(sorted(unknown_flags))}")
    file_cfg = _read_file(Path(path).expanduser()) if path is not None else {}
    sets: list[tuple[str, Any]] = []
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--set expects key=value (e.g. --set train.lr=1e-4), got {item!r}")
        sets.append((key, parse_value(text)))
    given = {k: v for k, v in flags.items() if v is not None}

    def chosen(key: str) -> Any:
        """The value a flag, a --set or the file gives ``key`` (dotted), or None."""
        flag = next((n for n, k in FLAG_KEYS.items() if k == key), None)
        if flag is not None and flag in given:
            return given[flag]
        value = next((v for k, v in reversed(sets) if k == key), None)
        if value is not None:
            return value
        node: Any = file_cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    arch = _check_arch(chosen("arch") or default_arch(str(chosen("device") or "auto")))
    cfg = default_config(arch)
    root = default_config(arch)
    _merge(cfg, {k: v for k, v in file_cfg.items() if k != "arch"}, root, "", str(path) if path else "", root)
    for key, value in sets:
        if key != "arch":
            set_key(cfg, key, value)
    for name, value in given.items():
        if name != "arch":
            set_key(cfg, FLAG_KEYS[name], value, source=next(s.flag for s in TRAIN_FLAGS if s.name == name))
    set_keys = {k for k, _ in sets}
    sized = bool({"train.patch_size", "train.batch_size"} & set_keys) and "train.progressive" not in set_keys
    if "patch_size" in given or "batch_size" in given or sized:
        cfg["train"]["progressive"] = []
    cfg = validate(cfg)
    if chosen("val.count") is None:
        cfg["val"]["count"] = sized_val_count(cfg)
    return cfg


def sized_val_count(cfg: Mapping[str, Any]) -> int:
    """``val.count`` cut so that validating costs about VAL_TIME_SHARE of the training between two
    validations: 16 crops of 256 px through ALGNet took over 10 minutes after a 20-step run.

    Long runs keep the whole set (1000 steps of 8 crops of 256 px dwarf it); a short one keeps at
    least one crop, so it still reports a score and exports ``best.safetensors``.
    """
    v, t = cfg["val"], cfg["train"]
    count = int(v["count"])
    if count <= 1:
        return count
    steps = int(t["steps"])
    interval = int(v["every"]) if 0 < int(v["every"]) < steps else steps
    trained = 0
    done = 0
    for end, patch, batch in resolve_stages(cfg):  # the pixels trained in the first interval
        n = max(0, min(end, interval) - done)
        trained += n * patch * patch * batch * int(t["accumulate"])
        done += n
    side = int(v["size"]) or 256
    budget = VAL_TIME_SHARE * TRAIN_TO_EVAL_COST * trained
    return max(1, min(count, int(budget // (side * side))))


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------


def _type_error(key: str, want: str, value: Any) -> UsageError:
    return UsageError(f"config key {key!r} must be {want}, got {value!r}")


def _check_types(cfg: dict[str, Any], defaults: Mapping[str, Any], prefix: str = "") -> None:
    for key, default in defaults.items():
        dotted = f"{prefix}{key}"
        value = cfg.get(key)
        if dotted in ("arch", "variant", "model"):
            continue
        if dotted in _PATH_KEYS:
            if value is not None and not isinstance(value, str | Path):
                raise _type_error(dotted, "a path (or empty)", value)
            cfg[key] = str(value) if value not in (None, "") else None
        elif dotted in _FREE_DICTS:
            if value is None:
                cfg[key] = {}
            elif not isinstance(value, dict):
                raise _type_error(dotted, "a mapping", value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise _type_error(dotted, "a mapping", value)
            _check_types(value, default, dotted + ".")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise _type_error(dotted, "true or false", value)
        elif isinstance(default, int):
            value = _numeric(value)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise _type_error(dotted, "an integer", value)
            cfg[key] = value
        elif isinstance(default, float):
            value = _numeric(value)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                raise _type_error(dotted, "a number", value)
            cfg[key] = float(value)
        elif isinstance(default, str):
            if isinstance(value, bool) and dotted in _CHOICES and ("on" if value else "off") in _CHOICES[dotted]:
                value = "on" if value else "off"  # YAML 1.1 reads a bare off/on (and no/yes) as a boolean
            if not isinstance(value, str):
                raise _type_error(dotted, "a string", value)
            if dotted in _CHOICES:
                value = value.lower()
                if value not in _CHOICES[dotted]:
                    raise UsageError(f"config key {dotted!r} must be one of {', '.join(_CHOICES[dotted])}, "
                                     f"got {value!r}")
                cfg[key] = value
        elif isinstance(default, list):
            if not isinstance(value, list | tuple):
                raise _type_error(dotted, "a list", value)
            cfg[key] = list(value)


def _at_least(cfg: dict[str, Any], dotted: str, lo: float, what: str = "") -> None:
    section, _, key = dotted.rpartition(".")
    node = cfg[section] if section else cfg
    if node[key] < lo:
        raise UsageError(f"config key {dotted!r} must be at least {lo}{what}, got {node[key]!r}")


def _stages(cfg: Mapping[str, Any]) -> list[list[Any]]:
    t = cfg["train"]
    out = []
    for i, stage in enumerate(t["progressive"]):
        if not isinstance(stage, list | tuple) or len(stage) != 3:
            raise UsageError(f"train.progressive[{i}] must be [until, patch, batch], got {stage!r}")
        until, patch, batch = (_numeric(v) for v in stage)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (until, patch, batch)):
            raise UsageError(f"train.progressive[{i}] must hold numbers [until, patch, batch], got {stage!r}")
        if isinstance(patch, float) and not patch.is_integer() or isinstance(batch, float) and not batch.is_integer():
            raise UsageError(f"train.progressive[{i}]: patch and batch must be integers, got {stage!r}")
        if isinstance(until, float) and not 0 < until <= 1:
            raise UsageError(f"train.progressive[{i}]: a fractional 'until' must be in (0, 1], got {until}")
        out.append([until, int(patch), int(batch)])
    return out


def resolve_stages(cfg: Mapping[str, Any]) -> list[tuple[int, int, int]]:
    """``(until_step, patch, batch)`` with absolute steps; the last stage always runs to the end."""
    steps = int(cfg["train"]["steps"])
    stages = _stages(cfg)
    if not stages:
        return [(steps, int(cfg["train"]["patch_size"]), int(cfg["train"]["batch_size"]))]
    out: list[tuple[int, int, int]] = []
    for until, patch, batch in stages:
        end = round(until * steps) if isinstance(until, float) else int(until)
        out.append((end, patch, batch))
    out[-1] = (max(out[-1][0], steps), out[-1][1], out[-1][2])
    return out


def validate(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check types and ranges, normalising numbers and paths in place; returns ``cfg``."""
    arch = _check_arch(cfg.get("arch"))
    defaults = default_config(arch)
    for key in cfg:
        if key not in defaults:
            raise _unknown_key(key, defaults, "")
    _check_types(cfg, defaults)

    if not isinstance(cfg.get("model"), dict):
        raise _type_error("model", "a mapping of constructor arguments", cfg.get("model"))
    for key in cfg["model"]:
        if key not in defaults["model"]:
            hint = _closest(str(key), defaults["model"])
            raise UsageError(f"unknown config key 'model.{key}' for {arch}" + (f"; did you mean 'model.{hint}'?"
                                                                               if hint else ""))
    for key in ("variant",):
        if not isinstance(cfg[key], str):
            raise _type_error(key, "a variant name", cfg[key])
    if cfg["export"]["variant"] is not None and not isinstance(cfg["export"]["variant"], str):
        raise _type_error("export.variant", "a variant name (or empty)", cfg["export"]["variant"])

    for key in ("train.steps", "train.patch_size", "train.batch_size", "train.accumulate", "log.every"):
        _at_least(cfg, key, 1)
    for key in ("threads", "data.num_workers", "train.warmup_steps", "val.every", "val.count", "val.size",
                "checkpoint.every", "train.lr", "train.min_lr", "train.weight_decay", "train.grad_clip",
                "loss.edge", "loss.fft", "loss.contrastive", "data.dead_leaves", "val.holdout", "seed"):
        _at_least(cfg, key, 0)
    _at_least(cfg, "data.prefetch", 1)
    _at_least(cfg, "loss.eps", 1e-12, " (Charbonnier needs a positive epsilon)")
    for key in ("data.dead_leaves", "data.paired_fraction", "train.ema_decay"):
        section, _, name = key.partition(".")
        if not 0 <= cfg[section][name] <= 1:
            raise UsageError(f"config key {key!r} must be between 0 and 1, got {cfg[section][name]!r}")
    if not cfg["val"]["holdout"] < 1:
        raise UsageError(f"config key 'val.holdout' must be below 1, got {cfg['val']['holdout']!r}")
    betas = cfg["train"]["betas"]
    if len(betas) != 2 or not all(isinstance(b, int | float) and 0 <= b < 1 for b in betas):
        raise UsageError(f"config key 'train.betas' must be two numbers in [0, 1), got {betas!r}")
    cfg["train"]["betas"] = [float(b) for b in betas]
    cfg["train"]["progressive"] = _stages(cfg)
    previous = 0
    for i, (end, patch, batch) in enumerate(resolve_stages(cfg)):
        if end <= previous and i < len(cfg["train"]["progressive"]) - 1:
            raise UsageError(f"train.progressive: stage {i} ends at step {end}, not after the previous one "
                             f"({previous}); list stages in order")
        if patch < 1 or batch < 1:
            raise UsageError(f"train.progressive[{i}]: patch and batch must be positive, got {patch}, {batch}")
        previous = end
    device = str(cfg["device"]).lower()
    if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
        raise UsageError(f"config key 'device' must be auto, cpu, cuda or cuda:N, got {cfg['device']!r}")
    cfg["device"] = device
    return cfg


def dump_config(cfg: Mapping[str, Any]) -> str:
    """The resolved configuration as plain YAML (what ``out/config.yaml`` holds)."""
    return yaml.safe_dump(dict(cfg), sort_keys=False, default_flow_style=None, width=120)


def trained_blur_px(cfg: Mapping[str, Any]) -> int | None:
    """The largest shake (px) a run trains on, recorded in its weights for ``--scale auto``.

    Only for purely synthetic data, whose largest kernel is known; paired data does not say how
    large its blur is, so a run that uses any gives None.
    """
    from ..synth import largest_kernel

    data = cfg["data"]
    return None if data.get("paired") else largest_kernel(data.get("synth") or {})
