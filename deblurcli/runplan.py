"""Where each result of ``deblur run`` goes, decided before any model is loaded, and running that plan.

Every way the arguments can be wrong (a missing input, a folder given as a file, an output that
would replace an input or an existing file, an unknown format, stdout asked for twice) is found
here, per input, so the user hears about all of them at once and in a second, not after a model
download.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .errors import DeblurError
from .fsutil import input_as_output
from .imageio import FORMAT_EXTENSIONS, extension_for, extension_hint, unknown_format_error, unreadable_file
from .imageio.formats import format_named, sniff
from .video import VIDEO_EXTENSIONS, is_video, preview_path, video_stream_problem

if TYPE_CHECKING:
    from .api import Deblurrer, RestoreResult
    from .video import VideoOptions

STDIO = "-"


@dataclass
class Planned:
    src: str
    dst: str
    error: str | None = None
    usage: bool = False  # the error is about the arguments (exit code 2), not a file
    compare: str | None = None  # where the side-by-side PNG goes, when asked for
    video: bool = False  # restored frame by frame by deblurcli.video
    note: str | None = None  # said once with the result (e.g. a photo whose name says video)
    kernel: str | None = None  # where the camera-shake kernel picture goes (--save-kernel)

    def failed_result(self) -> RestoreResult:
        """The JSON/summary record of an input refused at planning time."""
        from .api import RestoreResult

        return RestoreResult(input=self.src, output=self.dst or None, status="failed", error=self.error)


def _ext(fmt: str | None, src: Path) -> str:
    if not fmt:
        return src.suffix or ".png"
    return extension_for(fmt)


def _misnamed_photo(src: Path) -> str | None:
    """The photo format of a file named like a video (a JPEG called clip.mp4), else None.

    Content decides what the file is; its output then takes the content's extension, because
    writing JPEG bytes under a video name would hand the next program the same lie.
    """
    if src.suffix.lower() not in VIDEO_EXTENSIONS:
        return None
    try:
        with open(src, "rb") as f:
            kind = sniff(f.read(256))
    except OSError:
        return None
    return kind if kind is not None and format_named(kind) is not None else None


def compare_path(dst: str | os.PathLike[str]) -> str:
    """``NAME_compare.png`` beside the output: always PNG, so the comparison itself adds no artefacts."""
    p = Path(dst)
    return str(p.with_name(f"{p.stem}_compare.png"))


def plan_outputs(inputs: list[str], output: str | None, *, suffix: str = "_deblurred", fmt: str | None = None,
                 overwrite: bool = False, compare: bool = False, json_stdout: bool = False,
                 stdin_tty: bool = False, stdout_tty: bool = False, preview: bool = False,
                 save_kernel: str | None = None) -> list[Planned]:
    """One `Planned` per input, in order; refused ones carry their one-line error.

    ``json_stdout`` says stdout already carries JSON lines, so it cannot also carry an image;
    ``stdin_tty``/``stdout_tty`` say a person's terminal is attached there, which would make
    ``-`` wait forever for typed bytes or fill the screen with binary.
    """
    bad_format = unknown_format_error(fmt)
    if bad_format:
        return [Planned(s, "", bad_format, True) for s in inputs]
    if STDIO in inputs and len(inputs) > 1:
        return [Planned(STDIO, "", "stdin (-) can only be used as the single input", True)]
    if save_kernel is not None and len(inputs) > 1:
        return [Planned(s, "", f"--save-kernel {save_kernel}: names one picture but {len(inputs)} inputs were "
                        "given; run one input at a time (--compare shows each kernel too)", True) for s in inputs]
    if output == STDIO and len(inputs) > 1:
        return [Planned(s, STDIO, "-o - (stdout) takes a single input", True) for s in inputs]
    if not output and inputs == [STDIO]:
        output = STDIO
    if output == STDIO:
        clash = ("--json also writes to stdout; write the image to a file with -o FILE" if json_stdout
                 else "--compare needs an output file (-o FILE), not stdout" if compare
                 else "stdout is a terminal; redirect it (> out.png) or use -o FILE" if stdout_tty
                 else None)
        if clash:
            return [Planned(s, STDIO, clash, True) for s in inputs]
    if inputs == [STDIO] and stdin_tty:
        return [Planned(STDIO, output or "", "stdin is a terminal; pipe an image in (deblur run - < photo.jpg)",
                        True)]
    to_folder = output is not None and output != STDIO and (
        len(inputs) > 1 or output.endswith(("/", os.sep)) or Path(output).is_dir()
    )
    if (to_folder and output and not output.endswith(("/", os.sep)) and not Path(output).is_dir()
            and Path(output).suffix.lower() in (*FORMAT_EXTENSIONS, *VIDEO_EXTENSIONS)):
        # `deblur run a.jpg b.jpg -o out.jpg` is a slip, not a request for a folder named out.jpg
        return [Planned(s, "", f"-o {output}: names one image but {len(inputs)} inputs were given; "
                        "give a folder (end it with /) or one input", True) for s in inputs]
    # Inputs by resolved path and by inode (hard links, case-insensitive disks): an output must
    # never land on a file that is still to be read.
    sources = {str(Path(s).resolve()): s for s in inputs if s != STDIO}
    sources.update({k: s for s in inputs if s != STDIO and (k := _inode(Path(s)))})
    plans: list[Planned] = []
    seen: dict[str, str] = {}
    for s in inputs:
        p = _plan_one(s, output, to_folder, suffix, fmt, overwrite, seen, sources, preview)
        if compare and not p.error and p.video:
            p.error, p.usage = f"{s}: --compare is for photos; for a video use --preview SECONDS", True
        elif compare and not p.error and p.dst != STDIO:
            p = _plan_compare(p, overwrite, seen, sources)
        if save_kernel is not None and not p.error:
            p = _plan_kernel(p, save_kernel, overwrite, seen, sources)
        plans.append(p)
    return plans


def _inode(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return ""
    return f"inode:{st.st_dev}:{st.st_ino}"


def _clashes(s: str, dst: Path, seen: dict[str, str], sources: dict[str, str]) -> str | None:
    key = str(dst.resolve())
    if key in seen:
        return f"{dst}: would also be written from {seen[key]}; use separate -o files"
    refusal = input_as_output(s, dst, fix="choose another -o or --suffix") if s != STDIO else None
    if refusal:
        return refusal
    other = sources.get(key) or sources.get(_inode(dst))
    if other is not None:
        return f"{dst}: is also an input ({other}); it would be replaced before it is read, choose another -o"
    seen[key] = s
    return None


def _plan_one(s: str, output: str | None, to_folder: bool, suffix: str, fmt: str | None, overwrite: bool,
              seen: dict[str, str], sources: dict[str, str], preview: bool = False) -> Planned:
    src = Path(s)
    video = s != STDIO and src.is_file() and is_video(src)
    if s != STDIO:
        if not src.exists():
            hint = "it is a broken link" if src.is_symlink() else "check the path"
            return Planned(s, "", f"{s}: no such file; {hint}")
        if src.is_dir():
            return Planned(s, "", f"{s}: is a folder; use 'deblur batch {s} OUT_DIR' for folders", True)
        refusal = video_stream_problem(src) if video else unreadable_file(src)
        if refusal:  # before the output's name: IMG.HEIC wants the plug-in, an .m4a has nothing to deblur
            return Planned(s, "", refusal)
    photo_kind = None if video or s == STDIO else _misnamed_photo(src)
    name_fmt = fmt or photo_kind  # a misnamed photo's default output name takes the content's extension
    if s == STDIO:
        if output is None or output == STDIO:
            return Planned(s, STDIO)
        if to_folder:
            return Planned(s, "", "with stdin as input, -o must name a file (or - for stdout)", True)
        dst = Path(output)
        if dst.suffix.lower() in VIDEO_EXTENSIONS:
            return Planned(s, str(dst), f"{dst}: videos cannot be read from stdin (a pipe cannot be seeked); "
                           f"give the file instead: deblur run CLIP{dst.suffix} -o {dst}", True)
    elif output == STDIO:
        if video:
            return Planned(s, STDIO, f"{s}: a video cannot be written to stdout; use -o FILE", True)
        return Planned(s, STDIO)
    elif output is None:
        dst = src.with_name(f"{src.stem}{suffix}{_ext(None if video else name_fmt, src)}")
    elif to_folder:
        dst = Path(output) / f"{src.stem}{_ext(None if video else name_fmt, src)}"
    else:
        dst = Path(output)
    if video:
        return _plan_video(s, dst, to_folder, overwrite, seen, sources, preview)
    if photo_kind is not None and dst.suffix.lower() in VIDEO_EXTENSIONS:
        return Planned(s, str(dst), f"{dst}: {s} is a {photo_kind} photo, not a video (whatever its name says); "
                       f"end the output name in {extension_for(photo_kind)}", True)
    if dst.suffix.lower() not in FORMAT_EXTENSIONS:
        hint = "; for a folder that does not exist yet, end it with /" if not dst.suffix else ""
        return Planned(s, str(dst), f"{dst}: unknown output format {dst.suffix or '(no extension)'}; "
                       f"end the name in {extension_hint()}{hint}", True)
    if fmt and FORMAT_EXTENSIONS[dst.suffix.lower()] != FORMAT_EXTENSIONS.get("." + fmt.lower().lstrip(".")):
        return Planned(s, str(dst), f"{dst}: the extension says {FORMAT_EXTENSIONS[dst.suffix.lower()]} but "
                       f"--format says {fmt}; drop --format or change the name", True)
    clash = _clashes(s, dst, seen, sources)
    if clash:
        return Planned(s, str(dst), clash, True)
    if dst.is_dir():
        return Planned(s, str(dst), f"{dst}: is a folder; give a file name for the output")
    if dst.exists() and not overwrite:
        return Planned(s, str(dst), f"{dst}: already exists; pass --overwrite to replace it")
    planned = _check_parent(Planned(s, str(dst)), dst, create=to_folder)
    if photo_kind is not None:
        planned.note = f"{s} is a {photo_kind} photo, not a video (whatever its name says); restored as a photo"
    return planned


def _plan_video(s: str, dst: Path, to_folder: bool, overwrite: bool, seen: dict[str, str],
                sources: dict[str, str], preview: bool) -> Planned:
    """A video's output: a video container (its own by default); ``--preview`` writes NAME_preview.EXT."""
    if dst.suffix.lower() not in VIDEO_EXTENSIONS:
        return Planned(s, str(dst), f"{dst}: {s} is a video; end the output name in "
                       f"{', '.join(VIDEO_EXTENSIONS)}", True, video=True)
    if preview:
        dst = preview_path(dst)
    clash = _clashes(s, dst, seen, sources)
    if clash:
        return Planned(s, str(dst), clash, True, video=True)
    if dst.is_dir():
        return Planned(s, str(dst), f"{dst}: is a folder; give a file name for the output", video=True)
    if dst.exists() and not overwrite:
        return Planned(s, str(dst), f"{dst}: already exists; pass --overwrite to replace it", video=True)
    return _check_parent(Planned(s, str(dst), video=True), dst, create=to_folder)


