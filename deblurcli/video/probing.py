"""What a video file holds, read before any work starts: its container, its video stream's facts
(codec, size, pixel format, bit depth, timing, rotation, colour, HDR10 metadata), its other
streams, and the one-line refusal a user can act on when it cannot be read.

Content, not the name, decides what a file is: a JPEG called clip.mp4 is restored as the JPEG.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeblurError
from ..imageio.formats import sniff as sniff_image
from ..imageio.formats import video_container

#: Video containers we write, by extension (`encode` says which encoders each can hold).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
#: Decoders worth naming when an input's codec cannot be read.
_KNOWN_DECODERS = ("h264", "hevc", "vp9", "vp8", "av1", "mpeg4", "mpeg2video", "mjpeg", "prores", "ffv1", "dnxhd")


def _av() -> Any:
    """PyAV, with a one-line error if it is missing (it is a dependency; a broken install can lack it)."""
    try:
        import av
    except ImportError:
        raise DeblurError("video needs PyAV, which is not installed here: pip install av") from None
    return av


# -- detection --------------------------------------------------------------------------------------
def sniff_video(path: str | os.PathLike[str]) -> str | None:
    """The container family from the file's first bytes (mp4/mov, matroska/webm, avi), else None.

    Content, not the name, decides: a clip renamed .bin is still a video, a photo renamed .mp4
    is not one.
    """
    head = _head(path)
    return None if head is None else video_container(head)


def _head(path: str | os.PathLike[str]) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(256)  # enough for an ftyp box's brand list
    except OSError:
        return None


def is_video(path: str | os.PathLike[str]) -> bool:
    """A video by content; a file whose content is neither (a broken .mp4) by its name, so it gets the video errors.

    A photo wins over its name: a JPEG called clip.mp4 is restored as the JPEG it is.
    """
    head = _head(path)
    if head and sniff_image(head) is not None:
        return False
    if head and video_container(head) is not None:
        return True
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def video_stream_problem(path: str | os.PathLike[str]) -> str | None:
    """The one-line refusal for a container with no video stream (an .m4a), found before any output is planned.

    Opening the container reads its header only; anything else that is wrong with the file is
    left to `probe`, which words it with the whole story.
    """
    try:
        av = _av()
        with av.open(str(path), "r") as inp:
            if any(not (s.disposition & 0x400) for s in inp.streams.video):
                return None
            kinds = sorted({s.type for s in inp.streams})
    except Exception:  # noqa: BLE001 - probe reports it properly later
        return None
    has = f" (it has {', '.join(kinds)} only)" if kinds else ""
    return f"{path}: no video stream{has}; nothing to deblur"




@dataclass
class VideoInfo:
    """What the output must keep of the input's video stream."""

    path: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    depth: int
    time_base: Fraction
    rate: Fraction | None
    frames: int  # declared frame count (0 when the container does not say)
    duration: float | None  # seconds
    duration_ticks: int | None  # the video stream's own duration, in time_base units
    start_time: int  # first timestamp of the video stream, in time_base units
    display_matrix: list[int] | None = None
    rotation: int = 0
    color: dict[str, int] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)  # "audio aac", "subtitle mov_text", ...
    #: HDR10 static metadata of the first frame (see `hdr_metadata`), or None.
    hdr: dict[str, Any] | None = None


def side_data(frame: Any) -> list[Any]:
    """A decoded frame's side-data entries (each with ``.type`` and its raw bytes).

    PyAV 18.1.1 made ``frame.side_data`` a plain mapping, whose iteration yields the entries'
    types; earlier releases yielded the entries themselves. Both are read here.
    """
    container = frame.side_data
    keys = list(container)
    if keys and not hasattr(keys[0], "type"):
        return [container[k] for k in keys]
    return keys


