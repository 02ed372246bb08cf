"""What every architecture must tell the rest of deblurcli: one typed description, :class:`ArchSpec`.

The loader, the named-model registry, the tiler, the API, the trainer and the CLI's help texts
all read an architecture's facts from its ``ArchSpec`` and from nowhere else, so adding a network
means writing its module and registering its spec once (see :mod:`deblurcli.models`). Building
the spec checks it: a missing hook or an inconsistent default fails at registration, not halfway
through a user's run.

This module imports no torch: the built-in architectures' descriptions are read by
``deblur models`` and ``deblur train --print-config``, which must stay instant. Their network code
is therefore reached through :func:`lazy` hooks (:func:`network_hooks`), which import it on the
first call.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor, nn

#: Smallest tile side at which a network with a scan (state-space) branch still sees long blur:
#: its scans run along whole rows and columns, so a small tile cuts exactly what it models.
SCAN_MIN_TILE = 256
#: The same for a purely convolutional network, whose receptive field is local anyway.
CONV_MIN_TILE = 128
#: Peak activation bytes per input pixel per unit of level-1 width, measured on CPU in float32
#: (see benchmarks/): an estimate for picking tiles from free memory, deliberately high.
BYTES_PER_PIXEL_PER_CHANNEL = 160.0
#: The value ranges a network may expect its input in; recorded in converted files.
INPUT_RANGES = ("[0, 1]", "[-0.5, 0.5]")

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict without the ``module.`` that (Distributed)DataParallel puts before every key.

    Only when every key has it: that is what a wrapper does, whereas one real submodule named
    ``module`` must keep its name. The loader strips it once; detection hooks may get raw keys.
    """
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


@dataclass(frozen=True)
class lazy:  # noqa: N801 - used like a function: lazy("pkg.mod", "build")
    """A callable that imports ``module`` and calls its ``attr`` only when first used.

    The attribute is looked up on every call, so patching the module (as tests do) takes effect.
    """

    module: str
    attr: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.attr)(*args, **kwargs)


#: The hooks that run network code; :func:`network_hooks` makes them lazy for a package.
CODE_HOOKS = ("build", "detect", "infer_config", "pad_multiple", "restore", "training_outputs")


def network_hooks(package: str) -> dict[str, lazy]:
    """The code hooks of an architecture package whose functions live in ``package.network``.

    Each is looked up in that module when it first runs, so the package's ``SPEC`` can be read
    (``deblur models``, ``--help``) without importing the network, and torch with it.
    """
    return {hook: lazy(f"{package}.network", hook) for hook in CODE_HOOKS}


def width_memory(key: str, fallback: int = 48) -> Callable[[Mapping[str, Any]], float]:
    """A memory hint for networks whose activations scale with one width key of their config."""

    def bytes_per_pixel(config: Mapping[str, Any]) -> float:
        return BYTES_PER_PIXEL_PER_CHANNEL * int(config.get(key) or fallback)

    return bytes_per_pixel


def count_blocks(keys: Iterable[str], prefix: str, title: str) -> int:
    """How many numbered blocks (``PREFIX0.``, ``PREFIX1.``, ...) a state dict holds under ``prefix``.

    Config inference reads block counts from key names; a gap in the numbering means the file is
    not what its keys suggest, which must fail here rather than as a shape error later.
    """
    from ..errors import CheckpointError

    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    if found != set(range(len(found))):
        raise CheckpointError(f"{title} weights have gaps in the blocks under {prefix!r}: {sorted(found)}")
    return len(found)


def keep_settings(variant: str, settings: dict[str, Any], train_patch: int) -> dict[str, Any]:
    """The default export hook: a trained network's variant settings do not depend on training."""
    return settings


