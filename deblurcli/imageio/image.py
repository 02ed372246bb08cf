"""The decoded photo (`Image`) and the EXIF orientation turns shared by the reader and the writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Image:
    """A decoded photo: what the model sees plus what is needed to write it back faithfully.

    `pixels` and `alpha` are upright (EXIF orientation already applied); `orientation` records
    the tag the file had so the writer can reset or restore it.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    channels: str = "RGB"
    format: str = "PNG"
    exif: bytes | None = None
    icc: bytes | None = None
    xmp: bytes | None = None
    orientation: int = 1
    source: Path | None = None
    dpi: tuple[float, float] | None = None
    frames: int = 1
    name: str = field(default="<image>", repr=False)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def is_grey(self) -> bool:
        return self.channels in ("L", "LA")



def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels upright for an EXIF orientation (same result as Pillow's exif_transpose)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


def _unorient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Inverse of `_orient`: every case is its own inverse except the two 90-degree turns."""
    return _orient(arr, {6: 8, 8: 6}.get(orientation, orientation))


