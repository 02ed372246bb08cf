"""Reading and writing photos without losing what the photographer cares about.

The model only ever sees `Image.pixels`: float32, HxWx3, in [0, 1], upright. Everything else a
file carries (bit depth, grey vs colour, alpha, EXIF, ICC, XMP, DPI) rides along on the `Image`
so that `write_image` can put it back.

Policies a photographer will notice, decided once here:

* Orientation. The model must see the photo upright, so the EXIF orientation is applied on read
  (and recorded in `Image.orientation`). The output is written upright with every orientation
  tag (EXIF, TIFF, XMP ``tiff:Orientation``) set to 1, so no viewer can rotate it a second time
  and the tags can never disagree with the pixels. ``keep_orientation="original"`` instead
  rotates the pixels back to the stored layout and keeps the original tag, for workflows that
  compare files byte-layout to byte-layout.
* Bit depth. 8-bit stays 8-bit and 16-bit stays 16-bit (PNG and TIFF). JPEG, WebP and BMP hold
  only 8 bits per channel: asking for one of them is taken as a deliberate choice, so a 16-bit
  photo is rounded to 8 bits and a note says so (the CLI prints it) instead of failing after a
  long model run. `output_notes` gives the same notes before the run.
* Grey stays grey (the model's three channels are averaged), except in WebP, which has no grey
  mode. Alpha is passed through untouched at the output bit depth; formats without usable
  alpha (JPEG, BMP) drop it with a note.
* Metadata. EXIF, ICC and XMP are copied without external tools. JPEG/PNG/WebP EXIF is copied
  byte for byte (only the orientation value is patched in place), so maker notes survive.
  BMP cannot carry metadata; a note says so.
* Writes are atomic: a temporary file in the destination folder, fsync, then `os.replace`, so an
  interrupted run never leaves a half-written photo or damages an existing one.

16-bit data is decoded with OpenCV because Pillow reduces 16-bit RGB(A) to 8 bits; 16-bit PNG
and all TIFF files are encoded by the small writers below because neither Pillow nor OpenCV
(before 4.12) can write 16-bit colour together with ICC/EXIF/XMP.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import struct
import tempfile
import threading
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageCms, PngImagePlugin, UnidentifiedImageError

from deblurcli.errors import ImageError

# OpenCV's own warnings (e.g. libtiff's about ExtraSamples) go straight to stderr and would break
# the one-line-per-problem rule; every real failure surfaces as an ImageError instead.
try:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
except AttributeError:  # older OpenCV builds without the logging module
    pass

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_EXTENSIONS",
    "Image",
    "encode_image",
    "format_for_path",
    "output_notes",
    "read_image",
    "same_file",
    "write_image",
]

#: Pillow's own decompression-bomb bound (2 x ``MAX_IMAGE_PIXELS`` = 178,956,970 pixels): above
#: this an image is refused unless the caller passes ``allow_large=True``.
DEFAULT_MAX_PIXELS = 2 * 89_478_485

#: Output formats by extension. MPO (the multi-picture JPEG some phones write) reads as JPEG.
FORMAT_EXTENSIONS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
_READABLE = {"PNG", "JPEG", "MPO", "TIFF", "WEBP", "BMP"}
_WRITABLE = {"PNG", "JPEG", "TIFF", "WEBP", "BMP"}
_EXT_FOR_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
_HOLDS_16_BIT = {"PNG", "TIFF"}
_HOLDS_ALPHA = {"PNG", "TIFF", "WEBP"}
_MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383, "PNG": 2**31 - 1, "TIFF": 2**32 - 1, "BMP": 2**31 - 1}

# Camera raw files: Pillow happily opens many of them as TIFF and returns the tiny embedded
# preview, which would be deblurred and written out as if it were the photo.
_RAW_EXTENSIONS = {
    ".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".iiq", ".k25", ".kdc",
    ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl",
    ".sr2", ".srf", ".srw", ".x3f",
}  # fmt: skip

_ORIENTATION_TAG = 0x0112
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
# IFD0 tags that describe the photo rather than the pixel layout: the only ones carried from a
# TIFF's own IFD into EXIF, and from EXIF into a TIFF we write (strip layout, compression and
# the like must come from the writer, never from the source).
_DESCRIPTIVE_IFD0_TAGS = {
    270, 271, 272, 274, 301, 305, 306, 315, 316, 318, 319, 33432, 18246, 18249,
    40091, 40092, 40093, 40094, 40095, _EXIF_IFD, _GPS_IFD,
}  # fmt: skip
_SUB_IFD_TAGS = {_EXIF_IFD, _GPS_IFD, _INTEROP_IFD}


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


# --------------------------------------------------------------------------------------------
# Reading


def read_image(
    src: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    allow_large: bool = False,
    max_pixels: int | None = None,
    name: str | None = None,
) -> Image:
    """Decode a PNG, JPEG, TIFF, WebP or BMP file (or its bytes, e.g. from stdin).

    Every way a user's file can be wrong becomes one `ImageError` line naming the file and the
    fix, because the CLI shows exactly that line. `max_pixels` (default `DEFAULT_MAX_PIXELS`)
    bounds the size so that a hostile or mistaken file cannot exhaust memory before the user
    has opted in with `allow_large`.
    """
    source: Path | None = None
    if isinstance(src, (bytes, bytearray, memoryview)):
        label = name or "<stdin>"
        data = bytes(src)
    else:
        source = Path(src)
        label = name or str(src)
        data = _read_file(source, label)
    if not data:
        raise ImageError(f"{label}: file is empty (0 bytes); re-export or re-download it")
    if source is not None and source.suffix.lower() in _RAW_EXTENSIONS:
        raise ImageError(
            f"{label}: camera raw files are not supported; develop it to a 16-bit TIFF or a PNG/JPEG first"
        )
    kind = _sniff(data)
    if kind is not None and kind not in _READABLE:
        raise ImageError(f"{label}: unsupported format {kind}; convert it to PNG, JPEG or TIFF first")

    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    pil = _open_pillow(data, label, kind, lift_bomb_guard=allow_large or limit > DEFAULT_MAX_PIXELS)
    if pil is None:  # a TIFF layout Pillow does not know (16-bit grey+alpha, ...): libtiff may
        return _read_tiff_direct(data, label, source, limit, allow_large)
    fmt = pil.format or kind or "?"
    if fmt not in _READABLE:
        raise ImageError(f"{label}: unsupported format {fmt}; convert it to PNG, JPEG or TIFF first")
    w, h = pil.size
    if fmt == "TIFF":  # Pillow >= 12 reports a TIFF's size already turned by its orientation
        w, h = int(pil.tag_v2.get(256, w)), int(pil.tag_v2.get(257, h))
    _check_size(w, h, limit, allow_large, label)

    frames = int(getattr(pil, "n_frames", 1) or 1)
    icc = pil.info.get("icc_profile") or None
    xmp = _as_bytes(pil.info.get("xmp") or pil.info.get("XML:com.adobe.xmp")) or _jpeg_xmp(pil)
    dpi = _dpi(pil.info.get("dpi"))
    tiff_exif: bytes | None = None
    orientation = 1
    if fmt == "TIFF":
        tiff_exif, orientation = _exif_from_tiff(data)
    depth = _source_bit_depth(data, pil, label)

    if fmt == "TIFF" and depth == 16:  # Pillow would cut it to 8 bits
        pil.close()
        return _read_tiff_direct(data, label, source, limit, allow_large, frames=frames)
    if depth == 16:
        arr, channels = _cv2_decode(data, h, w, _declared_grey(data, pil), label)
        pillow_oriented = False
    else:
        had_tag = fmt == "TIFF" and _ORIENTATION_TAG in getattr(pil, "tag_v2", {})
        arr, channels, icc = _decode_8bit(pil, label, icc)
        # Pillow >= 12 already applies a TIFF's orientation while loading and then drops the
        # tag; applying it again would rotate the photo twice.
        pillow_oriented = had_tag and _ORIENTATION_TAG not in getattr(pil, "tag_v2", {})
        turned = pillow_oriented and orientation in (5, 6, 7, 8)
        if arr.shape[:2] != ((w, h) if turned else (h, w)):
            raise ImageError(f"{label}: file is truncated or corrupt; re-export or re-download it")

    if fmt == "TIFF":
        exif = tiff_exif
    else:
        exif = _normalise_exif(pil.info.get("exif"))
        if exif is None and fmt == "PNG":
            exif = _png_exif(data, pil.info)
        orientation = _exif_orientation(exif)
    pil.close()

    if not pillow_oriented:
        arr = _orient(arr, orientation)
    return _build(arr, channels, depth, fmt, exif, icc, xmp, orientation, source, dpi, frames, label)


def _build(
    arr: np.ndarray,
    channels: str,
    depth: int,
    fmt: str,
    exif: bytes | None,
    icc: bytes | None,
    xmp: bytes | None,
    orientation: int,
    source: Path | None,
    dpi: tuple[float, float] | None,
    frames: int,
    label: str,
) -> Image:
    pixels, alpha = _to_float(arr, channels, depth)
    if icc is not None and _icc_space(icc) not in (b"RGB ", b"GRAY"):
        icc = None  # a CMYK/Lab profile describes data we no longer have
    return Image(
        pixels=pixels,
        alpha=alpha,
        bit_depth=depth,
        channels=channels,
        format="JPEG" if fmt == "MPO" else fmt,
        exif=exif,
        icc=icc,
        xmp=xmp,
        orientation=orientation,
        source=source,
        dpi=dpi,
        frames=1 if fmt == "MPO" else frames,
        name=label,
    )


def _check_size(w: int, h: int, limit: int, allow_large: bool, label: str) -> None:
    if w * h > limit and not allow_large:
        raise ImageError(
            f"{label}: image is {w}x{h} ({w * h / 1e6:.0f} MP), above the "
            f"{limit / 1e6:.0f} MP safety limit against decompression bombs; if you trust the "
            "file, use --allow-large"
        )
    if w <= 0 or h <= 0:
        raise ImageError(f"{label}: image has no pixels ({w}x{h}); re-export it")


def _tag_values(tag: _Tag | None) -> tuple[float, ...]:
    if tag is None:
        return ()
    fmt = {1: "B", 3: "H", 4: "I", 5: "I", 13: "I"}.get(tag.type)
    if fmt is None:
        return ()
    n = tag.count * (2 if tag.type == 5 else 1)
    vals = struct.unpack(f"<{n}{fmt}", tag.data[: n * struct.calcsize(fmt)])
    if tag.type == 5:
        return tuple(a / b if b else 0.0 for a, b in zip(vals[::2], vals[1::2], strict=True))
    return vals


def _read_tiff_direct(
    data: bytes, label: str, source: Path | None, limit: int, allow_large: bool, frames: int = 1
) -> Image:
    """Read a 16-bit TIFF, or one Pillow cannot open, via our own directory parser and decoder.

    Simple strip layouts are decoded here; the rest goes to libtiff through OpenCV, whose
    result is checked against the declared number of samples because it silently drops what it
    cannot represent.
    """
    head = _tiff_header(data)
    try:
        tags = {t.tag: t for t in _parse_ifd(data, head[0], head[1])} if head else {}
    except struct.error:
        tags = {}
    size = _tag_values(tags.get(256)), _tag_values(tags.get(257))
    if not size[0] or not size[1]:
        raise ImageError(f"{label}: file is truncated or corrupt (not a readable TIFF); re-export or re-download it")
    w, h = int(size[0][0]), int(size[1][0])
    _check_size(w, h, limit, allow_large, label)
    bits = _tag_values(tags.get(258)) or (1,)
    if 3 in _tag_values(tags.get(339)) or max(bits) not in (8, 16):
        raise ImageError(f"{label}: this TIFF sample format is not supported; save it as an 8- or 16-bit TIFF")
    photometric = (_tag_values(tags.get(262)) or (2,))[0]
    spp = int((_tag_values(tags.get(277)) or (1,))[0])
    arr = _decode_tiff_strips(data, head[0] if head else "<", tags, h, w, spp, label)
    if arr is not None and photometric in (1, 2) and spp in (1, 2, 3, 4):
        channels = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[spp]
        if (photometric == 1) != (spp <= 2):
            raise ImageError(f"{label}: this TIFF colour layout is not supported; save it as RGB(A) or grey")
        arr = arr[..., 0] if spp == 1 else arr
    else:
        arr, channels = _cv2_decode(data, h, w, photometric in (0, 1), label)
        if len(channels) != spp:  # OpenCV silently drops what it cannot represent (grey + alpha)
            raise ImageError(
                f"{label}: this TIFF layout ({spp} samples, {int(max(bits))}-bit) cannot be read; "
                "save it as RGB/RGBA or grey TIFF"
            )
    depth = 16 if arr.dtype.itemsize == 2 else 8
    icc = tags[34675].data if 34675 in tags else None
    xmp = tags[700].data if 700 in tags else None
    res = _tag_values(tags.get(282)), _tag_values(tags.get(283))
    unit = (_tag_values(tags.get(296)) or (2,))[0]
    dpi = None
    if res[0] and res[1] and unit in (2, 3):
        scale = 2.54 if unit == 3 else 1.0
        dpi = _dpi((res[0][0] * scale, res[1][0] * scale))
    exif, orientation = _exif_from_tiff(data)
    return _build(
        _orient(arr, orientation), channels, depth, "TIFF", exif, icc, xmp, orientation, source, dpi, frames, label
    )


def _decode_tiff_strips(
    data: bytes, endian: str, tags: dict[int, _Tag], h: int, w: int, spp: int, label: str
) -> np.ndarray | None:
    """Decode the plain strip layouts we write ourselves (none/Deflate, predictor 1/2, chunky).

    Needed because neither Pillow nor OpenCV reads 16-bit grey+alpha; anything fancier (tiles,
    LZW, planar) returns None and goes to libtiff via OpenCV.
    """
    bits = {int(b) for b in _tag_values(tags.get(258))}
    compression = (_tag_values(tags.get(259)) or (1,))[0]
    predictor = (_tag_values(tags.get(317)) or (1,))[0]
    planar = (_tag_values(tags.get(284)) or (1,))[0]
    offsets, counts = _tag_values(tags.get(273)), _tag_values(tags.get(279))
    if (
        len(bits) != 1
        or bits.pop() not in (8, 16)
        or compression not in (1, 8, 32946)
        or predictor not in (1, 2)
        or (planar != 1 and spp > 1)
        or not offsets
        or len(offsets) != len(counts)
    ):
        return None
    depth = int(_tag_values(tags.get(258))[0])
    dtype = np.dtype(np.uint8) if depth == 8 else np.dtype(endian + "u2")
    parts = []
    try:
        for off, cnt in zip(offsets, counts, strict=True):
            raw = data[int(off) : int(off) + int(cnt)]
            parts.append(zlib.decompress(raw) if compression != 1 else raw)
    except zlib.error as exc:
        raise _corrupt(label, "TIFF", exc) from None
    need = h * w * spp * dtype.itemsize
    buf = b"".join(parts)
    if len(buf) < need:
        raise ImageError(f"{label}: file is truncated or corrupt (TIFF ended early); re-export or re-download it")
    arr = np.frombuffer(buf, dtype, count=h * w * spp).reshape(h, w, spp).astype(dtype.newbyteorder("="))
    if predictor == 2:
        arr = np.cumsum(arr, axis=1, dtype=arr.dtype)  # unsigned arithmetic wraps like the encoder
    return arr


def _read_file(path: Path, label: str) -> bytes:
    if not path.exists():
        hint = "it is a broken link" if path.is_symlink() else "check the path and spelling"
        raise ImageError(f"{label}: no such file; {hint}")
    if path.is_dir():
        raise ImageError(f"{label}: is a folder, not an image; give the path of an image file")
    try:
        return path.read_bytes()
    except PermissionError:
        raise ImageError(f"{label}: permission denied; check the file's read permission") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot read file ({exc.strerror or exc}); check the disk") from None


_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
    (b"II+\x00", 0, "TIFF"),
    (b"MM\x00+", 0, "TIFF"),
    (b"BM", 0, "BMP"),
    (b"GIF8", 0, "GIF"),
    (b"8BPS", 0, "PSD"),
    (b"%PDF", 0, "PDF"),
    (b"\xff\x0a", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", 0, "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
    (b"\xff\x4f\xff\x51", 0, "JPEG 2000"),
    (b"\x00\x00\x01\x00", 0, "ICO"),
    (b"qoif", 0, "QOI"),
    (b"\x76\x2f\x31\x01", 0, "OpenEXR"),
    (b"#?RADIANCE", 0, "HDR"),
]


def _sniff(data: bytes) -> str | None:
    """Name the format from magic bytes so errors can say "unsupported HEIC" or "corrupt PNG"."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"):
            return "HEIC"
        return None
    for magic, off, kind in _MAGIC:
        if data[off : off + len(magic)] == magic:
            return kind
    return None


