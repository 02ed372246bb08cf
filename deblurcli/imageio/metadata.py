"""EXIF, TIFF directories, ICC and XMP at the byte level, so nothing a camera wrote is lost or re-typed.

A TIFF file and an EXIF block share one structure (image file directories of tagged values),
so one small codec serves the TIFF reader and writer and the EXIF copy into every format.
EXIF is patched in place rather than rebuilt wherever possible: maker notes hold absolute
offsets into the block, and a rebuilt block would silently break them.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np

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


def _short_tag(tag: int, *values: int) -> _Tag:
    return _Tag(tag, 3, len(values), struct.pack(f"<{len(values)}H", *values))


def _long_tag(tag: int, values: list[int]) -> _Tag:
    return _Tag(tag, 4, len(values), struct.pack(f"<{len(values)}I", *values))


def _rational_tag(tag: int, value: float) -> _Tag:
    return _Tag(tag, 5, 1, struct.pack("<II", max(0, round(value * 1000)), 1000))



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


# --- H.273 colour descriptions ("cicp": HEIF/AVIF's nclx box) --------------------------------

#: (colour primaries, transfer characteristics, matrix coefficients, full-range flag), ITU-T H.273.
Cicp = tuple[int, int, int, int]

_PRIMARIES = {1: "BT.709", 9: "BT.2020", 11: "DCI-P3", 12: "Display P3"}
_TRANSFERS = {16: "PQ", 18: "HLG", 8: "linear"}
# Primaries and transfers a viewer may take as plain sRGB without a visible change (709/sRGB
# primaries or unspecified; the 709, 601 and sRGB curves or unspecified).
_SRGB_LIKE_PRIMARIES = {1, 2}
_SRGB_LIKE_TRANSFERS = {1, 2, 6, 13, 14, 15}


def cicp_matters(cicp: Cicp | None) -> TypeGuard[Cicp]:
    """Whether dropping this colour description would change how viewers show the photo.

    An iPhone's sRGB-tagged nclx carries nothing a JPEG lacks; an HLG/PQ or BT.2020 one does, and
    without it the photo's colours and brightness are shown wrong, so the write plan must say so.
    """
    return cicp is not None and (cicp[0] not in _SRGB_LIKE_PRIMARIES or cicp[1] not in _SRGB_LIKE_TRANSFERS)


def describe_cicp(cicp: Cicp) -> str:
    """A photographer's name for the colour description, e.g. "BT.2020 HLG"."""
    primaries = _PRIMARIES.get(cicp[0], f"primaries {cicp[0]}")
    transfer = _TRANSFERS.get(cicp[1], "" if cicp[1] in _SRGB_LIKE_TRANSFERS else f"transfer {cicp[1]}")
    return f"{primaries} {transfer}".strip()


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """ISO base media boxes in ``data[start:end]``: (type, payload start, payload end); stops at damage."""
    found: list[tuple[bytes, int, int]] = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1 and pos + 16 <= end:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            break
        found.append((kind, pos + head, pos + size))
        pos += size
    return found


def iso_cicp(data: bytes) -> Cicp | None:
    """The primary item's nclx colour description in a HEIF/AVIF file, read from the boxes.

    Read here rather than from a decoder's info so HEIC and AVIF (whose Pillow plug-in does not
    report it) are handled alike. Path: ``meta`` > ``pitm`` (the primary item) and ``iprp`` >
    ``ipco`` (properties) + ``ipma`` (which item has which). Falls back to the first nclx in
    ``ipco`` when the association cannot be read.
    """
    try:
        meta = next(((s, e) for k, s, e in _boxes(data, 0, len(data)) if k == b"meta"), None)
        if meta is None:
            return None
        children = _boxes(data, meta[0] + 4, meta[1])  # meta is a full box: version and flags first
        primary = None
        props: list[tuple[bytes, int, int]] = []
        links: dict[int, list[int]] = {}
        for kind, s, e in children:
            if kind == b"pitm":
                primary = struct.unpack_from(">H" if data[s] == 0 else ">I", data, s + 4)[0]
            elif kind == b"iprp":
                for sub, ss, se in _boxes(data, s, e):
                    if sub == b"ipco":
                        props = _boxes(data, ss, se)
                    elif sub == b"ipma":
                        links = _ipma(data, ss)
        nclx = {}
        for i, (kind, s, _e) in enumerate(props, start=1):
            if kind == b"colr" and data[s : s + 4] == b"nclx":
                p, t, m = struct.unpack_from(">HHH", data, s + 4)
                nclx[i] = (p, t, m, data[s + 10] >> 7)
        chosen = [nclx[i] for i in links.get(primary or -1, []) if i in nclx]
        first = next(iter(nclx.values()), None)
        return chosen[0] if chosen else first
    except (struct.error, IndexError):
        return None


def _ipma(data: bytes, s: int) -> dict[int, list[int]]:
    """Item id -> 1-based property indices, from an ``ipma`` box's payload."""
    version, flags = data[s], int.from_bytes(data[s + 1 : s + 4], "big")
    (count,) = struct.unpack_from(">I", data, s + 4)
    pos, links = s + 8, {}
    for _ in range(count):
        if version < 1:
            (item,) = struct.unpack_from(">H", data, pos)
            pos += 2
        else:
            (item,) = struct.unpack_from(">I", data, pos)
            pos += 4
        n = data[pos]
        pos += 1
        indices = []
        for _ in range(n):
            if flags & 1:
                indices.append(struct.unpack_from(">H", data, pos)[0] & 0x7FFF)
                pos += 2
            else:
                indices.append(data[pos] & 0x7F)
                pos += 1
        links[item] = indices
    return links
