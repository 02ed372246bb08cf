"""Decoding a photo file (or its bytes) into an `Image`, and every way that can fail as one line.

Pillow opens the file lazily so the size check runs before any pixel is decoded; 8-bit data is
decoded by Pillow, 16-bit data by OpenCV (Pillow reduces 16-bit RGB(A) to 8 bits) or, for the
plain TIFF strip layouts we write ourselves, by `_decode_tiff_strips`. Orientation is applied in
exactly one place, `_orient`, so no path can turn a photo twice.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageCms, UnidentifiedImageError

from deblurcli.errors import ImageError

from .formats import RAW_EXTENSIONS, names_for_message, readable, sniff, unusable, video_container
from .image import Image, _orient
from .integrity import check_png_rows, png_interlaced, refuse_impossible_size
from .metadata import (
    _ORIENTATION_TAG,
    _as_bytes,
    _dpi,
    _exif_from_tiff,
    _exif_orientation,
    _icc_space,
    _normalise_exif,
    _parse_ifd,
    _patch_orientation,
    _Tag,
    _tag_values,
    _tiff_header,
    iso_cicp,
)

#: Pillow's own decompression-bomb bound (2 x ``MAX_IMAGE_PIXELS`` = 178,956,970 pixels): above
#: this an image is refused unless the caller passes ``allow_large=True``.
DEFAULT_MAX_PIXELS = 2 * 89_478_485

_CV2: Any = None


def _cv2() -> Any:
    """OpenCV, imported on first use: only 16-bit and unusual TIFF files need it, and it is slow to load."""
    global _CV2
    if _CV2 is None:
        import cv2

        # OpenCV's own warnings (e.g. libtiff's about ExtraSamples) go straight to stderr and would
        # break the one-line-per-problem rule; every real failure surfaces as an ImageError instead.
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:  # older OpenCV builds without the logging module
            pass
        _CV2 = cv2
    return _CV2


def unreadable(label: str, kind: str | None, source: Path | None) -> str | None:
    """Why a file of format `kind` (as `sniff` names it) cannot be read here, as the one-line error.

    Shared with the run planner, so that `deblur run IMG.HEIC` names the missing plug-in before
    anything is planned for the output.
    """
    if (source is not None and source.suffix.lower() in RAW_EXTENSIONS) or (kind or "").endswith(" raw"):
        return f"{label}: camera raw files are not supported; develop it to a 16-bit TIFF or a PNG/JPEG first"
    if kind is None or readable(kind) is not None:
        return None
    missing = unusable(kind)
    if missing is not None:
        return f"{label}: reading {missing.label} needs {missing.needs} (or convert it to PNG, JPEG or TIFF)"
    return f"{label}: unsupported format {kind}; convert it to PNG, JPEG or TIFF first"


def unreadable_file(path: Path) -> str | None:
    """`unreadable` from the file's first bytes, so a plan can refuse it before naming an output."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None  # the reader reports it, with the whole story
    return unreadable(str(path), sniff(head), path)


def read_image(
    src: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    allow_large: bool = False,
    max_pixels: int | None = None,
    name: str | None = None,
) -> Image:
    """Decode a PNG, JPEG, TIFF, WebP, BMP, AVIF or HEIC file (or its bytes, e.g. from stdin).

    Every way a user's file can be wrong becomes one `ImageError` line naming the file and the
    fix, because the CLI shows exactly that line. `max_pixels` (default `DEFAULT_MAX_PIXELS`)
    bounds the size so that a hostile or mistaken file cannot exhaust memory before the user
    has opted in with `allow_large`.
    """
    data, label, source = _input_bytes(src, name)
    kind = _refuse_unreadable(data, label, source)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    pil = _open_pillow(data, label, kind, lift_bomb_guard=allow_large or limit > DEFAULT_MAX_PIXELS)
    if pil is None:  # a TIFF layout Pillow does not know (16-bit grey+alpha, ...): libtiff may
        return _read_tiff_direct(data, label, source, limit, allow_large)
    fmt = pil.format or kind or "?"
    if readable(fmt) is None:
        raise ImageError(unreadable(label, fmt, None) or f"{label}: unsupported format {fmt}")
    w, h = pil.size
    if fmt == "TIFF":  # Pillow >= 12 reports a TIFF's size already turned by its orientation
        w, h = int(pil.tag_v2.get(256, w)), int(pil.tag_v2.get(257, h))
    _check_size(w, h, limit, allow_large, label)

    frames = int(getattr(pil, "n_frames", 1) or 1)
    icc = pil.info.get("icc_profile") or None
    xmp = _as_bytes(pil.info.get("xmp") or pil.info.get("XML:com.adobe.xmp")) or _jpeg_xmp(pil)
    dpi = _dpi(pil.info.get("dpi"))
    tiff_exif, orientation = _exif_from_tiff(data) if fmt == "TIFF" else (None, 1)
    depth = _source_bit_depth(data, pil, label)

    if fmt == "TIFF" and depth == 16:  # Pillow would cut it to 8 bits
        pil.close()
        return _read_tiff_direct(data, label, source, limit, allow_large, frames=frames)
    arr, channels, icc, pillow_oriented = _decode_pixels(data, pil, fmt, depth, (h, w), orientation, icc, label)

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
    img = _build(arr, channels, depth, fmt, exif, icc, xmp, orientation, source, dpi, frames, label)
    if fmt in ("HEIF", "AVIF"):
        img.cicp = iso_cicp(data)
    return img


