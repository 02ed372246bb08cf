"""User-facing errors.

Every failure a user can cause (a bad path, a corrupt file, an unknown model) is raised as a
`DeblurError` carrying one line that names the thing and the fix; the CLI prints that line and
exits with `exit_code`, and shows a traceback only under `--debug`.
"""

from __future__ import annotations


class DeblurError(Exception):
    """An error whose message is meant for the user, not a developer."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(DeblurError):
    """Wrong arguments or options: shell convention says exit code 2."""

    exit_code = 2


class CheckpointError(DeblurError):
    """A weights file that cannot be read, recognised or loaded."""


class ModelNotAvailable(DeblurError):
    """A named model whose weights cannot be had (offline, not found, network)."""


class ImageError(DeblurError):
    """An input image that cannot be read or an output that cannot be written."""