def _check_parent(p: Planned, dst: Path, *, create: bool) -> Planned:
    parent = dst.parent
    blocker = next((a for a in (parent, *parent.parents) if a.exists()), None)
    if blocker is not None and not blocker.is_dir():
        p.error = f"{dst}: cannot write there, {blocker} is a file, not a folder; choose another -o"
        return p
    if create and not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            p.error = f"{parent}: cannot create the output folder ({exc.strerror}); choose another -o"
            return p
    if not parent.is_dir():
        p.error = f"{dst}: folder {parent} does not exist; create it or choose another -o"
    elif not os.access(parent, os.W_OK):
        p.error = f"{parent}: output folder is not writable; choose another -o"
    return p


def _plan_compare(p: Planned, overwrite: bool, seen: dict[str, str], sources: dict[str, str]) -> Planned:
    cmp = Path(compare_path(p.dst))
    clash = _clashes(p.src, cmp, seen, sources)
    if clash:
        p.error, p.usage = f"--compare: {clash}", True
    elif cmp.exists() and not overwrite:
        p.error = f"{cmp}: already exists (the --compare image); pass --overwrite to replace it"
    else:
        p.compare = str(cmp)
    return p


def _plan_kernel(p: Planned, path: str, overwrite: bool, seen: dict[str, str], sources: dict[str, str]) -> Planned:
    """``--save-kernel FILE``: a PNG of its own, never the output, the comparison or an input."""
    dst = Path(path)
    if p.video:
        p.error, p.usage = f"{p.src}: --save-kernel is for photos", True
    elif dst.suffix.lower() != ".png":
        p.error, p.usage = f"--save-kernel {path}: the kernel picture is a PNG; end the name in .png", True
    elif clash := _clashes(p.src, dst, seen, sources):
        p.error, p.usage = f"--save-kernel: {clash}", True
    elif dst.exists() and not overwrite:
        p.error = f"{dst}: already exists (the --save-kernel picture); pass --overwrite to replace it"
    else:
        p.kernel = path
    return p


