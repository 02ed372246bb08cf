"""Every fact about an image format, in one description per format (`FORMATS`).

To add a format, add one `ImageFormat` entry to `FORMATS` (and, when Pillow cannot encode it the
way we need, its writer in `writers.py`). Everything else is derived from this list: the file
extensions `run`, `batch`, `eval` and training accept (`IMAGE_EXTENSIONS`), the ``--format``
check, sniffing by magic bytes, which formats keep 16 bits, alpha, grey or metadata (and the
notes printed when one cannot), the largest side, and the writer that is called.

Decoding needs no entry of its own: Pillow (and OpenCV for 16-bit data) decodes every listed
format; a format Pillow cannot open needs its decoder in `decode.py` as well. A format that needs
a Pillow plug-in (HEIC: pillow-heif) or a Pillow built with it (AVIF) names it in ``needs``: where
it is missing the format's files are still found and refused with that fix, instead of being
skipped or called "not an image".
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from deblurcli.errors import ImageError

from .writers import Writer, write_avif, write_bmp, write_heif, write_jpeg, write_png, write_tiff, write_webp

#: A file signature: all of its (offset, bytes) parts must match.
Magic = tuple[tuple[int, bytes], ...]


@dataclass(frozen=True)
class ImageFormat:
    """One file format as the reader, the writer and the command line need to know it."""

    #: Pillow's name for the format (``Image.format``), upper case.
    name: str
    #: How messages spell it.
    label: str
    #: File extensions, lower case with the dot; the first one names new files.
    extensions: tuple[str, ...]
    #: Signatures that identify the format from a file's first bytes.
    magic: tuple[Magic, ...]
    #: Bit depths per channel the format stores (8 and/or 16).
    bit_depths: tuple[int, ...]
    #: Whether it keeps an alpha channel (formats without one drop it with a note).
    alpha: bool
    #: Whether it has a greyscale mode (without one, grey photos are stored as RGB with a note).
    grey: bool
    #: Metadata it carries, out of ``{"exif", "icc", "xmp", "dpi", "cicp"}`` (cicp: an H.273
    #: colour description such as HEIF's nclx box, which HDR and wide-gamut photos need).
    metadata: frozenset[str]
    #: Largest width or height it can hold.
    max_side: int
    #: Encodes restored samples; None for a format that is only read.
    writer: Writer | None
    #: Other names Pillow reports for files that are read as this format (MPO: phones' multi-JPEG).
    aliases: tuple[str, ...] = ()
    #: Bits per channel a 16-bit photo keeps (HEIC: HEVC Main 10, what phones and viewers decode).
    high_bits: int = 16
    #: Whether grey with transparency keeps its grey mode at 16 bits (libheif drops the alpha of
    #: a 10-bit grey HEIC, so there the photo is stored as RGB to keep its transparency).
    grey_alpha_16: bool = True
    #: ISO base media (``ftyp``) brands that mark the format; `sniff` reads the whole brand list.
    brands: tuple[bytes, ...] = ()
    #: What this Python lacks when the format is unavailable, as the fix for the user.
    needs: str | None = None
    #: True when the format can be used here (its plug-in loads); None means always.
    available: Callable[[], bool] | None = None

    @property
    def extension(self) -> str:
        """The extension given to new files in this format."""
        return self.extensions[0]


_ALL_METADATA = frozenset({"exif", "icc", "xmp", "dpi"})


@cache
def _heif_plugin() -> bool:
    """pillow-heif, registered with Pillow once: HEIC is patented HEVC, so it stays an optional extra."""
    try:
        pillow_heif = importlib.import_module("pillow_heif")
        pillow_heif.register_heif_opener()
    except Exception:  # not installed, or a broken build: HEIC is refused with the install hint
        return False
    return True


@cache
def _avif_plugin() -> bool:
    """Pillow has AVIF (libavif) built in from 11.3; older or custom builds may not."""
    try:
        from PIL import features

        return bool(features.check_module("avif"))
    except Exception:
        return False

FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat(
        name="PNG", label="PNG", extensions=(".png",), magic=(((0, b"\x89PNG\r\n\x1a\n"),),),
        bit_depths=(8, 16), alpha=True, grey=True, metadata=_ALL_METADATA, max_side=2**31 - 1, writer=write_png,
    ),
    ImageFormat(
        name="JPEG", label="JPEG", extensions=(".jpg", ".jpeg", ".jpe", ".jfif"), magic=(((0, b"\xff\xd8\xff"),),),
        bit_depths=(8,), alpha=False, grey=True, metadata=_ALL_METADATA, max_side=65_500, writer=write_jpeg,
        aliases=("MPO",),
    ),
    ImageFormat(
        name="TIFF", label="TIFF", extensions=(".tif", ".tiff"),
        magic=(((0, b"II*\x00"),), ((0, b"MM\x00*"),), ((0, b"II+\x00"),), ((0, b"MM\x00+"),)),
        bit_depths=(8, 16), alpha=True, grey=True, metadata=_ALL_METADATA, max_side=2**32 - 1, writer=write_tiff,
    ),
    ImageFormat(
        name="WEBP", label="WebP", extensions=(".webp",), magic=(((0, b"RIFF"), (8, b"WEBP")),),
        bit_depths=(8,), alpha=True, grey=False, metadata=_ALL_METADATA, max_side=16_383, writer=write_webp,
    ),
    ImageFormat(
        name="BMP", label="BMP", extensions=(".bmp",), magic=(((0, b"BM"),),),
        bit_depths=(8,), alpha=False, grey=True, metadata=frozenset({"dpi"}), max_side=2**31 - 1, writer=write_bmp,
    ),
    ImageFormat(
        # 10-bit AVIF is read as 8 bits: Pillow decodes no more.
        name="AVIF", label="AVIF", extensions=(".avif",), magic=(), brands=(b"avif", b"avis"),
        bit_depths=(8,), alpha=True, grey=True, metadata=frozenset({"exif", "icc", "xmp"}), max_side=32_768,
        writer=write_avif, needs="a Pillow with AVIF: pip install -U 'pillow>=11.3'", available=_avif_plugin,
    ),
    ImageFormat(
        # iPhones' photos, and cameras' 10-bit HDR ones. pillow-heif turns the container's rotation
        # into pixels and sets EXIF orientation to 1, so a photo is never turned twice. "16" here
        # is HEVC Main 10: 10-bit files are read into 16-bit samples and written back at 10 bits,
        # with their colour description ("cicp": HEIF's nclx box, e.g. BT.2020 with HLG).
        name="HEIF", label="HEIC", extensions=(".heic", ".heif", ".hif"), magic=(),
        brands=(b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"),
        bit_depths=(8, 16), alpha=True, grey=True, metadata=frozenset({"exif", "icc", "xmp", "cicp"}),
        max_side=32_768, high_bits=10, grey_alpha_16=False,
        writer=write_heif, needs="pillow-heif: pip install 'deblurcli[heif]'", available=_heif_plugin,
    ),
)


def usable(f: ImageFormat) -> bool:
    """Whether this Python can read and write `f` (its plug-in, if it needs one, loads)."""
    return f.available is None or f.available()

_BY_NAME: dict[str, ImageFormat] = {n: f for f in FORMATS for n in (f.name, *f.aliases)}
_BY_EXTENSION: dict[str, ImageFormat] = {e: f for f in FORMATS for e in f.extensions}

#: Every extension a photo may have, lower case with the dot: the one list used to find inputs.
#: It includes formats whose plug-in is missing here, so that such a file is refused with the fix.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(_BY_EXTENSION)

#: Output format name by extension: the formats this Python can write.
FORMAT_EXTENSIONS: dict[str, str] = {
    e: f.name for e, f in _BY_EXTENSION.items() if f.writer is not None and usable(f)
}

# Camera raw files: Pillow happily opens many of them as TIFF and returns the tiny embedded
# preview, which would be deblurred and written out as if it were the photo.
RAW_EXTENSIONS = frozenset({
    ".3fr", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".iiq", ".k25", ".kdc",
    ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf", ".raw", ".rw2", ".rwl",
    ".sr2", ".srf", ".srw", ".x3f",
})  # fmt: skip

# Formats we recognise only to name them in an error ("unsupported format GIF").
_UNSUPPORTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"GIF8", "GIF"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"qoif", "QOI"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"#?RADIANCE", "HDR"),
)
# ISO base media brands of photos that are not ours to read (Canon's CR3 raw shares the box).
_OTHER_BRANDS = {b"crx ": "Canon CR3 raw"}


def ftyp_image(data: bytes) -> str | None:
    """The photo format of an ISO base media file (HEIC, AVIF, CR3), None if it is not one.

    Photos and MP4/MOV videos share the ``ftyp`` box; the brands tell them apart. The major brand
    may be the generic ``mif1`` with the specific one among the compatible brands, so the whole
    list is read, and the most specific brand wins: `FORMATS` lists AVIF before HEIC, whose
    brands include the generic ones.
    """
    if len(data) < 16 or data[4:8] != b"ftyp":
        return None
    size = int.from_bytes(data[:4], "big")
    end = min(len(data), size if 16 <= size <= 4096 else 16)
    brands = {data[8:12], *(data[o : o + 4] for o in range(16, end - 3, 4))}
    for b, kind in _OTHER_BRANDS.items():
        if b in brands:
            return kind
    for f in FORMATS:
        if brands & set(f.brands):
            return f.name
    return None


def video_container(head: bytes) -> str | None:
    """The video container family from a file's first bytes (mp4/mov, matroska/webm, avi), else None.

    Lives beside `sniff` so that the image reader can tell a piped or misnamed video apart from a
    corrupt photo without importing the video module.
    """
    if len(head) >= 12 and head[4:8] == b"ftyp":
        if ftyp_image(head) is not None:  # HEIC, AVIF and CR3 photos use the same box as MP4
            return None
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head else "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def readable(name: str | None) -> ImageFormat | None:
    """The description for a format name as Pillow or `sniff` reports it, None if not supported here."""
    f = _BY_NAME.get(name or "")
    return f if f is not None and usable(f) else None


def unusable(name: str | None) -> ImageFormat | None:
    """A format we know but cannot use here (its plug-in is missing); its ``needs`` is the fix."""
    f = _BY_NAME.get(name or "")
    return f if f is not None and not usable(f) else None


def writable() -> list[ImageFormat]:
    return [f for f in FORMATS if f.writer is not None and usable(f)]


def either(items: list[str]) -> str:
    """``a, b or c``: lists in messages are derived from `FORMATS`, so they can never go stale."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def names_for_message() -> str:
    """``PNG, JPEG, TIFF, WebP, BMP, AVIF or HEIC`` (those usable here)."""
    return either([f.label for f in FORMATS if usable(f)])


