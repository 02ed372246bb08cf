"""User-facing errors.

Every failure a user can cause (a bad path, a corrupt file, an unknown model) is raised as a
`DeblurError` carrying one line that names the thing and the fix; the CLI prints that line and
exits with `exit_code`, and shows a traceback only under `--debug`.

The library names its options as a Python caller writes them (``tile=512``); the CLI names the
flag (``--tile 512``). An error about an option says which one (`OptionError`, or ``hint`` on any
`DeblurError`) and `cli_message` writes it the command line's way, so no library message has to
mention a flag that a Python caller does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_NO_VALUE: Any = object()


def _cli_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class DeblurError(Exception):
    """An error whose message is meant for the user, not a developer."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None,
                 hint: tuple[str, Any] | None = None, names: tuple[str, ...] = ()) -> None:
        """``hint=(option, value)``: the setting that fixes it, appended as ``(option=value)``.

        ``names``: options written ``{name}`` in ``message``, shown as the name here and as the
        flag by `cli_message`.
        """
        self.message, self.hint, self.names = message, hint, names
        super().__init__(_fill(message, names, str) + (f" ({hint[0]}={hint[1]!r})" if hint else ""))
        if exit_code is not None:
            self.exit_code = exit_code

    def cli_message(self, flag_of: Callable[[str], str]) -> str:
        """The message with options named as flags by ``flag_of`` (``tile`` -> ``--tile``)."""
        if self.hint is None and not self.names:
            return str(self)
        text = _fill(self.message, self.names, flag_of)
        if self.hint is None:
            return text
        flag = flag_of(self.hint[0])
        return f"{text} ({flag if self.hint[1] is True else f'{flag} {_cli_value(self.hint[1])}'})"


def _fill(message: str, names: tuple[str, ...], spell: Callable[[str], str]) -> str:
    for name in names:
        message = message.replace("{" + name + "}", spell(name))
    return message


class UsageError(DeblurError):
    """Wrong arguments or options: shell convention says exit code 2."""

    exit_code = 2


class OptionError(UsageError):
    """A bad value for an option: ``tile='big': must be ...`` in Python, ``--tile big: must be ...`` in the CLI."""

    def __init__(self, option: str, problem: str, *, value: Any = _NO_VALUE) -> None:
        self.option, self.problem, self.value = option, problem, value
        super().__init__(self._render(option, repr(value)))

    def _render(self, name: str, value: str) -> str:
        shown = f"{name} {value}" if name.startswith("-") else f"{name}={value}"
        return f"{shown if self.value is not _NO_VALUE else name}: {self.problem}"

    def cli_message(self, flag_of: Callable[[str], str]) -> str:
        return self._render(flag_of(self.option), _cli_value(self.value))


class CheckpointError(DeblurError):
    """A weights file that cannot be read, recognised or loaded."""


class ModelNotAvailable(DeblurError):
    """A named model whose weights cannot be had (offline, not found, network)."""


class ImageError(DeblurError):
    """An input image that cannot be read or an output that cannot be written."""


class OutputError(DeblurError):
    """The output could not be written for a reason outside the input (a full disk, permissions).

    Kept apart so that a batch retries such a file on its next run by itself: the same input
    may well succeed once space is freed, unlike one that cannot be decoded.
    """


class KernelError(DeblurError):
    """A blur kernel that is not one (negative, all zero, not 2-D, larger than the image), or an image
    too flat or too small to estimate one from."""