def _input_bytes(src: str | os.PathLike[str] | bytes | bytearray | memoryview,
                 name: str | None) -> tuple[bytes, str, Path | None]:
    """The encoded bytes, the name errors use, and the file they came from (None for stdin)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        label, data, source = name or "<stdin>", bytes(src), None
    else:
        source = Path(src)
        label = name or str(src)
        data = _read_file(source, label)
    if not data:
        raise ImageError(f"{label}: file is empty (0 bytes); re-export or re-download it")
    return data, label, source


def _refuse_unreadable(data: bytes, label: str, source: Path | None) -> str | None:
    """The format `sniff` finds, once every refusal that needs no decoding is made: a video, a raw
    file, a missing plug-in, a header declaring more pixels than the data could fill."""
    kind = sniff(data)
    if kind is None and video_container(data[:256]) is not None:
        raise ImageError(
            f"{label}: is a video, not a photo; videos cannot be piped, give the file: deblur run CLIP.mp4"
            if source is None else f"{label}: is a video, not a photo; restore it with deblur run (or deblurcli.video)"
        )
    refusal = unreadable(label, kind, source)
    if refusal:
        raise ImageError(refusal)
    refuse_impossible_size(data, kind, label)  # before Pillow allocates what the header declares
    return kind


def _decode_pixels(data: bytes, pil: Any, fmt: str, depth: int, hw: tuple[int, int], orientation: int,
                   icc: bytes | None, label: str) -> tuple[np.ndarray, str, bytes | None, bool]:
    """(samples, channels, ICC profile, whether Pillow already turned them upright), by the decoder
    that keeps the file's bit depth: Pillow for 8 bits, OpenCV or libheif for 16."""
    h, w = hw
    if depth == 16 and fmt == "HEIF":
        arr, channels = _heif_decode_16(data, h, w, label)
        return arr, channels, icc, False
    if depth == 16:
        arr, channels = _cv2_decode(data, h, w, _declared_grey(data, pil), label)
        if fmt == "PNG":
            check_png_rows(data, label, suspicious=True)
        return arr, channels, icc, False
    had_tag = fmt == "TIFF" and _ORIENTATION_TAG in getattr(pil, "tag_v2", {})
    arr, channels, icc = _decode_8bit(pil, label, icc)
    # Pillow >= 12 already applies a TIFF's orientation while loading and then drops the
    # tag; applying it again would rotate the photo twice.
    pillow_oriented = had_tag and _ORIENTATION_TAG not in getattr(pil, "tag_v2", {})
    turned = pillow_oriented and orientation in (5, 6, 7, 8)
    if arr.shape[:2] != ((w, h) if turned else (h, w)):
        raise ImageError(f"{label}: file is truncated or corrupt; re-export or re-download it")
    if fmt == "PNG":  # rows the data never reached are black, and Pillow says nothing
        check_png_rows(data, label, suspicious=png_interlaced(data) or not arr[-1].any())
    return arr, channels, icc, pillow_oriented


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
    samples, alpha = _split_samples(arr, channels, depth)
    del arr
    described = readable(fmt)
    assert described is not None  # read_image refuses unknown formats before decoding
    if icc is not None and _icc_space(icc) not in (b"RGB ", b"GRAY"):
        icc = None  # a CMYK/Lab profile describes data we no longer have
    return Image(
        pixels=samples,
        alpha=alpha,
        bit_depth=depth,
        channels=channels,
        format=described.name,
        exif=exif,
        icc=icc,
        xmp=xmp,
        orientation=orientation,
        source=source,
        dpi=dpi,
        frames=1 if fmt in described.aliases else frames,
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
    stored = np.dtype(np.uint8) if depth == 8 else np.dtype(endian + "u2")
    # Each strip is inflated straight into the result: joining them first would hold the image
    # two or three times over, which for a 16-bit panorama is gigabytes.
    arr = np.empty((h, w, spp), stored.newbyteorder("="))
    flat = arr.reshape(-1).view(np.uint8)
    need, pos = flat.size, 0
    try:
        for off, cnt in zip(offsets, counts, strict=True):
            raw = data[int(off) : int(off) + int(cnt)]
            chunk = zlib.decompress(raw) if compression != 1 else raw
            n = min(len(chunk), need - pos)
            flat[pos : pos + n] = np.frombuffer(chunk, np.uint8, count=n)
            pos += n
    except zlib.error as exc:
        raise _corrupt(label, "TIFF", exc) from None
    if pos < need:
        raise ImageError(f"{label}: file is truncated or corrupt (TIFF ended early); re-export or re-download it")
    if stored.itemsize > 1 and (endian == ">") == np.little_endian:  # the file's byte order is not ours
        arr.byteswap(inplace=True)
    if predictor == 2:  # per row; in row blocks so the running sums need no whole-image temporary
        step = max(1, (4 << 20) // max(1, w * spp * arr.itemsize))
        for r in range(0, h, step):
            # unsigned arithmetic wraps like the encoder
            arr[r : r + step] = np.cumsum(arr[r : r + step], axis=1, dtype=arr.dtype)
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
        known = readable(kind)
        if known is not None:
            raise ImageError(
                f"{label}: file is truncated or corrupt (not a readable {known.label}); re-export or re-download it"
            ) from None
        raise ImageError(
            f"{label}: not an image file (or an unknown format); give a {names_for_message()}"
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
        known = readable(fmt)
        detail = f"{known.label if known else fmt} ended early"
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
    if pil.format == "HEIF":  # pillow-heif hands 10- and 12-bit files over cut to 8 bits (or as I;16)
        return 16 if int(pil.info.get("bit_depth") or 8) > 8 else 8
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
    arr = _cv2().imdecode(np.frombuffer(data, np.uint8), _cv2().IMREAD_UNCHANGED)
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
    if c in (3, 4):  # BGR(A) to RGB(A) in place: a copy would double a 16-bit panorama's memory
        cv2 = _cv2()
        cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if c == 3 else cv2.COLOR_BGRA2RGBA, dst=arr)
        return arr, ("RGB" if c == 3 else "RGBA")
    raise ImageError(f"{label}: {c}-channel images are not supported; save it as RGB or RGBA")


def _heif_decode_16(data: bytes, h: int, w: int, label: str) -> tuple[np.ndarray, str]:
    """A 10/12-bit HEIC at full depth: pillow-heif scales its samples to the 16-bit range.

    Pillow's own image modes hold no 16-bit colour, so this asks pillow-heif directly; libheif
    applies the container's rotation as it does for 8-bit files, and `_orient` then sees the
    EXIF orientation pillow-heif reset to 1.
    """
    import pillow_heif  # present: `readable` accepted the format

    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
        frame = heif[heif.primary_index]
        mode, arr = frame.mode, np.asarray(frame)
    except (OSError, ValueError, RuntimeError) as exc:
        raise _corrupt(label, "HEIF", exc) from None
    channels = {"RGB;16": "RGB", "RGBA;16": "RGBA", "I;16": "L", "L;16": "L", "LA;16": "LA"}.get(mode)
    if channels is None or arr.dtype != np.uint16 or arr.shape[:2] != (h, w):
        raise ImageError(f"{label}: {mode} HEIC is not supported; convert it to a 16-bit PNG or TIFF")
    return arr, channels


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
    return _pil_to_array(im), im.mode, icc


def _pil_to_array(im: PILImage.Image) -> np.ndarray:
    """``np.asarray(im)`` a block of rows at a time.

    Pillow's own conversion goes through ``tobytes()``, which joins a list of chunks: two
    transient whole-image copies beside Pillow's 4-byte-a-pixel image, 10 bytes a pixel at the
    peak for RGB. Block by block the peak is Pillow's image plus the array, and the array is
    writable, so the result can later be written over it.
    """
    w, h = im.size
    rows = max(1, (16 << 20) // max(1, 4 * w))
    first = np.asarray(im.crop((0, 0, w, min(h, rows))))
    out = np.empty((h, *first.shape[1:]), first.dtype)
    out[: len(first)] = first
    for y in range(len(first), h, rows):
        out[y : y + rows] = np.asarray(im.crop((0, y, w, min(h, y + rows))))
    return out


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


def _split_samples(arr: np.ndarray, channels: str, depth: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (HxWx3) or grey (HxW) samples and alpha (HxW), each contiguous, at the file's own depth.

    Kept as integers: float32 copies would cost 12 bytes a pixel (see `Image`).
    """
    arr = arr.astype(np.uint8 if depth == 8 else np.uint16, copy=False)
    alpha: np.ndarray | None = None
    if channels in ("LA", "RGBA"):
        alpha = np.ascontiguousarray(arr[..., -1])
        arr = arr[..., :-1]
    if channels in ("L", "LA") and arr.ndim == 3:
        arr = arr[..., 0]
    samples = np.ascontiguousarray(arr)
    if not samples.flags.writeable:  # Pillow's buffer: a writable copy lets the result be written over it
        samples = samples.copy()
    return samples, alpha