def hdr_metadata(frame: Any) -> dict[str, Any] | None:
    """The HDR10 static metadata a decoded frame carries: mastering display and light levels.

    ``{"primaries": ((rx, ry), (gx, gy), (bx, by)), "white": (x, y), "luminance": (min, max)}``
    (CIE 1931 chromaticities, cd/m²) and ``"light": (MaxCLL, MaxFALL)``, each only when present.
    An HDR10 player tone-maps by these numbers; a re-encode that drops them shows the same pixels
    too bright or washed out on many TVs, so they have to travel with the restored frames.
    """
    out: dict[str, Any] = {}
    for sd in side_data(frame):
        raw = bytes(sd)
        if sd.type.name == "MASTERING_DISPLAY_METADATA" and len(raw) >= 88:
            # AVMasteringDisplayMetadata: 3x2 + 2 + 1 + 1 AVRationals (int32 num/den), 2 int flags
            v = struct.unpack_from("<22i", raw)
            ratio = [v[i] / v[i + 1] if v[i + 1] else 0.0 for i in range(0, 20, 2)]  # 10 rationals
            if v[20]:
                out["primaries"] = tuple((ratio[2 * c], ratio[2 * c + 1]) for c in range(3))  # R, G, B
                out["white"] = (ratio[6], ratio[7])
            if v[21]:
                out["luminance"] = (ratio[8], ratio[9])
        elif sd.type.name == "CONTENT_LIGHT_LEVEL" and len(raw) >= 8:
            out["light"] = struct.unpack_from("<2I", raw)
    return out or None



def _bad(path: Path, what: str) -> DeblurError:
    return DeblurError(f"{path}: {what}")


def open_input(path: Path) -> Any:
    av = _av()
    try:
        return av.open(str(path), "r")
    except av.error.FileNotFoundError:
        return _raise(_bad(path, "no such file; check the path"))
    except av.error.PermissionError:
        return _raise(_bad(path, "cannot read it (permission denied)"))
    except av.error.FFmpegError as exc:
        kind = sniff_video(path)
        if kind is None:
            return _raise(_bad(path, "not a video (no mp4/mov/mkv/webm/avi data found); check the file"))
        return _raise(_bad(path, f"truncated or corrupt {kind} file ({_short(exc)}); copy the whole file again"))
    except OSError as exc:
        return _raise(_bad(path, f"cannot read it ({exc.strerror or exc})"))


def _raise(exc: BaseException) -> Any:
    raise exc


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:120]


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """The input's facts, or the one-line error a user can act on (decodes the first frame)."""
    path = Path(path)
    with open_input(path) as inp:
        videos = [s for s in inp.streams.video if not (s.disposition & 0x400)]  # skip attached cover pictures
        if not videos:
            kinds = sorted({s.type for s in inp.streams})
            has = f" (it has {', '.join(kinds)} only)" if kinds else ""
            raise _bad(path, f"no video stream{has}; nothing to deblur")
        vs = videos[0]
        cc = vs.codec_context
        name = cc.name if cc is not None else None
        if cc is None or not _can_decode(name):
            raise _bad(path, f"unsupported video codec {vs.codec_context.name if cc else '(unknown)'}; "
                       f"this build reads {', '.join(_supported_decoders())}")
        first = None
        try:
            for frame in inp.decode(vs):
                first = frame
                break
        except _av().error.FFmpegError as exc:
            raise _bad(path, f"truncated or corrupt video ({_short(exc)}); copy the whole file again") from None
        if first is None:
            raise _bad(path, "the video stream has no frames that can be decoded (truncated?)")
        fmt = first.format
        depth = max((c.bits for c in fmt.components), default=8)
        matrix = None
        rotation = 0
        for sd in side_data(first):
            if sd.type.name == "DISPLAYMATRIX":
                matrix = [int(v) for v in np.frombuffer(bytes(sd), dtype="<i4")[:9]]
                rotation = int(first.rotation)
        dur = None
        if vs.duration:
            dur = float(vs.duration * vs.time_base)
        elif inp.duration:
            dur = inp.duration / 1_000_000
        return VideoInfo(
            path=str(path), codec=name or "", width=first.width, height=first.height, pix_fmt=fmt.name,
            depth=depth, time_base=vs.time_base, rate=vs.average_rate or vs.guessed_rate, frames=int(vs.frames or 0),
            duration=dur, duration_ticks=int(vs.duration) if vs.duration else None,
            start_time=int(vs.start_time or 0), display_matrix=matrix, rotation=rotation,
            color={"color_primaries": int(first.color_primaries), "color_trc": int(first.color_trc),
                   "colorspace": int(first.colorspace), "color_range": int(first.color_range)},
            others=[f"{s.type} {s.codec_context.name if s.codec_context else s.codec_tag}" for s in inp.streams
                    if s is not vs and s.type in ("audio", "subtitle", "data")],
            hdr=hdr_metadata(first),
        )


def _can_decode(name: str | None) -> bool:
    if not name:
        return False
    try:
        _av().Codec(name, "r")
        return True
    except Exception:
        return False


def _supported_decoders() -> list[str]:
    return [n for n in _KNOWN_DECODERS if _can_decode(n)]