def execute(
    d: Deblurrer, p: Planned, *, read_stdin: Callable[[], bytes], stdout: BinaryIO, overwrite: bool = False,
    quality: int = 95, strength: float | None = None, allow_large: bool = False, fmt: str | None = None,
    tile_check: bool = False, progress: Callable[..., None] | None = None, debug: bool = False,
    video: VideoOptions | None = None, on_note: Callable[[str], None] | None = None,
    save_kernel: str | None = None,
) -> RestoreResult:
    """Run one planned input; a failure becomes a failed result so the other inputs still run.

    Unexpected exceptions are caught too (one broken photo must not cost the rest) unless
    ``debug``, where the traceback is what the user asked for.
    """
    from .api import RestoreResult

    t0 = time.perf_counter()
    usage = False
    try:
        if p.video:
            from dataclasses import replace

            from .video import VideoOptions as _Options
            from .video import restore_video

            opts = replace(video or _Options(), overwrite=overwrite, strength=strength)
            return restore_video(d, p.src, p.dst, opts, progress=progress, on_note=on_note)
        src: str | bytes = read_stdin() if p.src == STDIO else p.src
        dst: str | BinaryIO = stdout if p.dst == STDIO else p.dst
        res = d.restore_file(src, dst, overwrite=overwrite, quality=quality, strength=strength,
                             allow_large=allow_large, compare=p.compare, format=fmt, tile_check=tile_check,
                             progress=progress, save_kernel=save_kernel)
        if p.note:
            res.notes.insert(0, p.note)
        return res
    except DeblurError as exc:
        if debug:
            raise
        from .errors import UsageError
        from .options import flag_for

        error = exc.cli_message(flag_for)
        usage = isinstance(exc, UsageError)
    except Exception as exc:
        if debug or isinstance(exc, BrokenPipeError):
            raise
        error = f"{p.src}: {type(exc).__name__}: {exc} (run again with --debug for the traceback)"
    return RestoreResult(input=p.src, output=p.dst, status="failed", error=error,
                         seconds=time.perf_counter() - t0, usage=usage)


def summary_line(res: RestoreResult) -> str:
    """The human line for one finished input (stderr)."""
    return f"{res.input} -> {res.output} ({res.width}x{res.height}, {res.seconds:.1f} s)"


def tile_check_line(name: str, report: dict[str, Any]) -> str:
    """How far tiling changed a crop of this photo, and whether that is visible."""
    if report.get("whole"):  # the run cut no tiles: its result has no seams, so no advice about them
        return (f"tile check {name}: restored whole, without tiles, so it has no seams "
                f"({report['tile']} px tiles would give PSNR {report['psnr']:.1f} dB vs whole on a "
                f"{report['crop']} crop)")
    verdict = "ok" if report["psnr"] >= 40 and report["seam_ratio"] < 2 else "tiles visible: use a larger --tile"
    return (f"tile check {name}: tiled vs whole on a {report['crop']} crop with {report['tile']} px tiles: "
            f"PSNR {report['psnr']:.1f} dB, seam/interior error ratio {report['seam_ratio']:.2f} ({verdict})")
