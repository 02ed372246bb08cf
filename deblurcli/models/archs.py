"""The list of architectures: built-ins by name, registered specs and installed plug-ins.

It lives apart from the package's ``__init__`` so that modules inside ``deblurcli.models`` (the
named-model catalogue) import it as a sibling; ``deblurcli.models`` re-exports it for everyone else.
"""


from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .contract import ArchSpec

if TYPE_CHECKING:
    from torch import nn

#: The built-in architectures: each is the module ``deblurcli.models.<name>`` exposing ``SPEC``.
#: Detection tries them in this order.
ARCH_NAMES: tuple[str, ...] = ("algnet", "evssm", "xyscannet", "scanunet")

#: The entry-point group through which installed packages add architectures.
PLUGIN_GROUP = "deblurcli.architectures"

_loaded: dict[str, ArchSpec] = {}
_registered: dict[str, ArchSpec] = {}
_plugins_loaded = False
log = logging.getLogger("deblurcli")


def _load_plugins() -> None:
    """Register the architectures installed packages declare (once per process).

    A plug-in that fails to import or declares something else is skipped with one warning line
    naming it: a broken third-party package must not take every deblur command down with it.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            spec = ep.load()
            if not isinstance(spec, ArchSpec) or spec.name != ep.name:
                raise TypeError(f"it must name an ArchSpec called {ep.name!r}")
            if _registered.get(spec.name) is not spec:
                register_arch(spec)
        except Exception as exc:
            log.warning("architecture plug-in %r (%s) not loaded: %s", ep.name, ep.value,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def register_arch(spec: ArchSpec, *, replace: bool = False) -> ArchSpec:
    """Make an architecture defined outside this package known to every command.

    The name must be new unless ``replace`` is given (a built-in cannot be replaced).
    """
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"register_arch takes an ArchSpec, got {type(spec).__name__}")
    if spec.name in ARCH_NAMES:
        raise ValueError(f"{spec.name!r} is a built-in architecture; choose another name")
    if spec.name in _registered and not replace:
        raise ValueError(f"an architecture called {spec.name!r} is already registered")
    _registered[spec.name] = spec
    return spec


def unregister_arch(name: str) -> None:
    """Forget an architecture added by :func:`register_arch` (built-ins stay)."""
    _registered.pop(name, None)


def arch_names() -> tuple[str, ...]:
    """Every architecture's name: the built-ins in detection order, then registered ones."""
    _load_plugins()
    return (*ARCH_NAMES, *_registered)


def find_arch(name: str | None) -> ArchSpec | None:
    """The spec called ``name`` (case-insensitive), or None."""
    key = (name or "").lower()
    _load_plugins()
    if key in _registered:
        return _registered[key]
    if key not in ARCH_NAMES:
        return None
    if key not in _loaded:
        spec = getattr(importlib.import_module(f"deblurcli.models.{key}"), "SPEC", None)
        if not isinstance(spec, ArchSpec) or spec.name != key:
            raise TypeError(f"deblurcli.models.{key} must define SPEC = ArchSpec(name={key!r}, ...)")
        _loaded[key] = spec
    return _loaded[key]


def get_arch(name: str) -> ArchSpec:
    """The description of architecture ``name``; an unknown name is a clear error."""
    spec = find_arch(name)
    if spec is None:
        raise CheckpointError(f"unknown architecture {name!r}: expected one of {', '.join(arch_names())}")
    return spec


def detect_arch(state_dict: Mapping[str, Any]) -> str:
    """Name the architecture a state dict belongs to, from its keys alone."""
    found = [name for name in arch_names() if get_arch(name).detect(state_dict)]
    if len(found) == 1:
        return found[0]
    if not found:
        sample = ", ".join(list(state_dict)[:5])
        raise CheckpointError(
            "could not recognise the architecture of these weights "
            f"(first keys: {sample}); give {{arch}} ({'|'.join(arch_names())}) if you know it", names=("arch",)
        )
    raise CheckpointError(f"these weights look like several architectures ({', '.join(found)}); give {{arch}}",
                          names=("arch",))


def create(arch: str, kwargs: Mapping[str, Any], variant: str | None = None, **settings: Any) -> nn.Module:
    """Build an (untrained) network from its constructor kwargs, variant and variant settings."""
    return get_arch(arch).create(kwargs, variant, **settings)