_BOMB_LOCK = threading.Lock()


def _open_pillow(data: bytes, label: str, kind: str | None, *, lift_bomb_guard: bool) -> PILImage.Image | None:
    """Open lazily (header only) so the size check happens before any pixel is decoded.

    Returns None for a TIFF that Pillow cannot identify, which libtiff may still read.
    """

    def attempt() -> PILImage.Image:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return PILImage.open(io.BytesIO(data))

    try:
        try:
            return attempt()
        except PILImage.DecompressionBombError:
            if not lift_bomb_guard:
                raise
            # Pillow's guard is a process-wide setting; lift it only for this one open.
            with _BOMB_LOCK:
                saved = PILImage.MAX_IMAGE_PIXELS
                PILImage.MAX_IMAGE_PIXELS = None
                try:
                    return attempt()
                finally:
                    PILImage.MAX_IMAGE_PIXELS = saved
    except PILImage.DecompressionBombError:
        raise ImageError(
            f"{label}: image is above the {DEFAULT_MAX_PIXELS / 1e6:.0f} MP safety limit against "
            "decompression bombs; if you trust the file, use --allow-large"
        ) from None
    except UnidentifiedImageError:
        if kind == "TIFF":
            return None
        if kind in _READABLE:
            raise ImageError(
                f"{label}: file is truncated or corrupt (not a readable {kind}); re-export or re-download it"
            ) from None
        raise ImageError(
            f"{label}: not an image file (or an unknown format); give a PNG, JPEG, TIFF, WebP or BMP"
        ) from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise _corrupt(label, kind, exc) from None


