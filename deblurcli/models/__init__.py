"""The architectures, and the one list that makes the rest of deblurcli know them.

Each architecture is a module (or a folder) of this package exposing ``SPEC``, an
:class:`~deblurcli.models.contract.ArchSpec`: its name, constructor, variants, checkpoint
detection, size rule, minimum useful tile, memory hint, training recipe, export hook and
multi-scale outputs. The loader, the named-model registry, the tiler, the API, the trainer and
the CLI read those facts through :func:`get_arch` and :func:`arch_names` only.

Adding an architecture: write ``deblurcli/models/NAME.py`` defining ``SPEC = ArchSpec(...)``, and
add ``"NAME"`` to :data:`ARCH_NAMES` (in ``archs.py``). (The built-ins are folders instead, ``NAME/__init__.py`` for
the torch-free ``SPEC`` and ``NAME/network.py`` for the code, which keeps ``deblur models`` and
``train --print-config`` from importing torch; ``variants.py`` beside them holds the variant
table both read; setup.py discovers the folder, so no packaging file changes.) Code outside the
package (a test, a script) calls :func:`register_arch` instead, and an installed package can
declare its own under the entry-point group ``deblurcli.architectures``
(``NAME = "package.module:SPEC"`` in its pyproject's ``[project.entry-points."deblurcli.architectures"]``):
those are registered the first time the architectures are listed or looked up, which is before
the command line is built, so every command's ``--help`` and ``--arch`` know them. For that
reason a plug-in's module should import from ``deblurcli.models`` (and torch) only: importing
``deblurcli.cli`` there would re-enter the module that is loading it, and the plug-in is skipped.

Nothing here imports torch, so listing architectures costs nothing; a network's code is imported
when it is first built.
"""

from __future__ import annotations

from .archs import (
    ARCH_NAMES,
    PLUGIN_GROUP,
    arch_names,
    create,
    detect_arch,
    find_arch,
    get_arch,
    register_arch,
    unregister_arch,
)
from .contract import ArchSpec, TrainRecipe

__all__ = [
    "ARCH_NAMES", "PLUGIN_GROUP", "ArchSpec", "TrainRecipe", "arch_names", "create", "detect_arch", "find_arch",
    "get_arch", "register_arch", "unregister_arch",
]
