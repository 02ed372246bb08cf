"""A safetensors file's metadata and parameter count, from its JSON header alone.

Reading only the header keeps ``deblur models`` fast and torch-free even when the weights are
hundreds of megabytes: the format puts an 8-byte little-endian length, then a JSON object naming
every tensor's dtype and shape, plus a free-form ``__metadata__`` string map, before any data.
"""

from __future__ import annotations

import json
import math
import os
import struct

from .errors import CheckpointError

#: Far above any real header (a few hundred kB for the largest networks here); a larger claimed
#: length means the file is not safetensors, and reading it would load garbage into memory.
_MAX_HEADER_BYTES = 100_000_000


def read_safetensors_header(path: str | os.PathLike[str]) -> tuple[dict[str, str], int]:
    """The file's ``__metadata__`` and its parameter count; an unreadable file is a CheckpointError naming it."""
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ValueError("shorter than a safetensors header")
            (length,) = struct.unpack("<Q", raw)
            if length > _MAX_HEADER_BYTES:
                raise ValueError("implausible header length")
            header = json.loads(f.read(length))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    meta = header.pop("__metadata__", None) or {}
    params = sum(math.prod(v.get("shape", [])) for v in header.values() if isinstance(v, dict))
    return {str(k): str(v) for k, v in meta.items()}, int(params)
