"""What a video job is asked to do, declared once for the library and for ``deblur run``/``deblur batch``.

Each user-facing field carries its command-line option (flag, limits, help) the way `EngineOptions`
does, so both commands build their video flags from this one declaration and the batch resume key
(`deblurcli.options.output_settings`) reads the same marks. `VideoOptions.checked` is the
validation both commands share: a number that cannot mean a stretch of video is a usage error
before any model loads.

Imports neither numpy nor PyAV: the CLI reads these declarations when it starts, ``--help`` included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..options import OptionSpec, _opt, option_specs

#: What ``--codec`` accepts.
CODEC_CHOICES = ("h264", "hevc", "vp9", "av1", "ffv1", "prores", "mpeg4")
#: Frames per segment: each starts a fresh encoder (so a keyframe) and is the unit of resuming. On a
#: 640x360 H.264 pan each extra keyframe cost about 9 frames' worth of bits: 32-frame segments made
#: the file about 25% larger than one encoder did, 96-frame ones about 10%.
DEFAULT_SEGMENT_FRAMES = 96
#: Larger than any video's length in seconds: a bigger number is a typo, not a time.
_MAX_SECONDS = 1e9


@dataclass
class VideoOptions:
    """How to write the restored video; the defaults keep everything the input has.

    Fields marked ``decides_output`` (through ``_opt`` or their metadata) are part of ``deblur
    batch``'s resume key for a video (`deblurcli.options.output_settings`), so a new one cannot be
    left out of it. The fields with an option are the command-line's, in ``--help`` order.
    """

    crf: int | None = _opt(None, "--crf", cli_type=int, decides_output=True, min=0, max=63,
                           help="Video: encoder quality (lower = better; default visually lossless: x264 18, "
                                "x265 20, VP9 20, AV1 22)")
    #: A family from CODEC_CHOICES; None = the input's.
    codec: str | None = _opt(None, "--codec", cli_type=str, decides_output=True,
                             help=f"Video: {' | '.join(CODEC_CHOICES)} (default: the input's)")
    lossless: bool = _opt(False, "--lossless", cli_type=bool, decides_output=True,
                          help="Video: write FFV1, losslessly (.mkv or .avi)")
    #: Seconds from the start of the video stream.
    start: float = _opt(0.0, "--start", cli_type=float, decides_output=True, min=0.0,
                        help="Video: restore from this second")
    duration: float | None = _opt(None, "--duration", cli_type=float, decides_output=True, min=0.0,
                                  help="Video: restore this many seconds")
    #: Seconds of side-by-side (input | result) instead of the full result.
    preview: float | None = _opt(None, "--preview", cli_type=float, decides_output=True, min=0.0,
                                 metavar="SECONDS",
                                 help="Video: write only NAME_preview.EXT, SECONDS of input | result side by side")
    #: None: the Deblurrer's own (its EngineOptions.strength, what --strength sets); a number overrides it.
    strength: float | None = field(default=None, metadata={"decides_output": True})
    overwrite: bool = False
    segment_frames: int = DEFAULT_SEGMENT_FRAMES
    #: Called with each frame's index before the model sees it; raising from it stops the run (tests, GUIs).
    on_frame: Callable[[int], None] | None = None

    @classmethod
    def specs(cls) -> list[OptionSpec]:
        return option_specs(cls)

    @classmethod
    def checked(cls, **values: Any) -> VideoOptions:
        """The options, refused as a usage error when a number cannot mean a stretch of video.

        0 is refused rather than read as "all": --duration 0 asks for nothing, not everything.
        """
        opts = cls(**values)
        if not math.isfinite(opts.start) or opts.start > _MAX_SECONDS:
            raise UsageError(f"--start {opts.start:g}: not a usable time; give the second to start from, "
                             "e.g. --start 12.5")
        for flag, value, whole in (("--duration", opts.duration, "whole video"),
                                   ("--preview", opts.preview, "full result")):
            if value is not None and (not math.isfinite(value) or value <= 0 or value > _MAX_SECONDS):
                raise UsageError(f"{flag} {value:g}: give a number of seconds above 0 (leave {flag} out for the "
                                 f"{whole})")
        return opts

    def given_flags(self) -> list[str]:
        """The command-line flags set away from their default, in declaration order."""
        return [s.flag for s in self.specs() if getattr(self, s.name) != s.default]

    def check_used(self, inputs_are_video: Iterable[bool]) -> None:
        """Video flags on a run whose inputs are all photos would be silently ignored: a usage error instead.

        An empty run (every input already refused) says nothing here; its own errors are the news.
        """
        videos = list(inputs_are_video)
        flags = self.given_flags()
        if flags and videos and not any(videos):
            raise UsageError(f"{', '.join(flags)}: video option{'s' if len(flags) > 1 else ''}, but no input is a "
                             f"video; drop {'them' if len(flags) > 1 else 'it'} for photos")
