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

The package has one job per module: `probing` (what the file holds), `encode` (encoder, pixel
format, HDR10 and disk-space choices), `segments` (the resumable work folder) and `pipeline`
(the threaded decode, model and encode). What other modules use is re-exported here.
"""

from .encode import (
    CODEC_CHOICES,
    DEFAULT_SEGMENT_FRAMES,
    EncoderChoice,
    VideoOptions,
    capabilities,
    choose_encoder,
    container_for,
    work_space,
)
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
from .segments import work_dir

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
