"""Restoring a video: decode on one thread, run the model on this one, encode on another.

Bounded queues keep memory at a few frames. The output is written under a temporary name in the
work folder (`segments`) and renamed only when complete, so an interrupted job never leaves a file
under the final name; the video is encoded in segments of ``segment_frames`` frames, and a rerun
takes the segments an earlier run finished from the work folder.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DeblurError, OptionError, OutputError, UsageError
from ..fsutil import replace_durably
from .encode import VIDEO_EXTENSIONS, EncoderChoice, VideoOptions, _check_disk, _depth_of, choose_encoder
from .probing import VideoInfo, _av, _bad, _short, open_input, probe
from .segments import (
    _job_key,
    _load_segment,
    _prepare_work,
    _segment_encoder,
    _store_segment,
    _tidy,
    work_dir,
)

if TYPE_CHECKING:
    from ..api import Deblurrer, RestoreResult

_QUEUE = 4  # frames in flight between the decoder, the model and the encoder
#: Stream metadata a re-encode or a remux makes untrue (the muxer writes its own).
_STALE_STREAM_TAGS = ("handler_name", "encoder", "duration", "vendor_id")
_STALE_CONTAINER_TAGS = ("encoder", "duration", "major_brand", "minor_version", "compatible_brands")


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




@dataclass
class _Job:
    """One video job, planned before any frame is decoded: what is read, how it is written, where."""

    src: Path
    dst: Path
    opts: VideoOptions
    info: VideoInfo
    enc: EncoderChoice
    notes: list[str]
    end: float | None  # seconds from the stream's start where the section ends; None: the end
    work: Path
    resumed: int  # frames whose encoded packets an earlier run left in the work folder

    @property
    def preview(self) -> bool:
        return self.opts.preview is not None

    @property
    def checkpoint(self) -> bool:
        """Whether finished segments are kept to resume from (a preview is cheap to redo)."""
        return not self.preview

    @property
    def depth(self) -> int:
        return _depth_of(self.enc.pix_fmt)

    @property
    def partial(self) -> Path:
        return self.work / f"partial{self.dst.suffix.lower()}"


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
    from ..api import RestoreResult

    opts = opts or VideoOptions()
    _av()  # a missing PyAV is said before anything else
    t0 = time.perf_counter()
    _check_options(opts)
    job = _plan(d, Path(src), Path(dst), opts, on_note)
    written = _run_stages(d, job, progress)
    final = _publish(job, written)
    notes = job.notes
    if job.resumed:
        notes.append(f"resumed: {min(job.resumed, written)} frames from the work folder")
    return RestoreResult(input=str(job.src), output=str(final), seconds=time.perf_counter() - t0,
                         width=job.info.width, height=job.info.height, bytes=final.stat().st_size, notes=notes)


def _check_options(opts: VideoOptions) -> None:
    if opts.strength is not None and not 0.0 <= opts.strength <= 1.0:
        raise OptionError("strength", "must be between 0 and 1", value=opts.strength)
    if opts.start < 0 or (opts.duration is not None and opts.duration <= 0) or (
            opts.preview is not None and opts.preview <= 0):
        raise UsageError("--start must be >= 0, --duration and --preview > 0 (seconds)")
    if opts.segment_frames < 1:
        raise UsageError("segment_frames must be at least 1")


def _plan(d: Deblurrer, src: Path, dst: Path, opts: VideoOptions,
          on_note: Callable[[str], None] | None) -> _Job:
    """Everything that can be refused is refused here, before a thread starts: the destination, the
    input, the encoder, the disk space; then the work folder is made or taken up again."""
    from ..api import _check_destination

    _check_destination(src, dst, opts.overwrite)
    info = probe(src)
    enc = choose_encoder(info, dst.suffix, opts)
    notes = [enc.description, *enc.notes]
    for n in notes:
        if on_note:
            on_note(f"{dst}: {n}")
    length = opts.preview if opts.preview is not None else opts.duration
    end = None if length is None else opts.start + length
    work = work_dir(dst)
    _check_disk(dst, work, info, enc, opts, src)
    done_segments = 0
    if opts.preview is None:
        done_segments = _prepare_work(work, _job_key(src, d, opts, enc))
    else:
        work.mkdir(parents=True, exist_ok=True)
    resumed = done_segments * opts.segment_frames
    if resumed and on_note:
        on_note(f"{dst}: resuming: {resumed} restored frames found in {work}")
    return _Job(src, dst, opts, info, enc, notes, end, work, resumed)


def _run_stages(d: Deblurrer, job: _Job, progress: Callable[[int, int | None, float], None] | None) -> int:
    """Decode, restore and encode the frames; return how many the output holds.

    The first failure of any stage stops the others; the work folder is kept only when it holds
    segments worth resuming from.
    """
    stop = threading.Event()
    decoded: queue.Queue[Any] = queue.Queue(_QUEUE)
    restored: queue.Queue[Any] = queue.Queue(_QUEUE)
    failure: list[BaseException] = []
    written = [0]

    def fail(exc: BaseException) -> None:
        if not isinstance(exc, _Stop):
            failure.append(exc)
        stop.set()

    def decoder() -> None:
        try:
            _decode(_av(), job.src, job.info, job.opts.start, job.end, job.resumed, decoded, stop,
                    whole=not (job.opts.start or job.end))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            fail(exc)

    def encoder() -> None:
        try:
            written[0] = _encode(_av(), job, restored, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            fail(_write_error(job.dst, exc))

    threads = [threading.Thread(target=decoder, name="deblur-video-read", daemon=True),
               threading.Thread(target=encoder, name="deblur-video-write", daemon=True)]
    for t in threads:
        t.start()
    try:
        _restore_frames(d, job, decoded, restored, stop, progress)
        for t in threads:
            while t.is_alive():
                t.join(0.1)
    except BaseException as exc:
        stop.set()
        for t in threads:
            t.join(5)
        _tidy(job.work, keep=job.checkpoint)
        if isinstance(exc, _Stop) and failure:
            raise failure[0] from None
        raise
    if failure:
        _tidy(job.work, keep=job.checkpoint)
        raise failure[0]
    return written[0]


def _write_error(dst: Path, exc: BaseException) -> BaseException:
    """FFmpeg or the OS refusing the output (a stream the container cannot hold, a full disk), as one line."""
    from ..fsutil import is_disk_full

    if isinstance(exc, _av().error.FFmpegError):
        if is_disk_full(exc):
            return OutputError(f"{dst}: cannot write the video (disk full; free some space)")
        return DeblurError(f"{dst}: cannot write the video ({_short(exc)}); if the input carries streams "
                           "this container cannot hold, write .mkv")
    if isinstance(exc, OSError):
        return OutputError(f"{dst}: cannot write the video ({exc.strerror or exc})")
    return exc


def _restore_frames(d: Deblurrer, job: _Job, decoded: queue.Queue[Any], restored: queue.Queue[Any],
                    stop: threading.Event, progress: Callable[[int, int | None, float], None] | None) -> None:
    """The model's stage: each decoded frame restored, quantised and handed to the encoder, in order."""
    info, opts = job.info, job.opts
    # One tile size for the whole clip: "auto" re-reads free memory for every image, and a tile that
    # changed mid-clip would change where frames are blended at seams (visible as flicker).
    tile = d.tile_for(info.height, info.width)
    total = _expected_frames(info, opts.start, job.end)
    model_frames, model_seconds = 0, 0.0
    while True:
        item = _get(decoded, stop)
        if isinstance(item, _Frame):
            if opts.on_frame is not None:
                opts.on_frame(item.index)
            if item.pixels is not None:
                t1 = time.perf_counter()
                # blended once, by the Deblurrer; the network alone (no kernel per frame)
                out = d.restore(item.pixels, strength=opts.strength, tile=tile, deconv=False)
                if job.preview:
                    out = _side_by_side(item.pixels, out, info.rotation)
                item.result = _quantise(out, job.depth)
                item.pixels = None
                model_frames += 1
                model_seconds += time.perf_counter() - t1
            if progress is not None:
                progress(item.index + 1, total, model_frames / model_seconds if model_seconds else 0.0)
        _put(restored, item, stop)
        if item is None:
            return


