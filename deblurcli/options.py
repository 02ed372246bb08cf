"""How to run a model, declared once: `EngineOptions` and the machinery that turns it into CLI options.

Every command that restores images (``run``, ``batch``, ``eval``, ``bench``) and the Python
`Deblurrer` take the same `EngineOptions`. Each field carries, in its metadata, the one
description of its command-line option (flags, help text, limits) and whether it decides the
output pixels. Three things are derived from that and must never be written out by hand again:

- the typer options of every command (`with_options`), so the commands cannot drift apart;
- the batch resume key (`output_settings`), so ``deblur batch`` redoes a file whenever an option
  that changes its pixels changed, including options added later;
- the flag named in an error message (`flag_for`), so the library speaks of ``tile`` and the CLI
  of ``--tile``.

Adding a shared option is adding one field here (and using it where it acts, usually `api.py`);
one that decides the output also says, with ``before=``, which value reproduces what versions
without it wrote, so their batch journals stay valid.
This module imports neither torch nor typer at import time: ``deblur --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .models import arch_names

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
SCAN_BACKENDS = ("auto", "torch", "numba", "triton", "cuda", "reference")
DEFAULT_OVERLAP = 32


@dataclass(frozen=True)
class OptionSpec:
    """One command-line option: what typer (or argparse) needs, and what the tests need to vary it.

    ``decides_output`` marks options whose value changes the pixels written; ``example`` is a valid
    non-default value (shown nowhere, used by tests that check every option is honoured).
    """

    name: str
    flags: tuple[str, ...]
    default: Any
    cli_type: type
    help: str
    decides_output: bool = False
    example: Any = None
    metavar: str | None = None
    min: float | None = None
    max: float | None = None
    #: For flags that set a configuration key (``deblur train --lr`` -> ``train.lr``): that key.
    key: str | None = None
    #: Former names still accepted but not shown in --help (a renamed option keeps old scripts working).
    old_flags: tuple[str, ...] = ()
    #: For an output-deciding option added after the first release: the value under which the
    #: output is what versions without it wrote. A batch journal from then, which lacks the key,
    #: counts as holding this value, so upgrading does not redo a finished batch (`upgrade_settings`).
    before: Any = None

    @property
    def flag(self) -> str:
        """The long flag, as error messages name it."""
        return next(f for f in self.flags if f.startswith("--"))

    def typer_option(self, default: Any = dataclasses.MISSING) -> Any:
        import typer

        extra: dict[str, Any] = {}
        if self.metavar:
            extra["metavar"] = self.metavar
        if self.min is not None:
            extra["min"] = self.min
        if self.max is not None:
            extra["max"] = self.max
        value = self.default if default is dataclasses.MISSING else default
        return typer.Option(value, *self.flags, help=self.help, **extra)


def _opt(default: Any, *flags: str, cli_type: type, help: str, decides_output: bool = False, example: Any = None,
         **extra: Any) -> Any:
    """A dataclass field whose metadata is its command-line option (the name is filled in later)."""
    return field(default=default, metadata={"option": dict(flags=flags, default=default, cli_type=cli_type,
                                                           help=help, decides_output=decides_output,
                                                           example=example, **extra)})


@dataclass(frozen=True)
class EngineOptions:
    """Which model, and how to run it: what ``run``, ``batch``, ``eval``, ``bench`` and `Deblurrer` share.

    Values are as a user gives them (``"auto"`` stays ``"auto"``); `Deblurrer` resolves them and
    validates them, raising `OptionError` naming the field.
    """

    model: str | None = _opt(None, "--model", "-m", cli_type=str, decides_output=True,
                             help="Registry name, weights file, or hf:OWNER/REPO[/FILE][@REV]. "
                                  "Default: the embedded model.")
    variant: str | None = _opt(None, "--variant", cli_type=str, decides_output=True, example="local",
                               help="Model variant (e.g. algnet: plain|local, evssm: global|windowed); "
                                    "default: the one stored with the weights")
    device: str = _opt("auto", "--device", cli_type=str, example="cpu",
                       help="auto | cpu | cuda | cuda:N (one GPU of several) | mps")
    precision: str = _opt("auto", "--precision", cli_type=str, decides_output=True, example="bf16",
                          help=" | ".join(PRECISIONS) + " (fp32 on CPU by default)")
    threads: int | None = _opt(None, "--threads", cli_type=int, example=1, min=0,
                               help="CPU threads for the model (default or 0: all cores)")
    tile: int | str = _opt("auto", "--tile", cli_type=str, decides_output=True, example="64",
                           help="Tile side in px; 0 = whole image; auto = from free memory")
    tile_overlap: int = _opt(DEFAULT_OVERLAP, "--tile-overlap", cli_type=int, decides_output=True, example=16,
                             help="Overlap between tiles in px (blended smoothly)")
    scale: int | str = _opt("auto", "--scale", cli_type=str, decides_output=True, example="2", before="auto",
                            help="Run the model on the image shrunk to 1/N and keep its finer detail, for shake "
                                 "larger than the model learned; auto = from the image size (models that record "
                                 "their training blur, like the default); 1 = full size")
    ensemble: int = _opt(1, "--ensemble", cli_type=int, decides_output=True, example=2, min=1, max=8, before=1,
                         help="Average the model over 1, 2, 4 or 8 mirrored/transposed copies of the image: "
                              "a little sharper and cleaner, that many times slower")
    batch_size: int = _opt(1, "--tile-batch", cli_type=int, example=2, min=1, old_flags=("--batch-size",),
                           help="Tiles per model call (more is faster on a GPU and uses more memory)")
    scan_backend: str = _opt("auto", "--scan", cli_type=str, example="torch",
                             help="Scan backend: " + " | ".join(SCAN_BACKENDS))
    strength: float = _opt(1.0, "--strength", cli_type=float, decides_output=True, example=0.5, min=0.0, max=1.0,
                           help="1 = full restoration, 0 = the input unchanged, between: a blend")
    offline: bool = _opt(False, "--offline", cli_type=bool, example=True,
                         help="Never use the network (HF cache and embedded models only)")
    # Camera shake (deblurcli.deconv): for the embedded default and --model shake; the papers'
    # networks refuse them (they learned GoPro's blur and take no kernel).
    # Off by default until the engine meets its time budget (a 1 MP photo: 25 s with auto against
    # 3.3 s off, one thread) and the trust rule is checked on photos it was not tuned on.
    deconv: str = _opt("off", "--deconv", cli_type=str, decides_output=True, example="auto", before="off",
                       help="off (default): the network alone; auto: the default model measures each photo's "
                            "camera shake and deconvolves it when the estimate is trustworthy (several times "
                            "slower), else runs the network alone")
    kernel: str | None = _opt(None, "--kernel", cli_type=str, decides_output=True, example="kernel.npy",
                              before="none", metavar="FILE",
                              help="Your own blur kernel (grey PNG or 2-D NPY): deconvolve with it instead of "
                                   "estimating one (default model and shake)")
    kernel_size: int = _opt(0, "--kernel-size", cli_type=int, decides_output=True, example=31, before=0, min=0,
                            help="Largest shake to look for, in px (0 = automatic)")
    region: str = _opt("auto", "--region", cli_type=str, decides_output=True, example="0,0,64,64", before="auto",
                       metavar="X,Y,W,H",
                       help="Estimate the shake from this part of the photo (px, at least 48x48); auto = the most "
                            "textured unclipped area")

    @classmethod
    def specs(cls) -> list[OptionSpec]:
        return option_specs(cls)

    @classmethod
    def output_fields(cls) -> list[str]:
        """The fields whose value changes the pixels written (the batch resume key is built from them)."""
        return [s.name for s in cls.specs() if s.decides_output]

    def replace(self, **changes: Any) -> EngineOptions:
        return dataclasses.replace(self, **changes)


def option_specs(cls: type) -> list[OptionSpec]:
    """The `OptionSpec` of every field of a dataclass declared with ``_opt`` (in field order)."""
    return [OptionSpec(name=f.name, **f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def output_settings(obj: Any) -> dict[str, Any]:
    """``{field: value}`` for the fields of dataclass ``obj`` marked as deciding the output.

    A field is marked by ``_opt(..., decides_output=True)`` or, when it is no shared CLI option,
    by ``field(metadata={"decides_output": True})``.
    """
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
            if f.metadata.get("decides_output") or f.metadata.get("option", {}).get("decides_output")}


def upgrade_settings(recorded: dict[str, Any]) -> dict[str, Any]:
    """A resume key written by an older version, with the options added since at their ``before`` value.

    (``--scale auto`` reproduces earlier output: it only reduces for models that record their
    training blur, which no earlier version wrote.)
    """
    added = {s.name: s.before for s in EngineOptions.specs() if s.before is not None and s.name not in recorded}
    return recorded | added


def flag_for(name: str, specs: Iterable[OptionSpec] | None = None) -> str:
    """The CLI flag of a library option name (``scan_backend`` -> ``--scan``) or training config key
    (``data.synthetic`` -> ``--synthetic``); a name no flag sets becomes ``--name``."""
    for s in specs if specs is not None else [*EngineOptions.specs(), *TRAIN_FLAGS]:
        if name in (s.name, s.key):
            return s.flag
    return "--" + name.replace("_", "-")


F = TypeVar("F", bound=Callable[..., Any])
_OLD = "_old_name_of_"  # the hidden parameter that receives an option's former flag


def with_options(specs: Sequence[OptionSpec], build: Callable[..., Any], *, param: str,
                 defaults: dict[str, Any] | None = None) -> Callable[[F], F]:
    """Give a typer command one option per spec, delivered to it as ``param=build(**values)``.

    The command declares ``param`` where the options should appear in its ``--help``; typer sees
    the spec's options in its place (the signature is rewritten), so every command using the
    same specs gets the same flags, types, limits and help text. ``defaults`` changes a default
    for one command (e.g. ``bench`` times the whole image unless told otherwise).
    """
    defaults = defaults or {}
    unknown = set(defaults) - {s.name for s in specs}
    if unknown:
        raise TypeError(f"with_options: no option named {', '.join(sorted(unknown))}")

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        if param not in sig.parameters:
            raise TypeError(f"{fn.__name__} must declare a '{param}' parameter to receive the options")
        clash = {s.name for s in specs} & set(sig.parameters)
        if clash:
            raise TypeError(f"{fn.__name__} declares {', '.join(sorted(clash))} itself and through '{param}'")
        new_params: list[inspect.Parameter] = []
        annotations = {k: v for k, v in getattr(fn, "__annotations__", {}).items() if k != param}
        for p in sig.parameters.values():
            if p.name != param:
                new_params.append(p)
                continue
            for s in specs:
                annotation: Any = s.cli_type if s.default is not None or s.cli_type is bool else s.cli_type | None
                new_params.append(inspect.Parameter(
                    s.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                    default=s.typer_option(defaults.get(s.name, dataclasses.MISSING))))
                annotations[s.name] = annotation
                if s.old_flags:
                    import typer

                    old: Any = s.cli_type | None
                    new_params.append(inspect.Parameter(
                        _OLD + s.name, inspect.Parameter.KEYWORD_ONLY, annotation=old,
                        default=typer.Option(None, *s.old_flags, hidden=True)))
                    annotations[_OLD + s.name] = old
        names = [s.name for s in specs]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in names if n in kwargs}
            for n in names:
                old_value = kwargs.pop(_OLD + n, None)
                if old_value is not None:
                    values[n] = old_value
            kwargs[param] = build(**values)
            return fn(*args, **kwargs)

        # typer reads the rewritten signature (inspect stops at __signature__, never at __wrapped__);
        # every parameter is keyword-only there because typer calls commands with keywords alone.
        wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in new_params])
        wrapper.__annotations__ = annotations
        return wrapper  # type: ignore[return-value]

    return decorate


def engine_options(*, defaults: dict[str, Any] | None = None) -> Callable[[F], F]:
    """The `EngineOptions` flags on a command, received as ``engine: EngineOptions``."""
    return with_options(EngineOptions.specs(), EngineOptions, param="engine", defaults=defaults)


def _flag(name: str, key: str | None, cli_type: type, help: str, **extra: Any) -> OptionSpec:
    return OptionSpec(name=name, flags=("--" + name.replace("_", "-"),), default=None, cli_type=cli_type,
                      help=help, key=key, **extra)


#: The options of ``deblur train`` and of its torchrun twin ``python -m deblurcli.train``, declared
#: once: both build their parsers from this, and ``train.config.FLAG_KEYS`` is derived from it.
#: ``key`` is the configuration key a flag sets. Here rather than in train/ so that building the
#: CLI does not import the configuration machinery (YAML, TOML).
TRAIN_FLAGS: tuple[OptionSpec, ...] = (
    _flag("config", None, str, "YAML or TOML configuration (see --print-config)", metavar="FILE"),
    _flag("arch", "arch", str, " | ".join(arch_names())),
    _flag("data", "data.paired", str, "folder of blurred/sharp pairs (any layout deblur eval reads)", metavar="DIR"),
    _flag("synthetic", "data.synthetic", str, "folder of sharp photos, blurred on the fly", metavar="DIR"),
    _flag("dead_leaves", "data.dead_leaves", float, "fraction of synthetic samples drawn as dead leaves"),
    _flag("val_data", "val.paired", str, "folder of held-out blurred/sharp pairs for validation", metavar="DIR"),
    _flag("steps", "train.steps", int, "optimizer steps in total"),
    _flag("patch_size", "train.patch_size", int, "training crop side (replaces any progressive schedule)"),
    _flag("batch_size", "train.batch_size", int, "training crops per step per process (replaces any progressive "
          "schedule); not the --tile-batch of deblur run"),
    _flag("lr", "train.lr", float, "peak learning rate"),
    _flag("out", "out", str, "run folder", metavar="DIR"),
    _flag("seed", "seed", int, "seeds weights, data and augmentation"),
    _flag("device", "device", str, "auto | cpu | cuda | cuda:N"),
    _flag("threads", "threads", int, "torch CPU threads (default or 0: all cores)", min=0),
    _flag("num_workers", "data.num_workers", int, "data loader worker processes"),
)

SET_HELP = "override a config key (dotted, value read as YAML), e.g. train.lr=1e-4; repeatable"
RESUME_HELP = "continue the run in --out from its last checkpoint"