def _jpeg_xmp(pil: PILImage.Image) -> bytes | None:
    """Older Pillow keeps a JPEG's XMP only in the raw APP1 segments."""
    for marker, payload in getattr(pil, "applist", []):
        if marker == "APP1" and payload.startswith(b"http://ns.adobe.com/xap/1.0/\x00"):
            return payload[29:] or None
    return None


_EARLY_END = ("truncat", "cannot load this image", "broken data stream", "premature end", "not enough data")


def _corrupt(label: str, fmt: str | None, exc: BaseException) -> ImageError:
    """Decoders word an early end of file many ways; say it the one way a user understands."""
    detail = _short(exc)
    if fmt and any(k in detail.lower() for k in _EARLY_END):
        detail = f"{'JPEG' if fmt == 'MPO' else fmt} ended early"
    return ImageError(f"{label}: file is truncated or corrupt ({detail}); re-export or re-download it")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def _source_bit_depth(data: bytes, pil: PILImage.Image, label: str) -> int:
    """Bit depth as the file declares it: never guessed from pixel values."""
    if pil.format == "PNG" and data[12:16] == b"IHDR":
        return 16 if data[24] == 16 else 8
    if pil.format == "TIFF":
        tags = pil.tag_v2
        bits = tags.get(258, (1,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        fmt = tags.get(339, (1,))
        fmt = fmt if isinstance(fmt, tuple) else (fmt,)
        if 3 in fmt or max(bits) not in (1, 2, 4, 8, 16):
            kind = "floating-point" if 3 in fmt else f"{max(bits)}-bit"
            raise ImageError(f"{label}: {kind} TIFF is not supported; save it as an 8- or 16-bit TIFF")
        return 16 if max(bits) > 8 else 8
    if pil.mode.startswith("I;16"):
        return 16
    if pil.mode in ("I", "F"):
        raise ImageError(f"{label}: {pil.mode}-mode {pil.format} is not supported; save it as 8 or 16-bit")
    return 8


def _cv2_decode(data: bytes, h: int, w: int, grey: bool, label: str) -> tuple[np.ndarray, str]:
    """Decode with OpenCV, which keeps all 16 bits (Pillow truncates 16-bit RGB to 8).

    OpenCV's TIFF reader applies the orientation tag whatever the flags say (PNG's eXIf it
    ignores), so a TIFF is handed over with the tag set to 1: orientation is applied in exactly
    one place, `_orient`.
    """
    buf = bytearray(data) if data[:4] in (b"II*\x00", b"MM\x00*") else None
    if buf is not None and _patch_orientation(buf, 1):
        data = bytes(buf)
    del buf
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype not in (np.uint8, np.uint16) or arr.shape[:2] != (h, w):
        raise ImageError(f"{label}: file is truncated or corrupt (pixel data unreadable); re-export or re-download it")
    if arr.ndim == 2:
        return arr, "L"
    c = arr.shape[2]
    if c == 1:
        return arr[..., 0], "L"
    if c == 2:
        return arr, "LA"
    if grey:
        return (arr[..., [0, 3]] if c == 4 else arr[..., 0]), ("LA" if c == 4 else "L")
    if c == 3:
        return arr[..., ::-1], "RGB"
    if c == 4:
        return arr[..., [2, 1, 0, 3]], "RGBA"
    raise ImageError(f"{label}: {c}-channel images are not supported; save it as RGB or RGBA")


def _declared_grey(data: bytes, pil: PILImage.Image) -> bool:
    if pil.format == "PNG" and data[12:16] == b"IHDR":
        return data[25] in (0, 4)
    return pil.mode.startswith(("I", "L"))


def _decode_8bit(pil: PILImage.Image, label: str, icc: bytes | None) -> tuple[np.ndarray, str, bytes | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pil.load()
    except (OSError, SyntaxError, ValueError, IndexError, struct.error, zlib.error) as exc:
        raise _corrupt(label, pil.format, exc) from None
    im, mode = pil, pil.mode
    transparent = "transparency" in pil.info
    if mode in ("P", "PA"):
        im = pil.convert("RGBA" if (mode == "PA" or transparent) else "RGB")
    elif mode == "1":
        im = pil.convert("L")
    elif mode == "L" and transparent:
        im = pil.convert("LA")
    elif mode == "RGB" and transparent:
        im = pil.convert("RGBA")
    elif mode in ("La", "RGBa", "RGBX"):
        im = pil.convert({"La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}[mode])
    elif mode == "CMYK":
        im, icc = _cmyk_to_rgb(pil, icc)
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        try:
            im = pil.convert("RGB")
        except (ValueError, OSError):
            raise ImageError(f"{label}: {mode} colour mode is not supported; save it as RGB") from None
    return np.asarray(im), im.mode, icc


def _cmyk_to_rgb(pil: PILImage.Image, icc: bytes | None) -> tuple[PILImage.Image, bytes | None]:
    """Print-ready CMYK is converted through its own profile when it has one."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    if icc is not None and _icc_space(icc) == b"CMYK":
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(pil, src, srgb, outputMode="RGB")
            if out is not None:
                return out, srgb.tobytes()
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass
    return pil.convert("RGB"), None


def _png_exif(data: bytes, info: dict) -> bytes | None:
    """EXIF stored after the image data, or as ImageMagick's hex text, without decoding pixels."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"eXIf":
            return _normalise_exif(data[pos + 8 : pos + 8 + length])
        if kind == b"IEND":
            break
        pos += 12 + length
    raw = info.get("Raw profile type exif")
    if isinstance(raw, str):
        try:
            return _normalise_exif(bytes.fromhex("".join(raw.split("\n")[3:])))
        except ValueError:
            return None
    return None


def _to_float(arr: np.ndarray, channels: str, depth: int) -> tuple[np.ndarray, np.ndarray | None]:
    scale = np.float32(255.0 if depth == 8 else 65535.0)
    alpha: np.ndarray | None = None
    if channels in ("LA", "RGBA"):
        alpha = np.divide(arr[..., -1], scale, dtype=np.float32)
        arr = arr[..., :-1]
    if channels in ("L", "LA"):
        grey = arr if arr.ndim == 2 else arr[..., 0]
        pixels = np.empty(grey.shape + (3,), np.float32)
        np.divide(grey, scale, out=pixels[..., 0], dtype=np.float32)
        pixels[..., 1] = pixels[..., 0]
        pixels[..., 2] = pixels[..., 0]
    else:
        pixels = np.divide(arr, scale, dtype=np.float32)
    return np.ascontiguousarray(pixels), (None if alpha is None else np.ascontiguousarray(alpha))


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, bytes):
        return value or None
    if isinstance(value, str):
        return value.encode("utf-8") or None
    return None


def _dpi(value: object) -> tuple[float, float] | None:
    try:
        x, y = value  # type: ignore[misc]
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        return None
    if not (x > 0 and y > 0):
        return None
    # PNG stores pixels per metre: 300 dpi comes back as 299.9994
    return tuple(float(round(v)) if abs(v - round(v)) < 0.01 else v for v in (x, y))  # type: ignore[return-value]


def _icc_space(icc: bytes) -> bytes:
    return icc[16:20] if len(icc) >= 20 else b""


# --------------------------------------------------------------------------------------------
# Orientation


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


# --------------------------------------------------------------------------------------------
# EXIF / TIFF directories, handled at the byte level so nothing is lost or re-typed


@dataclass
class _Tag:
    tag: int
    type: int
    count: int
    data: bytes  # little-endian value bytes
    sub: list[_Tag] | None = None  # for pointers to Exif/GPS/Interop directories


_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_SWAP_UNIT = {3: 2, 4: 4, 5: 4, 8: 2, 9: 4, 10: 4, 11: 4, 12: 8, 13: 4}


def _normalise_exif(value: object) -> bytes | None:
    """Always ``b"Exif\\0\\0" + TIFF`` so every writer gets the same thing (WebP omits the prefix)."""
    data = _as_bytes(value)
    if not data:
        return None
    if data.startswith(b"Exif\x00\x00"):
        return data
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return b"Exif\x00\x00" + data
    return None


def _parse_ifd(buf: bytes, endian: str, offset: int, depth: int = 0) -> list[_Tag]:
    """Read one directory, keeping raw value bytes (converted to little-endian)."""
    if depth > 3 or offset < 8 or offset + 2 > len(buf):
        return []
    (n,) = struct.unpack_from(endian + "H", buf, offset)
    tags: list[_Tag] = []
    for i in range(n):
        pos = offset + 2 + 12 * i
        if pos + 12 > len(buf):
            break
        tag, typ, count = struct.unpack_from(endian + "HHI", buf, pos)
        size = _TYPE_SIZE.get(typ)
        if size is None:
            continue
        nbytes = size * count
        if nbytes <= 4:
            raw = buf[pos + 8 : pos + 8 + nbytes]
        else:
            (ptr,) = struct.unpack_from(endian + "I", buf, pos + 8)
            if ptr + nbytes > len(buf):
                continue
            raw = buf[ptr : ptr + nbytes]
        if endian == ">" and typ in _SWAP_UNIT:
            unit = _SWAP_UNIT[typ]
            raw = np.frombuffer(raw, f">u{unit}").astype(f"<u{unit}").tobytes()
        sub = None
        if tag in _SUB_IFD_TAGS and count == 1 and typ in (4, 13):
            sub = _parse_ifd(buf, endian, struct.unpack("<I", raw)[0], depth + 1)
        tags.append(_Tag(tag, typ, count, raw, sub))
    return tags


def _tiff_header(buf: bytes) -> tuple[str, int] | None:
    if buf[:4] == b"II*\x00":
        return "<", struct.unpack_from("<I", buf, 4)[0]
    if buf[:4] == b"MM\x00*":
        return ">", struct.unpack_from(">I", buf, 4)[0]
    return None


def _serialize_ifd(tags: list[_Tag], base: int) -> bytes:
    """Little-endian directory placed at file offset `base`, with its values and sub-IFDs after it."""
    tags = sorted(tags, key=lambda t: t.tag)
    head = 2 + 12 * len(tags) + 4
    entries = bytearray(struct.pack("<H", len(tags)))
    extra = bytearray()
    for t in tags:
        where = base + head + len(extra)
        if t.sub is not None:
            block = _serialize_ifd(t.sub, where)
            entries += struct.pack("<HHII", t.tag, 4, 1, where)
            extra += block
        elif len(t.data) <= 4:
            entries += struct.pack("<HHI", t.tag, t.type, t.count) + t.data.ljust(4, b"\0")
        else:
            entries += struct.pack("<HHII", t.tag, t.type, t.count, where)
            extra += t.data
        if len(extra) % 2:
            extra += b"\0"
    entries += b"\0\0\0\0"
    return bytes(entries + extra)


def _exif_blob(tags: list[_Tag]) -> bytes:
    return b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + _serialize_ifd(tags, 8)


def _exif_tags(exif: bytes | None) -> list[_Tag]:
    if not exif:
        return []
    body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    head = _tiff_header(body)
    if head is None:
        return []
    try:
        return _parse_ifd(body, head[0], head[1])
    except struct.error:
        return []


def _exif_orientation(exif: bytes | None) -> int:
    for t in _exif_tags(exif):
        if t.tag == _ORIENTATION_TAG and t.type == 3 and len(t.data) >= 2:
            value = struct.unpack("<H", t.data[:2])[0]
            return value if 1 <= value <= 8 else 1
    return 1


def _exif_from_tiff(data: bytes) -> tuple[bytes | None, int]:
    """A TIFF's EXIF is its own first directory: keep only the descriptive tags from it."""
    head = _tiff_header(data)
    if head is None:
        return None, 1
    try:
        tags = [t for t in _parse_ifd(data, head[0], head[1]) if t.tag in _DESCRIPTIVE_IFD0_TAGS]
    except struct.error:
        return None, 1
    if not tags:
        return None, 1
    blob = _exif_blob(tags)
    return blob, _exif_orientation(blob)


def _patch_orientation(body: bytearray, value: int, *, drop_thumbnail: bool = False) -> bool:
    """Overwrite IFD0's orientation value in a TIFF structure in place; False if there is none.

    `drop_thumbnail` also unlinks IFD1 (the EXIF thumbnail): it shows the unprocessed photo in
    the old stored orientation, so after the pixels are turned upright it would display sideways.
    """
    head = _tiff_header(bytes(body[:8]))
    if head is None:
        return False
    endian, ifd = head
    found = False
    try:
        (n,) = struct.unpack_from(endian + "H", body, ifd)
        for i in range(n):
            pos = ifd + 2 + 12 * i
            tag, typ, count = struct.unpack_from(endian + "HHI", body, pos)
            if tag == _ORIENTATION_TAG and typ == 3 and count == 1:
                struct.pack_into(endian + "H", body, pos + 8, value)
                found = True
        if drop_thumbnail:
            struct.pack_into(endian + "I", body, ifd + 2 + 12 * n, 0)
    except struct.error:
        return False
    return found


def _exif_for_output(exif: bytes | None, value: int) -> bytes | None:
    """The source EXIF with orientation set to `value` and no stale thumbnail.

    Patched in place so every other byte (maker notes with their absolute offsets!) is kept.
    """
    if not exif:
        return None
    body = bytearray(exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    if _tiff_header(bytes(body[:8])) is None:
        return None
    if _patch_orientation(body, value, drop_thumbnail=True) or value == 1:
        return b"Exif\x00\x00" + bytes(body)  # no tag at all means upright already
    tags = [t for t in _exif_tags(exif) if t.tag != _ORIENTATION_TAG]
    tags.append(_Tag(_ORIENTATION_TAG, 3, 1, struct.pack("<H", value)))
    return _exif_blob(tags)


_XMP_ORIENTATION = (
    re.compile(rb"(tiff:Orientation\s*=\s*[\"'])\s*\d+\s*([\"'])"),
    re.compile(rb"(<tiff:Orientation>)\s*\d+\s*(</tiff:Orientation>)"),
)


def _set_xmp_orientation(xmp: bytes | None, value: int) -> bytes | None:
    if not xmp:
        return None
    for pattern in _XMP_ORIENTATION:
        xmp = pattern.sub(lambda m: m.group(1) + str(value).encode() + m.group(2), xmp)
    return xmp


# --------------------------------------------------------------------------------------------
# Writing


def format_for_path(path: str | os.PathLike[str], format: str | None = None) -> str:
    """Output format from an explicit name or the extension, as an `ImageError` if neither works."""
    if format:
        fmt = format.upper().lstrip(".")
        fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
        if fmt not in _WRITABLE:
            raise ImageError(f"{path}: cannot write format {format}; use png, jpg, tif, webp or bmp")
        return fmt
    ext = Path(path).suffix.lower()
    if ext in FORMAT_EXTENSIONS:
        return FORMAT_EXTENSIONS[ext]
    what = f"extension {ext}" if ext else "no extension"
    raise ImageError(f"{path}: cannot tell the output format ({what}); end the name in .png, .jpg, .tif, .webp or .bmp")


@dataclass
class _Plan:
    format: str
    depth: int
    grey: bool
    alpha: bool
    icc: bytes | None
    notes: list[str]


def _plan(img: Image, fmt: str, bit_depth: int | None) -> _Plan:
    notes: list[str] = []
    depth = bit_depth or img.bit_depth
    if depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {depth}")
    if depth == 16 and fmt not in _HOLDS_16_BIT:
        notes.append(
            f"{fmt} holds 8 bits per channel: the 16-bit photo is written as 8-bit; use .png or .tif to keep 16 bits"
        )
        depth = 8
    alpha = img.alpha is not None
    if alpha and fmt not in _HOLDS_ALPHA:
        notes.append(
            f"{fmt} has no usable transparency: the alpha channel is dropped; use .png, .tif or .webp to keep it"
        )
        alpha = False
    grey = img.is_grey
    if grey and fmt == "WEBP":
        notes.append("WebP has no greyscale mode: the grey photo is stored as RGB")
        grey = False
    icc = img.icc
    if icc is not None and _icc_space(icc) != (b"GRAY" if grey else b"RGB "):
        notes.append("the colour profile does not match the output's colour mode and was left out")
        icc = None
    if fmt == "BMP" and (img.exif or img.icc or img.xmp):
        notes.append("BMP cannot store EXIF, ICC or XMP: metadata is left out; use .png, .jpg or .tif to keep it")
    if img.frames > 1:
        notes.append(f"only the first of {img.frames} frames/pages was processed and written")
    return _Plan(fmt, depth, grey, alpha, icc if fmt != "BMP" else None, notes)


def output_notes(
    img: Image, path: str | os.PathLike[str], *, format: str | None = None, bit_depth: int | None = None
) -> list[str]:
    """What will be lost or changed when `img` is written to `path`, known before the model runs."""
    return list(_plan(img, format_for_path(path, format), bit_depth).notes)


def same_file(a: str | os.PathLike[str] | None, b: str | os.PathLike[str] | None) -> bool:
    """True when two paths name one file (links, `..` and case-insensitive disks included)."""
    if a is None or b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


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
    if img.source is not None and not overwrite_source and same_file(img.source, out):
        raise ImageError(f"{out}: this is the input file; choose a different output name (the original is kept)")
    if out.is_dir():
        raise ImageError(f"{out}: is a folder; give a file name for the output")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ImageError(f"{out}: folder {parent} does not exist; create it first")
    plan = _plan(img, fmt, bit_depth)
    _atomic_write(out, lambda f: _encode_into(f, img, pixels, plan, quality, keep_orientation, str(out)))
    return plan.notes


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


def _atomic_write(path: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Temp file next to the target, fsync, rename: readers see the old file or the whole new one."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    except PermissionError:
        raise ImageError(f"{path}: permission denied; choose a folder you can write to") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot create the output ({exc.strerror or exc})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            if exc.errno == errno.ENOSPC:
                raise ImageError(f"{path}: disk full; free some space or write elsewhere") from None
            if isinstance(exc, PermissionError):
                raise ImageError(f"{path}: permission denied; choose a file you can write") from None
            raise ImageError(f"{path}: cannot write the output ({exc.strerror or exc})") from None
        raise
    _fsync_dir(parent)


def _new_file_mode(path: Path) -> int:
    """mkstemp makes 0600 files; a photo should get the usual permissions (or keep the old ones)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(parent: Path) -> None:
    try:
        fd = os.open(parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def _encode_into(
    f: BinaryIO, img: Image, pixels: np.ndarray, plan: _Plan, quality: int, keep_orientation: str, label: str
) -> None:
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None].repeat(3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be HxWx3, got shape {pixels.shape}")
    h, w = pixels.shape[:2]
    if plan.alpha and img.alpha is not None and img.alpha.shape != (h, w):
        raise ValueError(f"pixels are {w}x{h} but the alpha channel is {img.alpha.shape[1]}x{img.alpha.shape[0]}")
    fmt = plan.format
    if max(h, w) > _MAX_SIDE[fmt]:
        raise ImageError(
            f"{label}: {fmt} cannot hold an image {w}x{h} (limit {_MAX_SIDE[fmt]} px a side); use .png or .tif"
        )

    planes = [
        _quantize(_grey(pixels), plan.depth, label)[..., None] if plan.grey else _quantize(pixels, plan.depth, label)
    ]
    if plan.alpha and img.alpha is not None:
        planes.append(_quantize(img.alpha, plan.depth, label)[..., None])
    arr = planes[0] if len(planes) == 1 else np.concatenate(planes, axis=2)
    del planes

    tag = 1
    if keep_orientation == "original" and img.orientation != 1:
        arr = np.ascontiguousarray(_unorient(arr, img.orientation))
        tag = img.orientation
    keep_meta = fmt != "BMP"
    exif = _exif_for_output(img.exif, tag) if keep_meta else None
    xmp = _set_xmp_orientation(img.xmp, tag) if keep_meta else None

    if fmt == "TIFF":
        _write_tiff(f, arr, grey=plan.grey, icc=plan.icc, exif=exif, xmp=xmp, dpi=img.dpi, orientation=tag)
    elif fmt == "PNG" and plan.depth == 16:
        _write_png16(f, arr, grey=plan.grey, icc=plan.icc, exif=exif, xmp=xmp, dpi=img.dpi)
    else:
        _write_pillow(f, arr, fmt, plan, quality=quality, exif=exif, xmp=xmp, dpi=img.dpi, label=label)


def _pil_from(arr: np.ndarray) -> PILImage.Image:
    bands = [PILImage.fromarray(np.ascontiguousarray(arr[..., i])) for i in range(arr.shape[2])]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[len(bands)]
    return bands[0] if mode == "L" else PILImage.merge(mode, bands)


def _write_pillow(
    f: BinaryIO,
    arr: np.ndarray,
    fmt: str,
    plan: _Plan,
    *,
    quality: int,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
    label: str,
) -> None:
    im = _pil_from(arr)
    opts: dict[str, object] = {}
    if dpi:
        opts["dpi"] = dpi
    if plan.icc:
        opts["icc_profile"] = plan.icc
    if exif:
        opts["exif"] = exif
    if fmt == "JPEG":
        if exif and len(exif) > 65533:
            plan.notes.append("the EXIF block is too large for JPEG (64 KB) and was left out")
            opts.pop("exif")
        opts.update(quality=int(quality), subsampling=0)
        buf = io.BytesIO()
        im.save(buf, "JPEG", **opts)
        data = buf.getvalue()
        if xmp:
            data = _jpeg_with_xmp(data, xmp, plan.notes)
        f.write(data)
        return
    if fmt == "PNG":
        if xmp:
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"), zip=False)
            opts["pnginfo"] = info
        im.save(f, "PNG", **opts)
    elif fmt == "WEBP":
        if xmp:
            opts["xmp"] = xmp
        opts.update(quality=int(min(quality, 100)), lossless=quality >= 100, exact=True, method=4)
        im.save(f, "WEBP", **opts)
    elif fmt == "BMP":
        im.save(f, "BMP", **({"dpi": dpi} if dpi else {}))
    else:  # pragma: no cover - _plan only produces the formats above
        raise ImageError(f"{label}: cannot write {fmt}")


def _jpeg_with_xmp(data: bytes, xmp: bytes, notes: list[str]) -> bytes:
    """Insert an XMP APP1 segment after the JFIF/EXIF segments (Pillow < 11 cannot write one)."""
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + xmp
    if len(payload) + 2 > 0xFFFF:
        notes.append("the XMP block is too large for JPEG (64 KB) and was left out")
        return data
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] in (0xE0, 0xE1, 0xE2):
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return data[:pos] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[pos:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _up_filter(rows: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """PNG filter type 2 (difference to the row above) on a block of byte rows.

    Paeth compresses photos only 1-2 % better but costs two orders of magnitude more in numpy.
    """
    filtered = rows.copy()
    filtered[0] -= prev
    filtered[1:] -= rows[:-1]
    return np.concatenate([np.full((rows.shape[0], 1), 2, np.uint8), filtered], axis=1)


def _write_png16(
    f: BinaryIO,
    arr: np.ndarray,
    *,
    grey: bool,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
) -> None:
    """16-bit PNG with metadata, streamed in row blocks so a 100 MP panorama needs little extra memory."""
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    f.write(b"\x89PNG\r\n\x1a\n")
    f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)))
    if icc:
        f.write(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        ppm = [max(1, round(d / 0.0254)) for d in dpi]
        f.write(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        f.write(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    if xmp:
        f.write(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
    bpp = 2 * c
    raw = arr.reshape(h, w * c)
    prev = np.zeros(w * bpp, np.uint8)
    comp = zlib.compressobj(6)
    pending = bytearray()
    step = max(1, (1 << 21) // (w * bpp))
    for r in range(0, h, step):
        rows = raw[r : r + step].astype(">u2").view(np.uint8).reshape(-1, w * bpp)
        pending += comp.compress(_up_filter(rows, prev).tobytes())
        prev = rows[-1].copy()
        if len(pending) >= 1 << 20:
            f.write(_png_chunk(b"IDAT", bytes(pending)))
            pending.clear()
    pending += comp.flush()
    f.write(_png_chunk(b"IDAT", bytes(pending)))
    f.write(_png_chunk(b"IEND", b""))


def _short_tag(tag: int, *values: int) -> _Tag:
    return _Tag(tag, 3, len(values), struct.pack(f"<{len(values)}H", *values))


def _long_tag(tag: int, values: list[int]) -> _Tag:
    return _Tag(tag, 4, len(values), struct.pack(f"<{len(values)}I", *values))


def _rational_tag(tag: int, value: float) -> _Tag:
    return _Tag(tag, 5, 1, struct.pack("<II", max(0, round(value * 1000)), 1000))


def _write_tiff(
    f: BinaryIO,
    arr: np.ndarray,
    *,
    grey: bool,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    dpi: tuple[float, float] | None,
    orientation: int,
) -> None:
    """Baseline little-endian TIFF, Adobe Deflate + horizontal predictor, for 8- and 16-bit.

    Written here rather than by Pillow because Pillow has no 16-bit RGB mode and its TIFF
    loader/saver handles orientation differently between versions. Strip data goes first and
    the directory last, so the strips can be streamed before their sizes are known.
    """
    h, w, c = arr.shape
    bits = arr.dtype.itemsize * 8
    base = f.tell()
    f.write(b"II*\x00\x00\x00\x00\x00")
    row_bytes = w * c * arr.dtype.itemsize
    rows_per_strip = max(1, min(h, (256 * 1024) // max(1, row_bytes)))
    offsets: list[int] = []
    counts: list[int] = []
    comp_dtype = "<u2" if bits == 16 else np.uint8
    for r in range(0, h, rows_per_strip):
        blk = arr[r : r + rows_per_strip].astype(comp_dtype)
        diff = blk.copy()
        diff[:, 1:] -= blk[:, :-1]  # predictor 2: per-sample difference, wrapping like the reader
        data = zlib.compress(diff.tobytes(), 6)
        offsets.append(f.tell() - base)
        counts.append(len(data))
        f.write(data)
        if len(data) % 2:
            f.write(b"\0")
    ifd_at = f.tell() - base
    if ifd_at > 2**32 - 2**20:
        raise ImageError("the TIFF would exceed 4 GB; write a PNG instead or reduce the size")

    tags = {t.tag: t for t in _exif_tags(exif) if t.tag in _DESCRIPTIVE_IFD0_TAGS}
    layout = [
        _long_tag(256, [w]),
        _long_tag(257, [h]),
        _short_tag(258, *([bits] * c)),
        _short_tag(259, 8),
        _short_tag(262, 1 if grey else 2),
        _long_tag(273, offsets),
        _short_tag(274, orientation),
        _short_tag(277, c),
        _long_tag(278, [rows_per_strip]),
        _long_tag(279, counts),
        _short_tag(284, 1),
        _short_tag(317, 2),
        _short_tag(339, *([1] * c)),
    ]
    if c in (2, 4):
        layout.append(_short_tag(338, 2))  # unassociated alpha: stored untouched, not premultiplied
    if dpi:
        layout += [_rational_tag(282, dpi[0]), _rational_tag(283, dpi[1]), _short_tag(296, 2)]
    if xmp:
        layout.append(_Tag(700, 1, len(xmp), xmp))
    if icc:
        layout.append(_Tag(34675, 7, len(icc), icc))
    for t in layout:
        tags[t.tag] = t
    f.write(_serialize_ifd(list(tags.values()), ifd_at))
    end = f.tell()
    f.seek(base + 4)
    f.write(struct.pack("<I", ifd_at))
    f.seek(end)
