"""The work folder that makes a video job resumable: beside the output, hidden, it holds the job's
key, the partial output and every finished segment's encoded packets.

Every segment is encoded by a fresh encoder (so it starts on a keyframe) in every run; a rerun
with the same key takes the segments an earlier run stored instead of running the model on their
frames again, and writes packet for packet what an uninterrupted run writes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import OutputError
from ..fsutil import atomic_write, is_disk_full
from .encode import EncoderChoice, VideoOptions, _depth_of
from .probing import VideoInfo

if TYPE_CHECKING:
    from ..api import Deblurrer


def work_dir(dst: str | os.PathLike[str]) -> Path:
    """Where an unfinished job keeps its frames and partial output: beside the output, hidden."""
    d = Path(dst)
    return d.with_name(f".{d.name}.deblur-work")


def interrupted_message(dst: str | os.PathLike[str]) -> str | None:
    """After an interrupted job: where its restored frames wait and how to pick them up (None if nothing was kept)."""
    work = work_dir(dst)
    if not work.is_dir():
        return None
    return (f"interrupted: the frames restored so far are kept in {work}; run the same command again to resume "
            "from there (or delete that folder)")


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
            atomic_write(job, json.dumps(key, indent=1))
    except OSError as exc:
        why = "disk full; free some space" if is_disk_full(exc) else f"{exc.strerror}; choose another output"
        raise OutputError(f"{work}: cannot create the work folder ({why})") from None
    done = 0
    while (work / _segment_name(done)).is_file():
        done += 1
    return done


def _segment_name(k: int) -> str:
    return f"packets_{k:06d}.bin"


def _tidy(work: Path, *, keep: bool) -> None:
    """After a failure, remove the work folder unless it holds restored frames worth resuming from."""
    if not keep or not any(work.glob("packets_*.bin")):
        shutil.rmtree(work, ignore_errors=True)


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

    def write(f: BinaryIO) -> None:
        f.write(json.dumps(index).encode() + b"\n")
        for data, *_ in packets:
            f.write(data)

    atomic_write(work / _segment_name(k), write)


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
