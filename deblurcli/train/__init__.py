"""Training: ``deblur train`` and ``python -m deblurcli.train`` (which torchrun can launch).

The public surface is small on purpose: the CLI builds a configuration with :func:`load_config`
and hands it to :func:`run`. Importing this package stays cheap (no torch) so that
``--print-config`` and ``--help`` answer at once; the loop is imported when a run starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import FLAG_KEYS, default_config, dump_config, load_config, print_config

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["FLAG_KEYS", "default_config", "dump_config", "load_config", "print_config", "run"]


def run(config: Mapping[str, Any], *, resume: bool = False, console: Console | None = None) -> Path:
    """Train as ``config`` says; returns the output folder (see ``deblurcli.train.loop.run``)."""
    from .loop import run as _run

    return _run(config, resume=resume, console=console)
