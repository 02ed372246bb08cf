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

The package has one job per module: `options` (what a job is asked to do, and the command-line
declaration of its flags), `probing` (what the file holds), `encode` (encoder, pixel format,
HDR10 and disk-space choices), `segments` (the resumable work folder) and `pipeline` (the threaded
decode, model and encode). What other modules use is re-exported here. `options` is imported at
once and holds no numpy or PyAV; the rest on first use, so that the CLI, which builds its video
flags from `VideoOptions` as it starts, stays as quick to start as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .options import CODEC_CHOICES, DEFAULT_SEGMENT_FRAMES, VideoOptions

if TYPE_CHECKING:
    from .encode import EncoderChoice, capabilities, choose_encoder, container_for, work_space
    from .pipeline import preview_path, restore_video
    from .probing import (
        VIDEO_EXTENSIONS,
        VideoInfo,
        hdr_metadata,
        is_video,
        open_input,
        probe,
        sniff_video,
        video_stream_problem,
    )
    from .segments import interrupted_message, work_dir

#: Which submodule holds each re-exported name that is imported on first use.
_LAZY = {
    **dict.fromkeys(("EncoderChoice", "capabilities", "choose_encoder", "container_for", "work_space"), "encode"),
    **dict.fromkeys(("preview_path", "restore_video"), "pipeline"),
    **dict.fromkeys(("VIDEO_EXTENSIONS", "VideoInfo", "hdr_metadata", "is_video", "open_input", "probe",
                     "sniff_video", "video_stream_problem"), "probing"),
    **dict.fromkeys(("interrupted_message", "work_dir"), "segments"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


__all__ = [
    "CODEC_CHOICES",
    "DEFAULT_SEGMENT_FRAMES",
    "VIDEO_EXTENSIONS",
    "EncoderChoice",
    "VideoInfo",
    "VideoOptions",
    "capabilities",
    "choose_encoder",
    "container_for",
    "hdr_metadata",
    "interrupted_message",
    "is_video",
    "open_input",
    "preview_path",
    "probe",
    "restore_video",
    "sniff_video",
    "video_stream_problem",
    "work_dir",
    "work_space",
]
