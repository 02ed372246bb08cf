"""The decoded photo (`Image`) and the EXIF orientation turns shared by the reader and the writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Image:
    """A decoded photo: its samples plus what is needed to write it back faithfully.

    `samples` is what the file held, kept at its own size: uint8 or uint16 (grey as HxW,
    colour as HxWx3, alpha apart in `alpha_samples`), so a 100-megapixel panorama costs 3 or 6
    bytes a pixel rather than 12 as float32. An `Image` may also be made from float pixels in
    [0, 1] (``Image(pixels=x)``). `pixels` and `alpha` give the float32 view the model and most
    callers want, computed on each access: code that handles large photos reads `samples`.

    Everything is upright (EXIF orientation already applied); `orientation` records the tag the
    file had so the writer can reset or restore it.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        alpha: np.ndarray | None = None,
        bit_depth: int = 8,
        channels: str = "RGB",
        format: str = "PNG",
        exif: bytes | None = None,
        icc: bytes | None = None,
        xmp: bytes | None = None,
        orientation: int = 1,
        source: Path | None = None,
        dpi: tuple[float, float] | None = None,
        frames: int = 1,
        name: str = "<image>",
        cicp: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.samples = pixels
        self.alpha_samples = alpha
        self.bit_depth = bit_depth
        self.channels = channels
        self.format = format
        self.exif = exif
        self.icc = icc
        self.xmp = xmp
        self.orientation = orientation
        self.source = source
        self.dpi = dpi
        self.frames = frames
        self.name = name
        #: HEIF/AVIF's nclx colour description (H.273 primaries, transfer, matrix, full range):
        #: what marks a photo HDR (HLG, PQ) or wide-gamut where no ICC profile does.
        self.cicp = cicp

    def __repr__(self) -> str:
        return (
            f"Image({self.width}x{self.height}, {self.channels}, {self.bit_depth}-bit {self.format}, "
            f"samples {self.samples.dtype}, source={self.source})"
        )

    @property
    def pixels(self) -> np.ndarray:
        """HxWx3 float32 in [0, 1] (grey repeated in all three): a new array unless stored that way."""
        return as_float_rgb(self.samples)

    @pixels.setter
    def pixels(self, value: np.ndarray) -> None:
        self.samples = value

    @property
    def alpha(self) -> np.ndarray | None:
        """HxW float32 in [0, 1], or None."""
        if self.alpha_samples is None:
            return None
        a = self.alpha_samples
        return a if a.dtype == np.float32 else np.ascontiguousarray(np.divide(a, sample_max(a), dtype=np.float32))

    @alpha.setter
    def alpha(self, value: np.ndarray | None) -> None:
        self.alpha_samples = value

    @property
    def height(self) -> int:
        return int(self.samples.shape[0])

    @property
    def width(self) -> int:
        return int(self.samples.shape[1])

    @property
    def is_grey(self) -> bool:
        return self.channels in ("L", "LA")


def sample_max(arr: np.ndarray) -> np.float32:
    """The value that means 1.0 for an array's dtype: 255 for uint8, 65535 for uint16, 1 for floats."""
    if arr.dtype == np.uint8:
        return np.float32(255.0)
    if arr.dtype == np.uint16:
        return np.float32(65535.0)
    if arr.dtype.kind == "f":
        return np.float32(1.0)
    raise ValueError(f"image samples must be uint8, uint16 or float, got {arr.dtype}")


def as_float_rgb(arr: np.ndarray) -> np.ndarray:
    """Samples (any rows of them) as HxWx3 float32 in [0, 1]: what the model is fed.

    Integers are divided by their maximum in float32, exactly as the decoder always did, so
    converting a tile at a time gives the same numbers as converting the whole photo once.
    """
    if arr.dtype.kind == "f" and arr.ndim == 3 and arr.shape[2] == 3:
        return np.asarray(arr, dtype=np.float32)  # float pixels are used as they are
    scale = sample_max(arr)
    grey = arr if arr.ndim == 2 else (arr[..., 0] if arr.shape[2] == 1 else None)
    if grey is not None:
        out = np.empty(grey.shape + (3,), np.float32)
        np.divide(grey, scale, out=out[..., 0], dtype=np.float32)
        out[..., 1] = out[..., 0]
        out[..., 2] = out[..., 0]
        return out
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"pixels must be HxW or HxWx3, got shape {arr.shape}")
    return np.ascontiguousarray(np.divide(arr, scale, dtype=np.float32))


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


