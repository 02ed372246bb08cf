"""Writing restored pixels with the source's metadata: the write plan, quantizing, atomic files.

Policies a photographer will notice, decided once here (the format facts they use live in
`formats.py`):

* Orientation. The output is written upright with every orientation tag (EXIF, TIFF, XMP
  ``tiff:Orientation``) set to 1, so no viewer can rotate it a second time and the tags can
  never disagree with the pixels. ``keep_orientation="original"`` instead rotates the pixels
  back to the stored layout and keeps the original tag, for workflows that compare files
  byte-layout to byte-layout.
* Bit depth. 8-bit stays 8-bit and 16-bit stays 16-bit where the format holds it. Asking for
  a format that holds only 8 bits is taken as a deliberate choice, so a 16-bit photo is rounded
  to 8 bits and a note says so (the CLI prints it) instead of failing after a long model run.
  `output_notes` gives the same notes before the run.
* Grey stays grey (the model's three channels are averaged) where the format has a grey mode.
  Alpha is passed through untouched at the output bit depth; formats without alpha drop it
  with a note.
* Metadata. EXIF, ICC and XMP are copied without external tools, EXIF byte for byte (only the
  orientation value is patched in place), so maker notes survive. What a format cannot carry
  is left out with a note.
* Writes are atomic: a temporary file in the destination folder, fsync, then `os.replace`, so an
  interrupted run never leaves a half-written photo or damages an existing one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from deblurcli.errors import ImageError
from deblurcli.fsutil import atomic_write, input_as_output

from .formats import FORMATS, describe, either, format_for_path
from .image import Image, _unorient, as_float_rgb
from .metadata import _exif_for_output, _icc_space, _set_xmp_orientation, cicp_matters, describe_cicp
from .writers import Encoding, write_png

_METADATA_NAMES = {"exif": "EXIF", "icc": "ICC", "xmp": "XMP"}


@dataclass
class _Plan:
    format: str
    depth: int
    grey: bool
    alpha: bool
    icc: bytes | None
    notes: list[str]


def _exts(keep: Callable[..., bool]) -> str:
    return either([f.extension for f in FORMATS if f.writer is not None and keep(f)])


def _plan(img: Image, fmt: str, bit_depth: int | None) -> _Plan:
    """What of `img` the format `fmt` keeps, with a note for everything it cannot."""
    f = describe(fmt)
    notes: list[str] = []
    depth = bit_depth or img.bit_depth
    if depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {depth}")
    if depth not in f.bit_depths:
        keep = _exts(lambda g: depth in g.bit_depths and g.high_bits == 16)
        notes.append(
            f"{fmt} holds {max(f.bit_depths)} bits per channel: the {depth}-bit photo is written as "
            f"{max(f.bit_depths)}-bit; use {keep} to keep {depth} bits"
        )
        depth = max(f.bit_depths)
    elif depth == 16 and f.high_bits < 16 and img.format != f.name:  # a 10-bit HEIC stays 10-bit
        keep = _exts(lambda g: g.high_bits == 16 and 16 in g.bit_depths)
        notes.append(
            f"{f.label} holds {f.high_bits} bits per channel: the 16-bit photo is written at {f.high_bits} bits; "
            f"use {keep} to keep 16 bits"
        )
    alpha = img.alpha is not None
    if alpha and not f.alpha:
        notes.append(
            f"{fmt} has no usable transparency: the alpha channel is dropped; use {_exts(lambda g: g.alpha)} to keep it"
        )
        alpha = False
    grey = img.is_grey
    if grey and not f.grey:
        notes.append(f"{f.label} has no greyscale mode: the grey photo is stored as RGB")
        grey = False
    elif grey and alpha and depth == 16 and not f.grey_alpha_16:
        notes.append(
            f"{f.label} at {f.high_bits} bits has no grey with transparency: the grey photo is stored as RGB"
        )
        grey = False
    icc = img.icc
    if icc is not None and _icc_space(icc) != (b"GRAY" if grey else b"RGB "):
        notes.append("the colour profile does not match the output's colour mode and was left out")
        icc = None
    lost = [k for k in _METADATA_NAMES if k not in f.metadata]
    if lost and any(getattr(img, k) for k in lost):
        names = either([_METADATA_NAMES[k] for k in lost])
        keep = _exts(lambda g: all(k in g.metadata for k in lost))
        notes.append(f"{f.label} cannot store {names}: metadata is left out; use {keep} to keep it")
    if cicp_matters(img.cicp) and "cicp" not in f.metadata:
        notes.append(
            f"{f.label} cannot store the photo's {describe_cicp(img.cicp)} colour description: viewers will "
            f"show its colours as sRGB; use {_exts(lambda g: 'cicp' in g.metadata)} to keep it"
        )
    if img.frames > 1:
        notes.append(f"only the first of {img.frames} frames/pages was processed and written")
    return _Plan(fmt, depth, grey, alpha, icc if "icc" in f.metadata else None, notes)


def output_notes(
    img: Image, path: str | os.PathLike[str], *, format: str | None = None, bit_depth: int | None = None
) -> list[str]:
    """What will be lost or changed when `img` is written to `path`, known before the model runs."""
    return list(_plan(img, format_for_path(path, format), bit_depth).notes)


def write_image(
    img: Image,
    pixels: np.ndarray,
    path: str | os.PathLike[str],
    *,
    quality: int = 95,
    format: str | None = None,
    keep_orientation: str = "upright",
    bit_depth: int | None = None,
    overwrite_source: bool = False,
) -> list[str]:
    """Write restored `pixels` (HxWx3 float in [0, 1], upright) with `img`'s metadata, atomically.

    Returns notes for the user about anything the output format could not keep (see the module
    docstring for the policies). Refuses to replace the file the photo was read from unless
    `overwrite_source` is set, because a mistaken ``-o`` must not destroy the original.
    """
    _check_options(quality, keep_orientation)
    out = Path(path)
    fmt = format_for_path(out, format)
    refusal = None if overwrite_source else input_as_output(img.source, out)
    if refusal:
        raise ImageError(refusal)
    if out.is_dir():
        raise ImageError(f"{out}: is a folder; give a file name for the output")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ImageError(f"{out}: folder {parent} does not exist; create it first")
    plan = _plan(img, fmt, bit_depth)
    # readers see the old file or the whole new one; a failure is one ImageError line
    atomic_write(out, lambda f: _encode_into(f, img, pixels, plan, quality, keep_orientation, str(out)),
                 error=ImageError)
    return plan.notes


def save_png(samples: np.ndarray, path: str | os.PathLike[str], *, make_parents: bool = True,
             error: Callable[[str], Exception] | None = ImageError) -> None:
    """A plain PNG of samples as they are (uint8 or uint16; HxWx3, or HxW grey), written atomically.

    The one PNG writer for data that is not someone's photo (training pairs, evaluation outputs):
    no metadata to carry, but the same encoder as `write_image` and the same guarantee that an
    interrupted run never leaves a torn file. Missing folders are made (`make_parents`); a failure
    is one `ImageError` line (``error=None``: the OSError, for a caller that words it itself).
    """
    if samples.dtype not in (np.uint8, np.uint16) or samples.ndim not in (2, 3) or (
            samples.ndim == 3 and samples.shape[2] != 3):
        raise ValueError(f"expected uint8/uint16 HxWx3 or HxW samples, got {samples.dtype} {samples.shape}")
    arr = samples[..., None] if samples.ndim == 2 else samples
    enc = Encoding(grey=samples.ndim == 2, png_level=1)  # data written by the thousand: speed over size
    atomic_write(path, lambda f: write_png(f, arr, enc), make_parents=make_parents, error=error)


def encode_image(
    img: Image,
    pixels: np.ndarray,
    *,
    format: str | None = None,
    quality: int = 95,
    keep_orientation: str = "upright",
    bit_depth: int | None = None,
) -> bytes:
    """The bytes `write_image` would write, for stdout; the format defaults to the input's."""
    _check_options(quality, keep_orientation)
    fmt = format_for_path("<stdout>", format or img.format)
    buf = io.BytesIO()
    _encode_into(buf, img, pixels, _plan(img, fmt, bit_depth), quality, keep_orientation, "<stdout>")
    return buf.getvalue()