def _publish(job: _Job, written: int) -> Path:
    """Give the finished output its name (durably), and remove the work folder."""
    if written == 0:
        shutil.rmtree(job.work, ignore_errors=True)
        raise _bad(job.src, f"no frames in the section starting at {job.opts.start:g} s; check --start/--duration")
    final = job.dst
    try:
        replace_durably(job.partial, final)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror})") from None
    shutil.rmtree(job.work, ignore_errors=True)
    return final


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
    with open_input(src) as inp:
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




def _encode(av: Any, job: _Job, q: queue.Queue[Any], stop: threading.Event) -> int:
    """Encode restored frames segment by segment, mux the copied packets, keep each segment's packets to resume."""
    seg_n = job.opts.segment_frames
    with open_input(job.src) as inp, av.open(str(job.partial), "w") as out:
        for k, v in inp.metadata.items():
            if k.lower() not in _STALE_CONTAINER_TAGS:
                out.metadata[k] = v
        writer = _Writer(av, job, inp, out)
        count = 0
        while True:
            item = _get(q, stop)
            if item is None:
                break
            if not isinstance(item, _Frame):
                writer.copy(*item)
                continue
            k, first = divmod(item.index, seg_n)
            if first == 0:
                writer.next_segment(k, item)
            if item.result is not None:
                writer.encode(item.result, item.pts, item.duration)
            count += 1
        writer.end_segment()
        writer.finish()
    return count