@dataclass(frozen=True, eq=False)
class TrainRecipe:
    """How ``deblur train`` trains this architecture by default (the paper's recipe).

    ``model`` is the full-size constructor config, ``variant`` the form trained (the exported file
    gets ``ArchSpec.default_variant``), ``overrides`` the departures from the common training
    defaults by section (``{"train": {...}, "loss": {...}}``), and ``comments`` the lines
    ``--print-config`` writes beside this architecture's keys (dotted key -> text).
    """

    model: Mapping[str, Any]
    variant: str
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    comments: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ArchSpec:
    """One architecture, as everything outside its module sees it.

    Hooks (all plain callables; built-in networks pass :func:`lazy` ones):

    - ``build(kwargs, variant, **settings) -> nn.Module``: ``kwargs`` are the official
      constructor's keyword arguments, ``settings`` the variant's extras (``local_pool=``, ...).
    - ``detect(state_dict) -> bool`` and ``infer_config(state_dict) -> dict``: recognise a
      checkpoint and read its constructor kwargs from key names and shapes alone.
    - ``pad_multiple(kwargs, variant) -> int``: input sides must be multiples of this.
    - ``restore(model, x) -> Tensor``: ``x`` (N, 3, H, W) in [0, 1], sides multiples of
      ``pad_multiple``; the restored image in [0, 1] space, unclamped, same shape.
    - ``training_outputs(model, x) -> list[Tensor]``: the predictions a loss compares, coarsest
      first, full size last, in [0, 1] image space.
    - ``bytes_per_pixel(config) -> float``: peak float32 activation memory per input pixel, which
      sizes automatic tiles.
    - ``export_settings(variant, settings, train_patch) -> dict``: the variant settings a trained
      file records (ALGNet's local form sizes its pooling windows from the training crop).

    Facts: ``variants`` (the forms the authors use) and ``default_variant`` (the one behind the
    paper's test numbers), ``input_range`` (recorded in converted files), ``min_tile`` (smallest
    useful tile side), ``configs`` (named full-size constructor configs, as ``infer_config``
    reads them from the released checkpoints) and ``recipe`` (``deblur train``'s defaults).
    A model's raw ``forward`` stays the official one, which is what conformance compares.
    """

    name: str
    #: The name people know it by (``ALGNet``), for messages; ``name`` is what commands take.
    title: str
    variants: tuple[str, ...]
    default_variant: str
    input_range: str
    build: Callable[..., nn.Module]
    detect: Callable[[Mapping[str, Any]], bool]
    infer_config: Callable[[Mapping[str, Any]], dict[str, Any]]
    pad_multiple: Callable[[Mapping[str, Any], str], int]
    restore: Callable[[nn.Module, Tensor], Tensor]
    training_outputs: Callable[[nn.Module, Tensor], list[Tensor]]
    recipe: TrainRecipe
    min_tile: int = SCAN_MIN_TILE
    bytes_per_pixel: Callable[[Mapping[str, Any]], float] = field(default_factory=lambda: width_memory("width"))
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    export_settings: Callable[[str, dict[str, Any], int], dict[str, Any]] = keep_settings

    def __post_init__(self) -> None:
        problems = []
        if not _NAME.match(self.name):
            problems.append(f"name {self.name!r} must be lower case letters, digits and _ (it is a CLI value)")
        if not self.variants or self.default_variant not in self.variants:
            problems.append(f"default_variant {self.default_variant!r} is not one of variants {self.variants}")
        if self.recipe.variant not in self.variants:
            problems.append(f"recipe.variant {self.recipe.variant!r} is not one of variants {self.variants}")
        if self.input_range not in INPUT_RANGES:
            problems.append(f"input_range {self.input_range!r} must be one of {', '.join(INPUT_RANGES)}")
        if not (isinstance(self.min_tile, int) and self.min_tile > 0):
            problems.append(f"min_tile must be a positive int, got {self.min_tile!r}")
        hooks = ("build", "detect", "infer_config", "pad_multiple", "restore", "training_outputs",
                 "bytes_per_pixel", "export_settings")
        problems += [f"{h} must be callable" for h in hooks if not callable(getattr(self, h))]
        if problems:
            raise TypeError(f"architecture {self.name!r}: " + "; ".join(problems))

    def create(self, kwargs: Mapping[str, Any], variant: str | None = None, **settings: Any) -> nn.Module:
        """An untrained network from its constructor kwargs, variant (default: the paper's) and settings."""
        return self.build(dict(kwargs), variant or self.default_variant, **settings)


__all__ = [
    "BYTES_PER_PIXEL_PER_CHANNEL", "CODE_HOOKS", "CONV_MIN_TILE", "INPUT_RANGES", "SCAN_MIN_TILE", "ArchSpec",
    "TrainRecipe", "count_blocks", "keep_settings", "lazy", "network_hooks", "width_memory",
]