def _check_options(quality: int, keep_orientation: str) -> None:
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be 1..100, got {quality}")
    if keep_orientation not in ("upright", "original"):
        raise ValueError(f"keep_orientation must be 'upright' or 'original', got {keep_orientation!r}")


def _quantize(x: np.ndarray, depth: int, label: str) -> np.ndarray:
    """Clamp and round half up to the integer type, in row blocks to bound temporary memory."""
    maxval = np.float32(255.0 if depth == 8 else 65535.0)
    out = np.empty(x.shape, np.uint8 if depth == 8 else np.uint16)
    step = max(1, (1 << 22) // max(1, x[0].size))
    for r in range(0, x.shape[0], step):
        blk = np.array(x[r : r + step], dtype=np.float32)
        if np.isnan(blk).any():
            raise ImageError(
                f"{label}: the restored image contains NaN values (numeric overflow in the model); "
                "try full precision; nothing was written"
            )
        np.clip(blk, 0.0, 1.0, out=blk)
        blk *= maxval
        blk += np.float32(0.5)
        np.floor(blk, out=blk)
        out[r : r + step] = blk
    return out


def _grey(pixels: np.ndarray) -> np.ndarray:
    out = np.empty(pixels.shape[:2], np.float32)
    step = max(1, (1 << 22) // max(1, pixels[0].size))
    for r in range(0, pixels.shape[0], step):
        out[r : r + step] = pixels[r : r + step].mean(axis=2, dtype=np.float32)
    return out


def to_samples(pixels: np.ndarray, depth: int, grey: bool, label: str) -> np.ndarray:
    """Float HxWx3 pixels in [0, 1] (any rows of them) as the integers a file stores: HxW if grey.

    The one rounding rule (clamp, round half up), used for whole images here and for each
    finished strip by `Deblurrer`, so both give the same bytes.
    """
    return _quantize(_grey(pixels), depth, label) if grey else _quantize(pixels, depth, label)


def output_layout(
    img: Image, path: str | os.PathLike[str], *, format: str | None = None, bit_depth: int | None = None
) -> tuple[int, bool]:
    """(bit depth, grey) of the samples `write_image` will store for `img` at `path`.

    A caller that produces exactly that (`to_samples`, HxW when grey) hands it to `write_image`
    without another full-size copy.
    """
    plan = _plan(img, format_for_path(path, format), bit_depth)
    return plan.depth, plan.grey


def _output_samples(pixels: np.ndarray, plan: _Plan, label: str) -> np.ndarray:
    target = np.uint8 if plan.depth == 8 else np.uint16
    if pixels.dtype == target and (pixels.ndim == 2) == plan.grey and (pixels.ndim == 2 or pixels.shape[2] == 3):
        return pixels  # already what the file stores
    if pixels.dtype.kind in "ui":
        pixels = as_float_rgb(pixels)
    elif pixels.ndim == 2:
        pixels = pixels[..., None].repeat(3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be HxWx3, got shape {pixels.shape}")
    return to_samples(pixels, plan.depth, plan.grey, label)


def _encode_into(
    f: BinaryIO, img: Image, pixels: np.ndarray, plan: _Plan, quality: int, keep_orientation: str, label: str
) -> None:
    pixels = np.asarray(pixels)
    if pixels.ndim not in (2, 3):
        raise ValueError(f"pixels must be HxWx3, got shape {pixels.shape}")
    h, w = pixels.shape[:2]
    alpha = img.alpha_samples if plan.alpha else None
    if alpha is not None and alpha.shape != (h, w):
        raise ValueError(f"pixels are {w}x{h} but the alpha channel is {alpha.shape[1]}x{alpha.shape[0]}")
    fmt = describe(plan.format)
    if max(h, w) > fmt.max_side:
        raise ImageError(
            f"{label}: {fmt.name} cannot hold an image {w}x{h} (limit {fmt.max_side} px a side); "
            f"use {_exts(lambda g: g.max_side >= max(h, w))}"
        )

    arr = _output_samples(pixels, plan, label)
    if arr.ndim == 2:
        arr = arr[..., None]
    if alpha is not None:
        if alpha.dtype != arr.dtype:  # stored untouched unless the depth changes
            alpha = _quantize(as_float_rgb(alpha)[..., 0] if alpha.dtype.kind in "ui" else alpha, plan.depth, label)
        arr = np.concatenate([arr, alpha[..., None]], axis=2)

    tag = 1
    if keep_orientation == "original" and img.orientation != 1:
        arr = np.ascontiguousarray(_unorient(arr, img.orientation))
        tag = img.orientation
    enc = Encoding(
        grey=plan.grey,
        icc=plan.icc,
        exif=_exif_for_output(img.exif, tag) if "exif" in fmt.metadata else None,
        xmp=_set_xmp_orientation(img.xmp, tag) if "xmp" in fmt.metadata else None,
        dpi=img.dpi if "dpi" in fmt.metadata else None,
        orientation=tag,
        quality=quality,
        notes=plan.notes,
        cicp=img.cicp if "cicp" in fmt.metadata else None,
    )
    if fmt.writer is None:  # pragma: no cover - format_for_path only returns writable formats
        raise ImageError(f"{label}: cannot write {fmt.name}")
    fmt.writer(f, arr, enc)