def _add_video_stream(out: Any, inp: Any, job: _Job) -> Any:
    """The output's video stream: the input's size (twice as wide or high for a preview), timing,
    colour, rotation and tags, written by the chosen encoder."""
    info, enc = job.info, job.enc
    vs_in = next(s for s in inp.streams.video if not (s.disposition & 0x400))
    vs = out.add_stream(enc.encoder, rate=info.rate if info.rate else None, options=dict(enc.options))
    width, height = info.width, info.height
    if job.preview:
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
        if k.lower() not in _STALE_STREAM_TAGS:
            vs.metadata[k] = v
    return vs


def _add_copied_streams(out: Any, inp: Any, job: _Job) -> dict[int, Any]:
    """An output stream for each audio, subtitle and data stream, by input stream index; refused
    (with the container to write instead) when the output container cannot hold one as it is."""
    src, partial = job.src, job.partial
    vs_in = next(s for s in inp.streams.video if not (s.disposition & 0x400))
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
            if k.lower() not in _STALE_STREAM_TAGS and not k.startswith("_"):
                copy.metadata[k] = v
        copy.disposition = s.disposition
    return copies


class _Writer:
    """The output container while frames arrive: a fresh encoder per segment, every packet muxed in order.

    The newest video packet is held back until the next one (or the end) is known, so the last
    one's duration can still be set (`finish`).
    """

    def __init__(self, av: Any, job: _Job, inp: Any, out: Any) -> None:
        self.av, self.job, self.out = av, job, out
        self.vs = _add_video_stream(out, inp, job)
        self.copies = _add_copied_streams(out, inp, job)
        self.rgb_fmt = _rgb_format(job.depth)
        self.seg_enc: Any = None  # this segment's own encoder (see _segment_encoder)
        self.stored: list[tuple[bytes, int | None, int | None, int, bool]] | None = None
        self.segment = 0
        self.durations: dict[int, int] = {}
        self.held: Any = None
        self.first_dts: int | None = None
        whole = not (job.opts.start or job.opts.duration or job.preview)
        self.target = job.info.duration_ticks if whole and job.partial.suffix in (".mp4", ".m4v", ".mov") else None

    def copy(self, index: int, packet: Any) -> None:
        """A packet of a copied stream (the stream travels as its index: the input's objects die with it)."""
        packet.stream = self.copies[index]
        self.out.mux(packet)

    def next_segment(self, k: int, item: _Frame) -> None:
        """Close the segment before ``k``; take ``k``'s stored packets, or start its encoder."""
        self.end_segment()
        if item.result is None:  # restored and encoded by an earlier run: its packets, as they were
            for p in _load_segment(self.av, self.job.work, k):
                self.mux([p])
        else:
            self.seg_enc = _segment_encoder(self.av, self.vs, self.job.enc, self.job.info)
            self.stored = [] if self.job.checkpoint and item.index >= self.job.resumed else None
            self.segment = k

    def encode(self, rgb: np.ndarray, pts: int, duration: int | None) -> None:
        colors = self.job.info.color
        frame = self.av.VideoFrame.from_ndarray(rgb, format=self.rgb_fmt)
        frame = frame.reformat(format=self.job.enc.pix_fmt, dst_colorspace=colors.get("colorspace") or None,
                               dst_color_range=colors.get("color_range") or 1)
        for k, v in colors.items():
            setattr(frame, k, v)
        frame.pts = pts
        frame.time_base = self.job.info.time_base
        if duration:
            self.durations[pts] = duration
        self.mux(self.seg_enc.encode(frame))

    def mux(self, packets: list[Any]) -> None:
        # Encoders guess each packet's duration from the frame rate; the input's own durations
        # keep a variable-rate stream's last frame, and so its length, as they were.
        for p in packets:
            p.stream = self.vs
            if p.pts is not None and p.pts in self.durations:
                p.duration = self.durations.pop(p.pts)
            if self.stored is not None:
                self.stored.append((bytes(p), p.pts, p.dts, int(p.duration or 0), bool(p.is_keyframe)))
            if self.first_dts is None and p.dts is not None:
                self.first_dts = p.dts
            if self.held is not None:
                self.out.mux(self.held)
            self.held = p

    def end_segment(self) -> None:
        if self.seg_enc is not None:
            self.mux(self.seg_enc.encode(None))
            if self.stored is not None:
                _store_segment(self.job.work, self.segment, self.stored)
        self.seg_enc, self.stored = None, None

    def finish(self) -> None:
        # MP4/MOV give a track the length of its samples in decoding order (last dts + last
        # duration - first dts), so the encoder's own choice of frame order decides the last
        # sample's share; it is set so the track lasts exactly as long as the input's.
        p = self.held
        if p is None:
            return
        if self.target and self.first_dts is not None and p.dts is not None:
            rest = self.target - (p.dts - self.first_dts)
            if rest > 0:
                p.duration = rest
        self.out.mux(p)
