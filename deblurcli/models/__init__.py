"""The three architectures and how a checkpoint's keys map to one of them.

Each architecture lives in its own module (``algnet``, ``evssm``, ``xyscannet``) and exposes the
same small surface, so that the loader, the tiler and the trainer never need to know which
network they hold:

- ``ARCH``: the architecture's name.
- ``VARIANTS`` / ``DEFAULT_VARIANT``: the forms the authors use (e.g. ALGNet ``plain`` / ``local``,
  EVSSM ``global`` / ``windowed``); the default is the one the paper's test numbers use.
- ``INPUT_RANGE``: ``"[0, 1]"`` or ``"[-0.5, 0.5]"``, recorded in converted checkpoints.
- ``build(kwargs, variant=DEFAULT_VARIANT, **settings) -> nn.Module``: ``kwargs`` are the official
  constructor's keyword arguments (as in the conformance ``case.json``); ``settings`` are the
  variant's extra settings (``local_pool=...``, ``scan_window=...``).
- ``detect(state_dict) -> bool`` and ``infer_config(state_dict) -> dict`` (the constructor kwargs
  read from key names and shapes alone).
- ``pad_multiple(kwargs, variant) -> int``: the size rule an input must meet.
- ``restore(model, x) -> Tensor``: ``x`` is (N, 3, H, W) in [0, 1] with H, W multiples of
  ``pad_multiple``; returns the restored image in [0, 1] space (not clamped), same shape.
- ``training_outputs(model, x) -> list[Tensor]``: the multi-scale predictions a loss compares,
  coarsest first, finest (full size) last, in [0, 1] image space.

A model's raw ``forward`` stays exactly the official one, which is what conformance compares.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from ..errors import CheckpointError

ARCH_NAMES: tuple[str, ...] = ("algnet", "evssm", "xyscannet")


def get_arch(name: str) -> ModuleType:
    """The module implementing architecture ``name``."""
    key = name.lower()
    if key not in ARCH_NAMES:
        raise CheckpointError(f"unknown architecture {name!r}: expected one of {', '.join(ARCH_NAMES)}")
    return importlib.import_module(f"{__name__}.{key}")


def detect_arch(state_dict: dict[str, Tensor]) -> str:
    """Name the architecture a state dict belongs to, from its keys alone."""
    found = [name for name in ARCH_NAMES if get_arch(name).detect(state_dict)]
    if len(found) == 1:
        return found[0]
    if not found:
        sample = ", ".join(list(state_dict)[:5])
        raise CheckpointError(
            "could not recognise the architecture of these weights "
            f"(first keys: {sample}); pass --arch algnet|evssm|xyscannet if you know it"
        )
    raise CheckpointError(f"these weights look like several architectures ({', '.join(found)}); pass --arch")


def create(arch: str, kwargs: dict[str, Any], variant: str | None = None, **settings: Any) -> nn.Module:
    """Build an (untrained) network from its constructor kwargs, variant and variant settings."""
    mod = get_arch(arch)
    return mod.build(dict(kwargs), variant or mod.DEFAULT_VARIANT, **settings)
