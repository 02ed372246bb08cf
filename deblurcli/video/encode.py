"""How a restored video is written: the encoder, pixel format and quality that keep what the input
has (bit depth, HDR10 metadata, a codec the container can hold), and the disk space a job needs
before it starts. The options a user gives are `options.VideoOptions`.

Nothing here decodes or encodes frames; `pipeline` does, with what `choose_encoder` returns.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeblurError, OutputError, UsageError
from .options import CODEC_CHOICES, VideoOptions
from .probing import VIDEO_EXTENSIONS, VideoInfo, _av, _supported_decoders

#: The video encoders each container we write (`VIDEO_EXTENSIONS`) can hold.
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
    ext = out_ext.lower()
    allowed = _CONTAINER_CODECS.get(ext)
    if allowed is None:
        raise UsageError(f"unknown video container {out_ext or '(no extension)'}; end the output name in "
                         f"{', '.join(VIDEO_EXTENSIONS)}")
    notes: list[str] = []
    family = _family(info, ext, allowed, opts, notes)
    encoder, default_crf = _FAMILIES[family]
    try:
        codec = _av().Codec(encoder, "w")
    except Exception:
        raise DeblurError(f"this PyAV build has no {encoder} encoder; choose another --codec or --lossless") from None
    pix = _output_pix_fmt(info, family, ext, [f.name for f in codec.video_formats or []], notes)
    if _depth_of(pix) < info.depth:
        notes.append(f"{encoder} here cannot write {info.depth}-bit video; writing {_depth_of(pix)}-bit "
                     "(--lossless or --codec hevc keep the bit depth)")
    crf = opts.crf if opts.crf is not None else default_crf
    if opts.crf is not None and default_crf is None:
        notes.append(f"--crf does not apply to {encoder}; ignored")
        crf = None
    options = _encoder_options(encoder, crf)
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


def _family(info: VideoInfo, ext: str, allowed: tuple[str, ...], opts: VideoOptions, notes: list[str]) -> str:
    """The codec family to write: what the user asked for (refused if ``ext`` cannot hold it), else the input's.

    An input codec the container cannot hold is a note, not an error: the user asked for nothing.
    """
    if opts.lossless:
        if opts.codec not in (None, "ffv1"):
            raise UsageError(f"--lossless writes FFV1; drop --codec {opts.codec} or --lossless")
        if "ffv1" not in allowed:
            raise UsageError(f"--lossless: FFV1 cannot go into {ext}; write .mkv (or .avi) instead")
        return "ffv1"
    if opts.codec:
        if opts.codec not in CODEC_CHOICES:
            raise UsageError(f"--codec {opts.codec}: choose one of {', '.join(CODEC_CHOICES)}")
        if opts.codec not in allowed:
            raise UsageError(f"--codec {opts.codec} cannot go into {ext}; choose .mkv or one of "
                             f"{', '.join(c for c in allowed if c in CODEC_CHOICES)}")
        return opts.codec
    family = info.codec if info.codec in _FAMILIES else "h264"
    if family not in allowed:
        fallback = "vp9" if ext == ".webm" else "h264"
        notes.append(f"{info.codec} cannot go into {ext}; writing {fallback}")
        family = fallback
    return family


def _output_pix_fmt(info: VideoInfo, family: str, ext: str, formats: list[str], notes: list[str]) -> str:
    """The input's pixel format as near as the encoder allows, but 4:2:0 in a container made to be played.

    H.264/HEVC 4:4:4 and 4:2:2 are valid but browsers and phones do not play them: an .mp4 exists
    to be played, so it gets 4:2:0 at the same depth; .mkv or --lossless keep the rest.
    """
    pix = _pick_pix_fmt(info, formats)
    if family in ("h264", "hevc") and ext in (".mp4", ".m4v", ".mov") and not _is_420(pix):
        plain = next((f for f in (("yuv420p10le",) if _depth_of(pix) > 8 else ()) + ("yuv420p",) if f in formats),
                     None)
        if plain is not None:
            notes.append(f"{info.pix_fmt} input written as {plain} (4:2:0) so that browsers and phones play the "
                         f"{ext}; write .mkv or use --lossless to keep {info.pix_fmt}")
            pix = plain
    return pix


def _encoder_options(encoder: str, crf: int | None) -> dict[str, str]:
    """Each encoder's own spelling of the quality we promise (CRF, lossless FFV1, ProRes HQ, qscale 2)."""
    if encoder == "libx264":
        return {"crf": str(crf), "preset": "medium"}
    if encoder == "libx265":
        return {"crf": str(crf), "preset": "medium", "x265-params": "log-level=error"}
    if encoder == "libvpx-vp9":
        return {"crf": str(crf), "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"}
    if encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # errors only; its banner would break one line per message
        return {"crf": str(crf), "preset": "8"}
    if encoder == "ffv1":
        return {"level": "3", "slicecrc": "1"}
    if encoder == "prores_ks":
        return {"profile": "3"}  # HQ
    if encoder in ("mpeg4", "mjpeg"):
        return {"qscale": "2"}
    return {}


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


