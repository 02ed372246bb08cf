"""Does the file hold the pixels its header declares? Checks that decoders leave to the caller.

Pillow fills the rows a PNG's data never reached with black and reports success (the zlib stream
simply ended), and it allocates and decodes whatever size a header declares. Two checks close
that gap without slowing an honest photo down:

* `refuse_impossible_size`, before anything is decoded: compressed data has a hard ceiling on
  how much it can expand (deflate at most 1032:1; a sequential Huffman JPEG spends at least two
  bits on every 8x8 block), so a header declaring more pixels than its data could ever fill is
  refused at once. A real photo is nowhere near these bounds; only a truncated file or a lie is.
* `check_png_rows`, after decoding: the PNG's image data is inflated (counting, not keeping)
  and must yield every declared row. This costs one extra inflate, so it runs only when the
  decoded result could be hiding missing rows (the last row black, an interlaced or a 16-bit file).
"""

from __future__ import annotations

import struct
import zlib

from deblurcli.errors import ImageError

#: Deflate's largest possible expansion: a 258-byte match coded in about two bits.
_DEFLATE_MAX_RATIO = 1032
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_layout(data: bytes) -> tuple[int, int, int, int, bool, list[tuple[int, int]]] | None:
    """(width, height, bit depth, channels, interlaced, IDAT (offset, length) spans), or None if malformed."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    w, h, depth, colour, _c, _f, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    channels = _PNG_CHANNELS.get(colour)
    if channels is None:
        return None
    spans: list[tuple[int, int]] = []
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            spans.append((pos + 8, min(length, max(0, len(data) - pos - 8))))
        elif kind == b"IEND":
            break
        pos += 12 + length
    return w, h, depth, channels, interlace == 1, spans


def _png_raw_size(w: int, h: int, depth: int, channels: int, interlaced: bool) -> int:
    """Bytes the inflated PNG data must have: each row's filter byte plus its packed samples."""

    def rows(width: int, height: int) -> int:
        return 0 if width == 0 or height == 0 else height * (1 + (width * depth * channels + 7) // 8)

    if not interlaced:
        return rows(w, h)
    return sum(rows((w - x0 + dx - 1) // dx if w > x0 else 0, (h - y0 + dy - 1) // dy if h > y0 else 0)
               for x0, y0, dx, dy in _ADAM7)


def _jpeg_entropy(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, bytes after the first scan header) of a sequential Huffman JPEG, else None.

    Progressive and arithmetic-coded files can code long runs of empty blocks in a few bits, so
    no per-block lower bound holds for them; they are left to the decoder.
    """
    pos = 2
    size: tuple[int, int] | None = None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in (0xC0, 0xC1):
            if pos + 9 > len(data):
                return None
            h, w = struct.unpack_from(">HH", data, pos + 5)
            size = (w, h)
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return None  # progressive, lossless or arithmetic
        elif marker == 0xDA:
            return None if size is None else (size[0], size[1], max(0, len(data) - (pos + 2 + length)))
        pos += 2 + length
    return None


def _impossible(label: str, w: int, h: int, held: int) -> ImageError:
    return ImageError(
        f"{label}: file is truncated or corrupt (it declares {w}x{h} pixels but holds only {held:,} bytes of "
        "image data, too few for that size even at the format's best compression); re-export or re-download it"
    )


def refuse_impossible_size(data: bytes, kind: str | None, label: str) -> None:
    """Refuse a PNG or sequential JPEG whose data could not fill its declared size, before decoding it."""
    if kind == "PNG":
        layout = _png_layout(data)
        if layout is None:
            return  # the decoder words the malformed header
        w, h, depth, channels, interlaced, spans = layout
        held = sum(n for _, n in spans)
        if held * _DEFLATE_MAX_RATIO + 1024 < _png_raw_size(w, h, depth, channels, interlaced):
            raise _impossible(label, w, h, held)
    elif kind == "JPEG":
        found = _jpeg_entropy(data)
        if found is None:
            return
        w, h, held = found
        blocks = ((w + 7) // 8) * ((h + 7) // 8)
        # At least 2 bits (DC code + end of block) per luma block; half that leaves room for doubt.
        if held * 8 < blocks:
            raise _impossible(label, w, h, held)


def png_rows_missing(data: bytes) -> bool:
    """Whether the PNG's image data inflates to fewer bytes than its declared rows need."""
    layout = _png_layout(data)
    if layout is None:
        return False
    w, h, depth, channels, interlaced, spans = layout
    need = _png_raw_size(w, h, depth, channels, interlaced)
    inflater = zlib.decompressobj()
    got = 0
    try:
        for off, n in spans:
            buf = data[off : off + n]
            while buf and got < need:
                got += len(inflater.decompress(buf, 1 << 20))
                buf = inflater.unconsumed_tail
            if got >= need or inflater.eof:
                break
    except zlib.error:
        return True
    return got < need


def check_png_rows(data: bytes, label: str, *, suspicious: bool) -> None:
    """Refuse a PNG whose data ended before its last row (Pillow leaves those rows black).

    ``suspicious`` says the decoded image could be hiding that (its last row is all zeros, it is
    interlaced or it was decoded by another library); otherwise the check is skipped.
    """
    if suspicious and png_rows_missing(data):
        raise ImageError(
            f"{label}: file is truncated (its image data ends before the last row, which would come out black); "
            "re-export or re-download it"
        )


def png_interlaced(data: bytes) -> bool:
    return len(data) > 28 and data[12:16] == b"IHDR" and data[28] == 1