def sniff(data: bytes) -> str | None:
    """Name the format from magic bytes so errors can say "unsupported HEIC" or "corrupt PNG"."""
    for f in FORMATS:
        if any(all(data[o : o + len(b)] == b for o, b in m) for m in f.magic):
            return f.name
    if data[4:8] == b"ftyp":
        return ftyp_image(data)
    for magic, kind in _UNSUPPORTED_MAGIC:
        if data[: len(magic)] == magic:
            return kind
    return None


def format_named(name: str) -> ImageFormat | None:
    """A writable format from a ``--format`` value: any of its extensions (dot optional) or its name."""
    key = name.strip().lower().lstrip(".")
    f = _BY_EXTENSION.get("." + key) or _BY_NAME.get(key.upper())
    return f if f is not None and f.writer is not None and usable(f) else None


def extension_for(name: str) -> str:
    """The extension for new files asked for as ``--format name``: an extension is kept as given
    (``jpe`` -> ``.jpe``), a format's name gives its usual one (``jpeg`` -> ``.jpg``)."""
    key = name.strip().lower().lstrip(".")
    f = format_named(key)
    if f is None:
        return "." + key
    return "." + key if "." + key in f.extensions and key != f.name.lower() else f.extension


def unknown_format_error(name: str | None) -> str | None:
    """The one ``--format`` check: None when `name` is empty or a writable format, else the message."""
    if not name or format_named(name) is not None:
        return None
    known = ", ".join(sorted(e.lstrip(".") for e in FORMAT_EXTENSIONS))
    return f"--format {name}: unknown image format; choose one of {known}"


def extension_hint() -> str:
    """``.png, .jpg, .tif, .webp or .bmp``: the extensions to suggest for an output name."""
    return either([f.extension for f in writable()])


def format_for_path(path: str | os.PathLike[str], format: str | None = None) -> str:
    """Output format from an explicit name or the extension, as an `ImageError` if neither works."""
    if format:
        f = format_named(format)
        if f is None:
            raise ImageError(
                f"{path}: cannot write format {format}; use {either([g.extension.lstrip('.') for g in writable()])}"
            )
        return f.name
    ext = Path(path).suffix.lower()
    if ext in FORMAT_EXTENSIONS:
        return FORMAT_EXTENSIONS[ext]
    what = f"extension {ext}" if ext else "no extension"
    raise ImageError(f"{path}: cannot tell the output format ({what}); end the name in {extension_hint()}")


def describe(name: str) -> ImageFormat:
    """The description of a format `format_for_path` returned."""
    return _BY_NAME[name]
