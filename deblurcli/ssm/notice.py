"""Where a scan backend says something worth a person's attention (e.g. a first-run compile).

A sibling of the backends rather than part of the package's ``__init__``, so that a backend module
reports through it without importing the package that contains it; ``deblurcli.ssm`` re-exports
``set_notice`` for the command line.
"""

from __future__ import annotations

from collections.abc import Callable

_notice: Callable[[str], None] | None = None


def set_notice(fn: Callable[[str], None] | None) -> None:
    """Route the backends' notices to ``fn`` (the CLI prints them), or drop them with ``None``."""
    global _notice
    _notice = fn


def notify(message: str) -> None:
    if _notice is not None:
        _notice(message)
