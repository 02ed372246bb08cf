"""Videos, frame by frame, on the same engine as photos: ``deblur run clip.mp4 -o sharp.mp4``.

Read and written with PyAV (FFmpeg's libraries). What a viewer or an editor relies on is kept:

* Every frame's timestamp is copied from the input (variable frame rate stays variable), so are
  the time base, resolution, the display matrix (phone rotation), colour primaries, transfer,
  matrix and range, and the bit depth where the encoder can hold it (10-bit stays 10-bit), and
  HDR10 static metadata (mastering display, MaxCLL/MaxFALL) where the encoder can write it
  (x265, x264, SVT-AV1; a note says when it cannot).
* Audio, subtitle and data streams are copied packet for packet (remuxed, never re-encoded), and
  the container's metadata (creation time, location) is carried over.
* The video is re-encoded in the input's codec family at a quality meant to add no visible loss
  (x264 CRF 18, x265 CRF 20, VP9 CRF 20, SVT-AV1 CRF 22; ``crf``/``codec`` change it) or
  losslessly with FFV1 (``lossless``); the choice is reported as a note.

Frames are decoded on one background thread and encoded on another while the model works on the
current frame (bounded queues, so memory stays a few frames). The result is written under a
temporary name in a work folder beside the output (``.NAME.deblur-work/``) and renamed only when
complete, so an interrupted job never leaves a file under the final name. The video is encoded in
segments of ``segment_frames`` frames, each by a fresh encoder (so each starts on a keyframe), and
the work folder keeps every finished segment's encoded packets: a rerun with the same input and
settings takes the segments it already has from there instead of running the model again, and
the result is packet for packet the one an uninterrupted run writes. Encoded packets, not
lossless frames, keep the work folder about as large as the output (the partial output beside
them makes it about twice); `work_space` estimates that before a job starts, and a job the disk
cannot hold is refused with the numbers.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DeblurError, OptionError, OutputError, UsageError
from .fsutil import fsync_dir
from .imageio.formats import sniff as sniff_image
from .imageio.formats import video_container

if TYPE_CHECKING:
    from .api import Deblurrer, RestoreResult

#: Video containers we write, by extension, and the video encoders each can hold.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
_CONTAINER_CODECS = {
    ".mp4": ("h264", "hevc", "av1", "vp9", "mpeg4"),  # FFmpeg can put FFV1 in MP4, but few players read it
    ".m4v": ("h264", "hevc", "av1", "vp9", "mpeg4"),
    ".mov": ("h264", "hevc", "prores", "mpeg4", "mjpeg", "av1", "vp9"),
    ".mkv": ("h264", "hevc", "av1", "vp9", "vp8", "ffv1", "prores", "mpeg4", "mjpeg"),
    ".webm": ("vp9", "vp8", "av1"),
    ".avi": ("h264", "mpeg4", "mjpeg", "ffv1"),
}
#: Codec families: the decoder names FFmpeg reports, mapped to the encoder we write them with and
#: the default CRF that does not visibly add loss (None: the encoder's own quality scale).
_FAMILIES: dict[str, tuple[str, int | None]] = {
    "h264": ("libx264", 18),
    "hevc": ("libx265", 20),
    "vp9": ("libvpx-vp9", 20),
    "vp8": ("libvpx-vp9", 20),  # VP8's successor, same containers
    "av1": ("libsvtav1", 22),
    "mpeg4": ("mpeg4", None),
    "mjpeg": ("mjpeg", None),
    "prores": ("prores_ks", None),
    "ffv1": ("ffv1", None),
}
#: What ``--codec`` accepts.
CODEC_CHOICES = ("h264", "hevc", "vp9", "av1", "ffv1", "prores", "mpeg4")
#: Decoders worth naming when an input's codec cannot be read.
_KNOWN_DECODERS = ("h264", "hevc", "vp9", "vp8", "av1", "mpeg4", "mpeg2video", "mjpeg", "prores", "ffv1", "dnxhd")
#: Frames per segment: each starts a fresh encoder (so a keyframe) and is the unit of resuming. On a
#: 640x360 H.264 pan each extra keyframe cost about 9 frames' worth of bits: 32-frame segments made
#: the file about 25% larger than one encoder did, 96-frame ones about 10%.
DEFAULT_SEGMENT_FRAMES = 96
_QUEUE = 4  # frames in flight between the decoder, the model and the encoder


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


# -- options and facts ------------------------------------------------------------------------------
_DECIDES = {"decides_output": True}


@dataclass
class VideoOptions:
    """How to write the restored video; the defaults keep everything the input has.

    Fields marked ``decides_output`` are part of ``deblur batch``'s resume key for a video
    (`deblurcli.options.output_settings`), so a new one cannot be left out of it.
    """

    crf: int | None = field(default=None, metadata=_DECIDES)
    codec: str | None = field(default=None, metadata=_DECIDES)  # a family from CODEC_CHOICES; None = the input's
    lossless: bool = field(default=False, metadata=_DECIDES)
    start: float = field(default=0.0, metadata=_DECIDES)  # seconds from the start of the video stream
    duration: float | None = field(default=None, metadata=_DECIDES)
    #: Seconds of side-by-side (input | result) instead of the full result.
    preview: float | None = field(default=None, metadata=_DECIDES)
    #: None: the Deblurrer's own (its EngineOptions.strength, what --strength sets); a number overrides it.
    strength: float | None = field(default=None, metadata=_DECIDES)
    overwrite: bool = False
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    #: Called with each frame's index before the model sees it; raising from it stops the run (tests, GUIs).
    on_frame: Callable[[int], None] | None = None


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


def hdr_metadata(frame: Any) -> dict[str, Any] | None:
    """The HDR10 static metadata a decoded frame carries: mastering display and light levels.

    ``{"primaries": ((rx, ry), (gx, gy), (bx, by)), "white": (x, y), "luminance": (min, max)}``
    (CIE 1931 chromaticities, cd/m²) and ``"light": (MaxCLL, MaxFALL)``, each only when present.
    An HDR10 player tone-maps by these numbers; a re-encode that drops them shows the same pixels
    too bright or washed out on many TVs, so they have to travel with the restored frames.
    """
    out: dict[str, Any] = {}
    for sd in frame.side_data:
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


def _hdr_encoder_options(hdr: dict[str, Any], encoder: str) -> tuple[str, str] | None:
    """(option, value) that makes ``encoder`` write ``hdr`` (SEI / OBU metadata), or None if it cannot."""
    # Per encoder: option, mastering-display key, light-level key, chromaticity and luminance
    # formats. x265/x264 take integers in 0.00002 and 0.0001 cd/m² units, SVT-AV1 plain numbers.
    syntax = {
        "libx265": ("x265-params", "master-display", "max-cll", lambda x: str(round(x * 50000)),
                    lambda v: str(round(v * 10000))),
        "libx264": ("x264-params", "mastering-display", "cll", lambda x: str(round(x * 50000)),
                    lambda v: str(round(v * 10000))),
        "libsvtav1": ("svtav1-params", "mastering-display", "content-light", lambda x: f"{x:.5f}",
                      lambda v: f"{v:.4f}"),
    }.get(encoder)
    if syntax is None:
        return None
    option, display_key, light_key, chroma, lum = syntax
    parts: list[str] = []
    if "primaries" in hdr and "luminance" in hdr:
        (rx, ry), (gx, gy), (bx, by) = hdr["primaries"]  # written in G, B, R order
        wx, wy = hdr["white"]
        lo, hi = hdr["luminance"]
        xy = [f"{chroma(a)},{chroma(b)}" for a, b in ((gx, gy), (bx, by), (rx, ry), (wx, wy))]
        parts.append(f"{display_key}=G({xy[0]})B({xy[1]})R({xy[2]})WP({xy[3]})L({lum(hi)},{lum(lo)})")
    if "light" in hdr:
        parts.append("{}={},{}".format(light_key, *hdr["light"]))
    return (option, ":".join(parts)) if parts else None


def _bad(path: Path, what: str) -> DeblurError:
    return DeblurError(f"{path}: {what}")


def _open_input(path: Path) -> Any:
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
    with _open_input(path) as inp:
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
        for sd in first.side_data:
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


def capabilities() -> dict[str, Any]:
    """What this installation's PyAV can do with video, for ``deblur doctor``: a codec an input
    uses, or ``--codec`` asks for, fails only where its decoder or encoder is listed missing here."""
    try:
        av = _av()
    except DeblurError as exc:
        return {"pyav": None, "problem": str(exc)}
    encoders = {}
    for family in CODEC_CHOICES:
        name = _FAMILIES[family][0]
        try:
            av.Codec(name, "w")
            encoders[family] = name
        except Exception:
            encoders[family] = None
    versions = getattr(av, "library_versions", {}) or {}
    ffmpeg = versions.get("libavcodec")
    return {
        "pyav": getattr(av, "__version__", "?"),
        "libavcodec": ".".join(map(str, ffmpeg)) if ffmpeg else None,
        "decoders": _supported_decoders(),
        "encoders": encoders,
    }


# -- the encoder ------------------------------------------------------------------------------------
@dataclass
class EncoderChoice:
    family: str
    encoder: str
    pix_fmt: str
    options: dict[str, str]
    crf: int | None
    description: str
    notes: list[str] = field(default_factory=list)


def container_for(in_ext: str, opts: VideoOptions) -> str:
    """The extension a batch writes a video under: the input's own, unless the codec asked for
    (``--lossless``'s FFV1, ``--codec``) cannot go into that container; then .mkv, which holds them all.

    A batch has no output name to fix by hand, so refusing every .mp4 for ``--lossless`` would
    leave the user no way to get what they asked for.
    """
    ext = in_ext.lower()
    family = "ffv1" if opts.lossless else opts.codec
    allowed = _CONTAINER_CODECS.get(ext)
    if family is None or allowed is None or family in allowed or family not in _CONTAINER_CODECS[".mkv"]:
        return in_ext
    return ".mkv"


def choose_encoder(info: VideoInfo, out_ext: str, opts: VideoOptions) -> EncoderChoice:
    """The input's codec family at a visually lossless setting, unless told otherwise; say why."""
    av = _av()
    ext = out_ext.lower()
    allowed = _CONTAINER_CODECS.get(ext)
    if allowed is None:
        raise UsageError(f"unknown video container {out_ext or '(no extension)'}; end the output name in "
                         f"{', '.join(VIDEO_EXTENSIONS)}")
    notes: list[str] = []
    if opts.lossless:
        if opts.codec not in (None, "ffv1"):
            raise UsageError(f"--lossless writes FFV1; drop --codec {opts.codec} or --lossless")
        family = "ffv1"
        if family not in allowed:
            raise UsageError(f"--lossless: FFV1 cannot go into {ext}; write .mkv (or .avi) instead")
    elif opts.codec:
        if opts.codec not in CODEC_CHOICES:
            raise UsageError(f"--codec {opts.codec}: choose one of {', '.join(CODEC_CHOICES)}")
        family = opts.codec
        if family not in allowed:
            raise UsageError(f"--codec {family} cannot go into {ext}; choose .mkv or one of "
                             f"{', '.join(c for c in allowed if c in CODEC_CHOICES)}")
    else:
        family = info.codec if info.codec in _FAMILIES else "h264"
        if family not in allowed:
            fallback = "vp9" if ext == ".webm" else "h264"
            notes.append(f"{info.codec} cannot go into {ext}; writing {fallback}")
            family = fallback
    encoder, default_crf = _FAMILIES[family]
    try:
        codec = av.Codec(encoder, "w")
    except Exception:
        raise DeblurError(f"this PyAV build has no {encoder} encoder; choose another --codec or --lossless") from None
    formats = [f.name for f in codec.video_formats or []]
    pix = _pick_pix_fmt(info, formats)
    if family in ("h264", "hevc") and ext in (".mp4", ".m4v", ".mov") and not _is_420(pix):
        # H.264/HEVC 4:4:4 and 4:2:2 are valid but browsers and phones do not play them: an .mp4
        # exists to be played, so it gets 4:2:0 at the same depth; .mkv or --lossless keep the rest.
        plain = next((f for f in (("yuv420p10le",) if _depth_of(pix) > 8 else ()) + ("yuv420p",) if f in formats),
                     None)
        if plain is not None:
            notes.append(f"{info.pix_fmt} input written as {plain} (4:2:0) so that browsers and phones play the "
                         f"{ext}; write .mkv or use --lossless to keep {info.pix_fmt}")
            pix = plain
    if _depth_of(pix) < info.depth:
        notes.append(f"{encoder} here cannot write {info.depth}-bit video; writing {_depth_of(pix)}-bit "
                     "(--lossless or --codec hevc keep the bit depth)")
    crf = opts.crf if opts.crf is not None else default_crf
    options: dict[str, str] = {}
    if opts.crf is not None and default_crf is None:
        notes.append(f"--crf does not apply to {encoder}; ignored")
        crf = None
    if encoder == "libx264":
        options = {"crf": str(crf), "preset": "medium"}
    elif encoder == "libx265":
        options = {"crf": str(crf), "preset": "medium", "x265-params": "log-level=error"}
    elif encoder == "libvpx-vp9":
        options = {"crf": str(crf), "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
    elif encoder == "libsvtav1":
        options = {"crf": str(crf), "preset": "8"}
        os.environ.setdefault("SVT_LOG", "1")  # errors only; its banner would break one line per message
    elif encoder == "ffv1":
        options = {"level": "3", "slicecrc": "1"}
    elif encoder == "prores_ks":
        options = {"profile": "3"}  # HQ
    elif encoder in ("mpeg4", "mjpeg"):
        options = {"qscale": "2"}
    hdr = ""
    if info.hdr:
        extra = _hdr_encoder_options(info.hdr, encoder)
        if extra is None:
            notes.append(f"{encoder} cannot carry the input's HDR10 metadata (mastering display, light "
                         "levels); it is dropped (--codec hevc or av1 keeps it)")
        else:
            key, value = extra
            options[key] = f"{options[key]}:{value}" if options.get(key) else value
            hdr = ", HDR10 metadata kept"
    quality = ("lossless" if encoder == "ffv1" else f"crf {crf}" if crf is not None
               else "profile HQ" if encoder == "prores_ks" else "qscale 2")
    why = ("" if encoder == "ffv1" else " (as asked)" if opts.crf is not None or opts.codec
           else " (visually lossless; --crf/--codec to change, --lossless for FFV1)")
    desc = f"video: {family} with {encoder}, {quality}, {pix}{hdr}{why}"
    return EncoderChoice(family, encoder, pix, options, crf, desc, notes)


def _is_420(pix_fmt: str) -> bool:
    """Whether chroma is halved both ways (the only layout every H.264/HEVC player decodes)."""
    fmt = _av().VideoFormat(pix_fmt, 64, 64)
    comps = fmt.components
    return len(comps) >= 3 and not fmt.is_rgb and comps[1].width < comps[0].width and comps[1].height < comps[0].height


def _depth_of(pix_fmt: str) -> int:
    fmt = _av().VideoFormat(pix_fmt)
    return max((c.bits for c in fmt.components), default=8)


def _pick_pix_fmt(info: VideoInfo, formats: list[str]) -> str:
    """The input's pixel format if the encoder has it, else the nearest of the same bit depth."""
    if info.pix_fmt in formats:
        return info.pix_fmt
    plain = info.pix_fmt.replace("yuvj", "yuv")  # full range is signalled by color_range, not the format
    if plain in formats:
        return plain
    deep = [f for f in ("yuv420p10le", "yuv422p10le", "yuv444p10le", "yuv420p16le") if f in formats]
    if info.depth > 8 and deep:
        return deep[0]
    for f in ("yuv420p", "yuv422p", "yuv444p", "yuv422p10le"):
        if f in formats:
            return f
    return formats[0]


# -- the work folder --------------------------------------------------------------------------------
def work_dir(dst: str | os.PathLike[str]) -> Path:
    """Where an unfinished job keeps its frames and partial output: beside the output, hidden."""
    d = Path(dst)
    return d.with_name(f".{d.name}.deblur-work")


def work_space(info: VideoInfo, enc: EncoderChoice, opts: VideoOptions, input_bytes: int) -> tuple[int, int]:
    """(the output's estimated size, the disk space the job needs at its peak), in bytes, before it starts.

    The output is guessed from the input: a visually lossless re-encode of sharper frames may
    take up to about twice the input's bits for the same stretch (and never less than 0.1 bit a
    pixel); an intra or lossless codec from its usual bits per pixel. At its peak the job holds
    the stored segments (about the output) beside the partial output (the output), so twice the
    output; a preview keeps no segments.
    """
    length = opts.preview if opts.preview is not None else opts.duration
    total = info.duration or 0.0
    seconds = max(0.0, min(total - opts.start, length) if length is not None else total - opts.start) if total else 0.0
    rate = float(info.rate) if info.rate else 30.0
    frames = seconds * rate if seconds else float(info.frames or 0)
    pixels = info.width * info.height * (2.0 if opts.preview is not None else 1.0)
    per_sample = 2 if _depth_of(enc.pix_fmt) > 8 else 1
    if enc.encoder == "ffv1":
        out = 0.6 * 3 * per_sample * pixels * frames
    elif enc.encoder in ("prores_ks", "mjpeg", "mpeg4"):
        out = 4 / 8 * pixels * frames
    else:
        share = seconds / total if total else 1.0
        out = max(2.0 * input_bytes * share, 0.1 / 8 * pixels * frames)
    need = out if opts.preview is not None else 2 * out
    return int(out), int(need * 1.1) + (256 << 10)  # a tenth more: the estimate is a guess


def _check_disk(dst: Path, work: Path, info: VideoInfo, enc: EncoderChoice, opts: VideoOptions, src: Path) -> None:
    """Refuse, with the numbers, a job the disk cannot hold: better now than "disk full" after the work."""
    out, need = work_space(info, enc, opts, src.stat().st_size)
    if work.is_dir():  # segments an earlier run stored are already on the disk
        need -= sum(f.stat().st_size for f in work.iterdir() if f.is_file())
    try:
        free = shutil.disk_usage(dst.parent if dst.parent.exists() else Path.cwd()).free
    except OSError:
        return
    if need > free:
        raise OutputError(
            f"{dst}: not enough disk space: this video needs about {_gb(need)} (an output of about {_gb(out)} and "
            f"its resumable work folder {work.name}), and {dst.parent} has {_gb(free)} free; free some space, "
            "restore a section (--start/--duration) or write to another disk (-o)"
        )


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _job_key(src: Path, d: Deblurrer, opts: VideoOptions, enc: EncoderChoice) -> dict[str, Any]:
    st = src.stat()
    return {
        "input": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
        "settings": d.settings_key(), "strength": d.strength if opts.strength is None else opts.strength,
        "start": opts.start, "duration": opts.duration,
        "segment_frames": opts.segment_frames, "depth": _depth_of(enc.pix_fmt),
        # the work folder keeps encoded packets, so whatever decides the encoding is part of the key
        "encoder": [enc.encoder, enc.pix_fmt, sorted(enc.options.items())],
    }


def _prepare_work(work: Path, key: dict[str, Any]) -> int:
    """Create or reuse the work folder; return how many segments hold finished frames."""
    job = work / "job.json"
    if work.exists():
        try:
            same = json.loads(job.read_text()) == json.loads(json.dumps(key))
        except (OSError, ValueError):
            same = False
        if not same:
            shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir(parents=True, exist_ok=True)
        if not job.exists():
            tmp = work / "job.json.part"
            tmp.write_text(json.dumps(key, indent=1))
            os.replace(tmp, job)
    except OSError as exc:
        from .fsutil import is_disk_full

        why = "disk full; free some space" if is_disk_full(exc) else f"{exc.strerror}; choose another output"
        raise OutputError(f"{work}: cannot create the work folder ({why})") from None
    done = 0
    while (work / _segment_name(done)).is_file():
        done += 1
    return done


def _segment_name(k: int) -> str:
    return f"packets_{k:06d}.bin"


# -- the pipeline -----------------------------------------------------------------------------------
class _Stop(Exception):
    """Another stage failed or the job was interrupted: stop this one quietly."""


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue[Any], stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


@dataclass
class _Frame:
    index: int
    pts: int
    duration: int | None
    pixels: np.ndarray | None  # float32 HxWx3 in [0, 1]; None for frames taken from the work folder
    result: np.ndarray | None = None  # quantised output (uint8/uint16 HxWx3)


def restore_video(
    d: Deblurrer, src: str | os.PathLike[str], dst: str | os.PathLike[str], opts: VideoOptions | None = None, *,
    progress: Callable[[int, int | None, float], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> RestoreResult:
    """Restore every frame of ``src`` (or a section, or a side-by-side preview) into ``dst``.

    With ``opts.preview`` the side-by-side clip is what ``dst`` receives; the CLI names it with
    `preview_path` so a preview never takes the full result's name.

    ``progress(done, total, fps)`` is called after each frame (``total`` None when unknown).
    """
    from .api import RestoreResult, _check_destination

    opts = opts or VideoOptions()
    av = _av()
    t0 = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if opts.strength is not None and not 0.0 <= opts.strength <= 1.0:
        raise OptionError("strength", "must be between 0 and 1", value=opts.strength)
    if opts.start < 0 or (opts.duration is not None and opts.duration <= 0) or (
            opts.preview is not None and opts.preview <= 0):
        raise UsageError("--start must be >= 0, --duration and --preview > 0 (seconds)")
    if opts.segment_frames < 1:
        raise UsageError("segment_frames must be at least 1")
    _check_destination(src, dst, opts.overwrite)
    info = probe(src)
    enc = choose_encoder(info, dst.suffix, opts)
    notes = [enc.description, *enc.notes]
    for n in notes:
        if on_note:
            on_note(f"{dst}: {n}")
    preview = opts.preview is not None
    length = opts.preview if preview else opts.duration
    end = None if length is None else opts.start + length
    out_depth = _depth_of(enc.pix_fmt)
    work = work_dir(dst)
    _check_disk(dst, work, info, enc, opts, src)
    checkpoint = not preview
    done_segments = 0
    if checkpoint:
        done_segments = _prepare_work(work, _job_key(src, d, opts, enc))
    else:
        work.mkdir(parents=True, exist_ok=True)
    resumed = done_segments * opts.segment_frames
    if resumed and on_note:
        on_note(f"{dst}: resuming: {resumed} restored frames found in {work}")
    partial = work / f"partial{dst.suffix.lower()}"
    total = _expected_frames(info, opts.start, end)

    stop = threading.Event()
    decoded: queue.Queue[Any] = queue.Queue(_QUEUE)
    restored: queue.Queue[Any] = queue.Queue(_QUEUE)
    failure: list[BaseException] = []
    written = {"frames": 0}

    def fail(exc: BaseException) -> None:
        if not isinstance(exc, _Stop):
            failure.append(exc)
        stop.set()

    def decoder() -> None:
        try:
            _decode(av, src, info, opts.start, end, resumed, decoded, stop, whole=not (opts.start or end))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            fail(exc)

    def encoder() -> None:
        try:
            written["frames"] = _encode(av, src, info, enc, partial, work, restored, stop, opts, checkpoint,
                                        resumed, preview, out_depth)
        except av.error.FFmpegError as exc:
            # FFmpeg refusing the output (a stream the container cannot hold, a full disk): one line.
            from .fsutil import is_disk_full

            if is_disk_full(exc):
                fail(OutputError(f"{dst}: cannot write the video (disk full; free some space)"))
            else:
                fail(DeblurError(f"{dst}: cannot write the video ({_short(exc)}); if the input carries streams "
                                 "this container cannot hold, write .mkv"))
        except OSError as exc:
            fail(OutputError(f"{dst}: cannot write the video ({exc.strerror or exc})"))
        except BaseException as exc:  # noqa: BLE001
            fail(exc)

    threads = [threading.Thread(target=decoder, name="deblur-video-read", daemon=True),
               threading.Thread(target=encoder, name="deblur-video-write", daemon=True)]
    for t in threads:
        t.start()
    model_frames, model_seconds = 0, 0.0
    # One tile size for the whole clip: "auto" re-reads free memory for every image, and a tile that
    # changed mid-clip would change where frames are blended at seams (visible as flicker).
    saved_tile = d.tile
    if saved_tile == "auto":
        d.tile = d.tile_for(info.height, info.width)
    try:
        while True:
            item = _get(decoded, stop)
            if isinstance(item, _Frame):
                if opts.on_frame is not None:
                    opts.on_frame(item.index)
                if item.pixels is not None:
                    t1 = time.perf_counter()
                    # blended once, by the Deblurrer; the network alone (no kernel per frame)
                    out = d.restore(item.pixels, strength=opts.strength, deconv=False)
                    if preview:
                        out = _side_by_side(item.pixels, out, info.rotation)
                    item.result = _quantise(out, out_depth)
                    item.pixels = None
                    model_frames += 1
                    model_seconds += time.perf_counter() - t1
                if progress is not None:
                    progress(item.index + 1, total, model_frames / model_seconds if model_seconds else 0.0)
            _put(restored, item, stop)
            if item is None:
                break
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except BaseException as exc:
        stop.set()
        for t in threads:
            t.join(5)
        _tidy(work, keep=checkpoint)
        if isinstance(exc, _Stop) and failure:
            raise failure[0] from None
        raise
    finally:
        d.tile = saved_tile
    if failure:
        _tidy(work, keep=checkpoint)
        raise failure[0]
    if written["frames"] == 0:
        shutil.rmtree(work, ignore_errors=True)
        raise _bad(src, f"no frames in the section starting at {opts.start:g} s; check --start/--duration")
    final = dst
    try:
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, final)
        fsync_dir(final.parent)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror})") from None
    shutil.rmtree(work, ignore_errors=True)
    if resumed:
        notes.append(f"resumed: {min(resumed, written['frames'])} frames from the work folder")
    return RestoreResult(input=str(src), output=str(final), seconds=time.perf_counter() - t0, width=info.width,
                         height=info.height, bytes=final.stat().st_size, notes=notes)


def _tidy(work: Path, *, keep: bool) -> None:
    """After a failure, remove the work folder unless it holds restored frames worth resuming from."""
    if not keep or not any(work.glob("packets_*.bin")):
        shutil.rmtree(work, ignore_errors=True)


def preview_path(dst: str | os.PathLike[str]) -> Path:
    """``NAME_preview.EXT`` beside the output: the side-by-side clip ``--preview`` writes."""
    p = Path(dst)
    return p.with_name(f"{p.stem}_preview{p.suffix}")


def _expected_frames(info: VideoInfo, start: float, end: float | None) -> int | None:
    """For the progress bar's ETA: the declared count, else duration x rate (Matroska declares none)."""
    if not (start or end) and info.frames:
        return info.frames
    if info.rate and info.duration:
        stop = min(end, info.duration) if end is not None else info.duration
        return max(0, round((stop - start) * float(info.rate)))
    return None


def _side_by_side(before: np.ndarray, after: np.ndarray, rotation: int) -> np.ndarray:
    """Input | result as the viewer will see it: stacked in the stored frame when it is shown rotated."""
    if rotation % 180 == 90 or rotation % 180 == -90:
        # A quarter turn shows the stored top on the left (counter-clockwise) or on the right.
        first, second = (before, after) if rotation % 360 == 90 else (after, before)
        gap = np.ones((8, before.shape[1], 3), np.float32)
        return np.concatenate([first, gap, second], axis=0)
    gap = np.ones((before.shape[0], 8, 3), np.float32)
    return np.concatenate([before, gap, after], axis=1)


def _quantise(x: np.ndarray, depth: int) -> np.ndarray:
    if depth > 8:
        return (np.clip(x, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _rgb_format(depth: int) -> str:
    return "rgb48le" if depth > 8 else "rgb24"


def _decode(av: Any, src: Path, info: VideoInfo, start: float, end: float | None, resumed: int,
            out: queue.Queue[Any], stop: threading.Event, *, whole: bool) -> None:
    """Demux and decode on this thread: frames (as float RGB) and the other streams' packets, in order."""
    with _open_input(src) as inp:
        vs = next(s for s in inp.streams.video if not (s.disposition & 0x400))
        vs.thread_type = "AUTO"
        keep = [s for s in inp.streams if s is not vs and s.type in ("audio", "subtitle", "data")]
        tb = vs.time_base
        origin = float(info.start_time * tb)
        if start > 0:
            inp.seek(int((origin + start) / tb), stream=vs, backward=True, any_frame=False)
        depth_fmt = _rgb_format(info.depth)
        index = 0
        count_all = 0
        shift = None  # seconds subtracted from every timestamp of a section
        if whole:
            shift = 0.0
        pending: list[Any] = []  # packets of other streams seen before the first kept frame
        durations: dict[int, int] = {}
        finished = False
        try:
            for packet in inp.demux([vs, *keep]):
                if stop.is_set():
                    raise _Stop
                if packet.stream is not vs:
                    if packet.dts is None or packet.pts is None:
                        continue
                    t = float(packet.pts * packet.time_base) - origin
                    if not whole and (t < start - 1e-9 or (end is not None and t >= end - 1e-9)):
                        continue  # a whole run keeps everything, encoder priming before 0 included
                    # The stream index travels with the packet: its stream object dies with this
                    # container, which may close before the writer reaches the packet.
                    if shift is None:
                        pending.append((packet.stream.index, packet))
                    else:
                        _put(out, (packet.stream.index, _shifted(packet, shift)), stop)
                    continue
                if finished:
                    continue
                if packet.pts is not None and packet.duration:
                    # Frame-threaded decoders can hand a frame its neighbour's duration; the
                    # container's own per-packet value is the one to keep.
                    durations[packet.pts] = packet.duration
                for frame in vs.decode(packet):
                    count_all += 1
                    if frame.pts is None:
                        continue
                    t = float(frame.pts * tb) - origin
                    if t < start - 1e-9:
                        continue
                    if end is not None and t >= end - 1e-9:
                        finished = True
                        break
                    if shift is None:
                        shift = t
                        for i, p in pending:
                            _put(out, (i, _shifted(p, shift)), stop)
                        pending.clear()
                    dur = durations.pop(frame.pts, None) or frame.duration or None
                    _put(out, _decoded(frame, index, shift, tb, resumed, depth_fmt, info, dur), stop)
                    index += 1
        except av.error.FFmpegError as exc:
            raise _bad(src, f"truncated or corrupt video at frame {index} ({_short(exc)}); "
                       "copy the whole file again") from None
        if whole and info.frames and count_all < info.frames:
            raise _bad(src, f"truncated: only {count_all} of its {info.frames} frames could be read; "
                       "copy the whole file again")
    _put(out, None, stop)


def _shifted(packet: Any, shift: float) -> Any:
    if shift:
        delta = round(shift / packet.time_base)
        packet.pts -= delta
        packet.dts -= delta
    return packet


def _decoded(frame: Any, index: int, shift: float, tb: Fraction, resumed: int, fmt: str, info: VideoInfo,
             dur: int | None) -> _Frame:
    pts = frame.pts - (round(shift / tb) if shift else 0)
    if index < resumed:
        return _Frame(index, pts, dur, None)
    rng = info.color.get("color_range") or 1
    rgb = frame.to_ndarray(format=fmt, src_color_range=rng, dst_color_range=2)
    scale = 65535.0 if rgb.dtype == np.uint16 else 255.0
    return _Frame(index, pts, dur, rgb.astype(np.float32) / np.float32(scale))


def _encode(av: Any, src: Path, info: VideoInfo, enc: EncoderChoice, partial: Path, work: Path,
            q: queue.Queue[Any], stop: threading.Event, opts: VideoOptions, checkpoint: bool, resumed: int,
            preview: bool, depth: int) -> int:
    """Encode restored frames segment by segment, mux the copied packets, keep each segment's packets to resume."""
    rgb_fmt = _rgb_format(depth)
    seg_n = opts.segment_frames
    with _open_input(src) as inp, av.open(str(partial), "w") as out:
        for k, v in inp.metadata.items():
            if k.lower() not in ("encoder", "duration", "major_brand", "minor_version", "compatible_brands"):
                out.metadata[k] = v
        vs_in = next(s for s in inp.streams.video if not (s.disposition & 0x400))
        vs = out.add_stream(enc.encoder, rate=info.rate if info.rate else None, options=dict(enc.options))
        width, height = info.width, info.height
        if preview:
            if info.rotation % 180 in (90, -90):
                height = 2 * height + 8
            else:
                width = 2 * width + 8
        vs.width, vs.height, vs.pix_fmt = width, height, enc.pix_fmt
        vs.time_base = info.time_base
        vs.codec_context.time_base = info.time_base
        for k, v in info.color.items():
            setattr(vs.codec_context, k, v)
        if info.display_matrix:
            vs.set_display_matrix(info.display_matrix)
        for k, v in vs_in.metadata.items():
            if k.lower() not in ("handler_name", "encoder", "duration", "vendor_id"):
                vs.metadata[k] = v
        copies: dict[int, Any] = {}
        supported = out.supported_codecs
        for s in inp.streams:
            if s is vs_in or s.type not in ("audio", "subtitle", "data"):
                continue
            name = s.codec_context.name if s.codec_context else None
            if name and name not in supported:
                own = src.suffix.lower()
                better = own if own in VIDEO_EXTENSIONS and own != partial.suffix else ".mkv"
                raise DeblurError(f"{src}: its {s.type} stream ({name}) cannot be copied into "
                                  f"{partial.suffix} without re-encoding; write {better} instead")
            try:
                copies[s.index] = copy = out.add_stream_from_template(s)
            except Exception as exc:
                raise DeblurError(f"{src}: its {s.type} stream #{s.index} cannot be copied into {partial.suffix} "
                                  f"({_short(exc)}); write .mkv instead") from None
            # The template copies codec parameters only; a player picks tracks by language, title
            # and the default/forced flags, so those travel too.
            for k, v in s.metadata.items():
                if k.lower() not in ("handler_name", "encoder", "duration", "vendor_id") and not k.startswith("_"):
                    copy.metadata[k] = v
            copy.disposition = s.disposition
        seg_enc: Any = None  # this segment's own encoder (see _segment_encoder)
        stored: list[tuple[bytes, int | None, int | None, int, bool]] | None = None
        count = 0
        colors = info.color
        durations: dict[int, int] = {}
        held: list[Any] = [None]  # the newest packet, muxed once the next one (or the end) is known
        first_dts: list[int | None] = [None]
        whole = not (opts.start or opts.duration or preview)
        target = info.duration_ticks if whole and partial.suffix in (".mp4", ".m4v", ".mov") else None

        def encode(rgb: np.ndarray, pts: int, duration: int | None) -> None:
            frame = av.VideoFrame.from_ndarray(rgb, format=rgb_fmt)
            frame = frame.reformat(format=enc.pix_fmt, dst_colorspace=colors.get("colorspace") or None,
                                   dst_color_range=colors.get("color_range") or 1)
            for k, v in colors.items():
                setattr(frame, k, v)
            frame.pts = pts
            frame.time_base = info.time_base
            if duration:
                durations[pts] = duration
            mux(seg_enc.encode(frame))

        def mux(packets: list[Any]) -> None:
            # Encoders guess each packet's duration from the frame rate; the input's own durations
            # keep a variable-rate stream's last frame, and so its length, as they were.
            for p in packets:
                p.stream = vs
                if p.pts is not None and p.pts in durations:
                    p.duration = durations.pop(p.pts)
                if stored is not None:
                    stored.append((bytes(p), p.pts, p.dts, int(p.duration or 0), bool(p.is_keyframe)))
                if first_dts[0] is None and p.dts is not None:
                    first_dts[0] = p.dts
                if held[0] is not None:
                    out.mux(held[0])
                held[0] = p

        def finish() -> None:
            # MP4/MOV give a track the length of its samples in decoding order (last dts + last
            # duration - first dts), so the encoder's own choice of frame order decides the last
            # sample's share; it is set so the track lasts exactly as long as the input's.
            p = held[0]
            if p is None:
                return
            if target and first_dts[0] is not None and p.dts is not None:
                rest = target - (p.dts - first_dts[0])
                if rest > 0:
                    p.duration = rest
            out.mux(p)

        def end_segment() -> None:
            nonlocal seg_enc, stored
            if seg_enc is not None:
                mux(seg_enc.encode(None))
                if stored is not None:
                    _store_segment(work, count_k[0], stored)
            seg_enc, stored = None, None

        count_k = [0]
        while True:
            item = _get(q, stop)
            if item is None:
                break
            if not isinstance(item, _Frame):
                packet = item[1]
                packet.stream = copies[item[0]]
                out.mux(packet)
                continue
            k, first = divmod(item.index, seg_n)
            if first == 0:
                end_segment()
                if item.result is None:  # restored and encoded by an earlier run: its packets, as they were
                    for p in _load_segment(av, work, k):
                        mux([p])
                else:
                    seg_enc = _segment_encoder(av, vs, enc, info)
                    stored = [] if checkpoint and item.index >= resumed else None
                    count_k[0] = k
            if item.result is not None:
                encode(item.result, item.pts, item.duration)
            count += 1
        end_segment()
        finish()
    return count


def _segment_encoder(av: Any, vs: Any, enc: EncoderChoice, info: VideoInfo) -> Any:
    """A fresh encoder, set up as the output stream's own, for one segment of frames.

    Every segment starts a new encoder (so a keyframe) in every run: a resumed job can then take
    the packets an earlier run stored for the segments it finished and encode the rest, and its
    file is packet for packet what an uninterrupted run writes. Keeping encoded packets, not
    lossless frames, is what keeps the work folder about the size of the output.
    """
    own = vs.codec_context
    ctx = av.CodecContext.create(enc.encoder, "w")
    ctx.width, ctx.height, ctx.pix_fmt = own.width, own.height, own.pix_fmt
    ctx.time_base = own.time_base
    if own.framerate:
        ctx.framerate = own.framerate
    ctx.flags = own.flags  # the container's global header, so the stream's extradata fits every segment
    for k, v in info.color.items():
        setattr(ctx, k, v)
    ctx.options = dict(enc.options)
    return ctx


def _store_segment(work: Path, k: int, packets: list[tuple[bytes, int | None, int | None, int, bool]]) -> None:
    """Keep one finished segment's packets: a JSON index line, then the payloads; complete or not at all."""
    index = [[pts, dts, dur, key, len(data)] for data, pts, dts, dur, key in packets]
    path = work / _segment_name(k)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(json.dumps(index).encode() + b"\n")
        for data, *_ in packets:
            f.write(data)
    os.replace(tmp, path)


def _load_segment(av: Any, work: Path, k: int) -> list[Any]:
    """The packets `_store_segment` kept for segment ``k``."""
    raw = (work / _segment_name(k)).read_bytes()
    head, _, body = raw.partition(b"\n")
    out, pos = [], 0
    for pts, dts, dur, key, size in json.loads(head):
        p = av.Packet(body[pos : pos + size])
        pos += size
        p.pts, p.dts = pts, dts
        if dur:
            p.duration = dur
        p.is_keyframe = bool(key)
        out.append(p)
    return out
