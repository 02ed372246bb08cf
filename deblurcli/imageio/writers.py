"""The writers, one per output format, all with one signature (see `Writer`).

A writer gets integer samples already laid out for the file (HxWxC, C = 1..4 for grey, grey +
alpha, RGB, RGBA; uint8 or uint16) and the metadata the plan decided to keep; it only encodes.
16-bit PNG and every TIFF are encoded here because neither Pillow nor OpenCV (before 4.12) can
write 16-bit colour together with ICC/EXIF/XMP; the rest goes through Pillow.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

import numpy as np
from PIL import Image as PILImage
from PIL import PngImagePlugin

from deblurcli.errors import ImageError

from .metadata import _DESCRIPTIVE_IFD0_TAGS, _exif_tags, _long_tag, _rational_tag, _serialize_ifd, _short_tag, _Tag


@dataclass
class Encoding:
    """What a writer needs besides the samples, decided once by the write plan."""

    grey: bool = False
    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    orientation: int = 1
    quality: int = 95
    #: H.273 colour description (primaries, transfer, matrix, full range) for formats with "cicp".
    cicp: tuple[int, int, int, int] | None = None
    #: Writers append here what they had to leave out (an EXIF block too big for JPEG, ...).
    notes: list[str] = field(default_factory=list)
    #: zlib level of an 8-bit PNG (None: Pillow's 6). Data written in bulk (training pairs) takes 1:
    #: a quarter of the time for files about a fifth larger.
    png_level: int | None = None


T = TypeVar("T")

#: ``writer(file, samples, encoding)``: encode `samples` into the open binary `file`.
Writer = Callable[[BinaryIO, np.ndarray, Encoding], None]


def _pil_from(arr: np.ndarray) -> PILImage.Image:
    """A Pillow image of 8-bit samples (HxWxC, C = 1..4) in one conversion: no per-band copies."""
    return PILImage.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr))


def _pillow_options(enc: Encoding) -> dict[str, object]:
    opts: dict[str, object] = {}
    if enc.dpi:
        opts["dpi"] = enc.dpi
    if enc.icc:
        opts["icc_profile"] = enc.icc
    if enc.exif:
        opts["exif"] = enc.exif
    return opts


def write_jpeg(f: BinaryIO, arr: np.ndarray, enc: Encoding) -> None:
    """Baseline JPEG at 4:4:4 (chroma subsampling visibly softens the edges we just sharpened)."""
    opts = _pillow_options(enc)
    if enc.exif and len(enc.exif) > 65533:
        enc.notes.append("the EXIF block is too large for JPEG (64 KB) and was left out")
        opts.pop("exif")
    opts.update(quality=int(enc.quality), subsampling=0)
    buf = io.BytesIO()
    _pil_from(arr).save(buf, "JPEG", **opts)
    data = buf.getvalue()
    if enc.xmp:
        data = _jpeg_with_xmp(data, enc.xmp, enc.notes)
    f.write(data)


def write_png(f: BinaryIO, arr: np.ndarray, enc: Encoding) -> None:
    """8-bit PNG through Pillow; 16-bit by `_write_png16` (Pillow has no 16-bit colour mode)."""
    if arr.dtype == np.uint16:
        _write_png16(f, arr, enc)
        return
    opts = _pillow_options(enc)
    if enc.png_level is not None:
        opts["compress_level"] = enc.png_level
    if enc.xmp:
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", enc.xmp.decode("utf-8", "replace"), zip=False)
        opts["pnginfo"] = info
    _pil_from(arr).save(f, "PNG", **opts)


def write_webp(f: BinaryIO, arr: np.ndarray, enc: Encoding) -> None:
    """Lossy WebP, or lossless at quality 100; `exact` keeps colour under fully transparent pixels."""
    opts = _pillow_options(enc)
    if enc.xmp:
        opts["xmp"] = enc.xmp
    q = int(min(enc.quality, 100))
    opts.update(quality=q, lossless=q >= 100, exact=True, method=4)
    _pil_from(arr).save(f, "WEBP", **opts)


def _iso_media_options(enc: Encoding) -> dict[str, object]:
    """AVIF and HEIC: no resolution field, XMP beside EXIF and ICC."""
    opts = {k: v for k, v in _pillow_options(enc).items() if k != "dpi"}
    if enc.xmp:
        opts["xmp"] = enc.xmp
    opts["quality"] = int(min(enc.quality, 100))
    return opts


def write_avif(f: BinaryIO, arr: np.ndarray, enc: Encoding) -> None:
    """AVIF through Pillow's libavif, chroma at full resolution (4:4:4) as for JPEG: 4:2:0 would
    soften the edges just sharpened."""
    opts = _iso_media_options(enc)
    if arr.shape[2] >= 3:  # grey is stored as luma alone (4:0:0), which 4:4:4 would turn into colour
        opts["subsampling"] = "4:4:4"
    _pil_from(arr).save(f, "AVIF", **opts)


def write_heif(f: BinaryIO, arr: np.ndarray, enc: Encoding) -> None:
    """HEIC through pillow-heif (registered by `formats`), chroma 4:4:4 for the reason AVIF has it.

    16-bit samples become HEVC Main 10 (what phones and viewers decode), written through
    pillow-heif's own API because Pillow has no 16-bit colour mode. The source's colour
    description goes into the nclx box: an HLG or PQ photo tagged as sRGB would be shown wrong.
    """
    opts = _iso_media_options(enc)
    if arr.shape[2] >= 3:
        opts["chroma"] = 444
    if enc.cicp is not None:
        keys = ("color_primaries", "transfer_characteristics", "matrix_coefficients", "full_range_flag")
        opts.update(zip(keys, enc.cicp, strict=True))
    if arr.dtype != np.uint16:
        _pil_from(arr).save(f, "HEIF", **opts)
        return
    import pillow_heif  # present: the format is only offered where it is

    # No "LA;16": the write plan stores 16-bit grey with alpha as RGBA (`grey_alpha_16`).
    mode = {1: "I;16", 3: "RGB;16", 4: "RGBA;16"}[arr.shape[2]]
    h, w = arr.shape[:2]
    samples = np.ascontiguousarray(arr.astype("<u2", copy=False))
    heif = pillow_heif.from_bytes(mode, (w, h), memoryview(samples).cast("B"))  # a view, not a copy
    heif.save(f, **opts)


def write_bmp(f: BinaryIO, arr: np.ndarray, enc: Encoding) -> None:
    """BMP keeps only pixels and resolution."""
    _pil_from(arr).save(_WithoutFileno(f), "BMP", **({"dpi": enc.dpi} if enc.dpi else {}))


class _WithoutFileno:
    """The file, minus its descriptor, so that Pillow writes through Python.

    Given a descriptor, Pillow's raw encoder (BMP) writes to it directly and ignores a short
    write: a disk that fills mid-image leaves a truncated file and no error, which would then
    replace the user's file. Python's file object finishes short writes or raises ENOSPC.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _in_parallel(fn: Callable[[int], T], items: range) -> Iterator[T]:
    """``map(fn, items)`` in order, on a few threads: zlib and numpy release the GIL while they work.

    Deflate is what makes 16-bit PNG/TIFF writes slow; strips compress independently, so using
    the cores keeps a 100 MP TIFF from taking longer than Pillow's single-threaded encoder. At
    most two strips per thread are in flight, so memory stays a few MB.
    """
    workers = min(4, os.cpu_count() or 1)
    if workers == 1 or len(items) < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deblur-deflate") as pool:
        pending: deque[Future[T]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


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


def _write_png16(f: BinaryIO, arr: np.ndarray, enc: Encoding) -> None:
    """16-bit PNG with metadata, streamed in row blocks so a 100 MP panorama needs little extra memory."""
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    f.write(b"\x89PNG\r\n\x1a\n")
    f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)))
    if enc.icc:
        f.write(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(enc.icc)))
    if enc.dpi:
        ppm = [max(1, round(d / 0.0254)) for d in enc.dpi]
        f.write(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    exif = enc.exif
    if exif:
        f.write(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    if enc.xmp:
        f.write(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + enc.xmp))
    # One zlib stream made of independently compressed row blocks (as pigz does): each block is
    # raw deflate ended by a sync flush, so the blocks can be compressed on several threads and
    # simply concatenated; the zlib header and the Adler-32 of all filtered bytes wrap them.
    bpp = 2 * c
    raw = arr.reshape(h, w * c)
    step = max(1, (1 << 21) // (w * bpp))

    def block(r: int) -> tuple[bytes, bytes]:
        rows = raw[r : r + step].astype(">u2").view(np.uint8).reshape(-1, w * bpp)
        above = raw[r - 1].astype(">u2").view(np.uint8) if r else np.zeros(w * bpp, np.uint8)
        filtered = _up_filter(rows, above).tobytes()
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        last = r + step >= h
        return comp.compress(filtered) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH), filtered

    pending = bytearray(b"\x78\x9c")  # zlib header: deflate, 32 KB window, default level
    adler = 1
    for data, filtered in _in_parallel(block, range(0, h, step)):
        adler = zlib.adler32(filtered, adler)
        pending += data
        if len(pending) >= 1 << 20:
            f.write(_png_chunk(b"IDAT", bytes(pending)))
            pending.clear()
    pending += struct.pack(">I", adler)
    f.write(_png_chunk(b"IDAT", bytes(pending)))
    f.write(_png_chunk(b"IEND", b""))


def write_tiff(f: BinaryIO, arr: np.ndarray, enc: Encoding) -> None:
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
    comp_dtype = np.dtype("<u2") if bits == 16 else np.dtype(np.uint8)

    def strip(r: int) -> bytes:
        blk = arr[r : r + rows_per_strip].astype(comp_dtype)
        diff = blk.copy()
        diff[:, 1:] -= blk[:, :-1]  # predictor 2: per-sample difference, wrapping like the reader
        # Run-length matching only: after the predictor a photo is small differences, which this
        # codes about as tightly as full matching (a few % larger, smaller than Pillow's TIFF)
        # at a third of the time, so a 16-bit TIFF is written faster than Pillow writes one.
        comp = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
        return comp.compress(diff.tobytes()) + comp.flush()

    for data in _in_parallel(strip, range(0, h, rows_per_strip)):
        offsets.append(f.tell() - base)
        counts.append(len(data))
        f.write(data)
        if len(data) % 2:
            f.write(b"\0")
    ifd_at = f.tell() - base
    if ifd_at > 2**32 - 2**20:
        raise ImageError("the TIFF would exceed 4 GB; write a PNG instead or reduce the size")

    tags = {t.tag: t for t in _exif_tags(enc.exif) if t.tag in _DESCRIPTIVE_IFD0_TAGS}
    layout = [
        _long_tag(256, [w]),
        _long_tag(257, [h]),
        _short_tag(258, *([bits] * c)),
        _short_tag(259, 8),
        _short_tag(262, 1 if enc.grey else 2),
        _long_tag(273, offsets),
        _short_tag(274, enc.orientation),
        _short_tag(277, c),
        _long_tag(278, [rows_per_strip]),
        _long_tag(279, counts),
        _short_tag(284, 1),
        _short_tag(317, 2),
        _short_tag(339, *([1] * c)),
    ]
    if c in (2, 4):
        layout.append(_short_tag(338, 2))  # unassociated alpha: stored untouched, not premultiplied
    if enc.dpi:
        layout += [_rational_tag(282, enc.dpi[0]), _rational_tag(283, enc.dpi[1]), _short_tag(296, 2)]
    if enc.xmp:
        layout.append(_Tag(700, 1, len(enc.xmp), enc.xmp))
    if enc.icc:
        layout.append(_Tag(34675, 7, len(enc.icc), enc.icc))
    for t in layout:
        tags[t.tag] = t
    f.write(_serialize_ifd(list(tags.values()), ifd_at))
    end = f.tell()
    f.seek(base + 4)
    f.write(struct.pack("<I", ifd_at))
    f.seek(end)
