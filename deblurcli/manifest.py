"""The sha256 pins the package ships beside its embedded weights (``manifest.json``).

The export script writes ``{file name: {"sha256": ..., "size": ...}}`` next to the weights, so a
file that was damaged or swapped after release is refused rather than run (see
:mod:`deblurcli.hub`). A missing manifest is no error: a development checkout may not have one.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError

MANIFEST_FILE = "manifest.json"


def pinned_sha256(folder: Path | None, filename: str | None) -> str | None:
    """The sha256 the manifest in ``folder`` pins for ``filename`` (None without a manifest or an entry)."""
    if folder is None or not filename:
        return None
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc}); reinstall deblurcli") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get(filename, {}), dict):
        raise CheckpointError(f"{path}: not a manifest of weights files; reinstall deblurcli")
    pin = manifest.get(filename, {}).get("sha256")
    return str(pin).lower() if pin else None
