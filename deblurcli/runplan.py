"""Where each result of ``deblur run`` goes, decided before any model is loaded.

Every way the arguments can be wrong (a missing input, a folder given as a file, an output that
would replace the input or an existing file, an unknown format) is found here, per input, so the
user hears about all of them at once and in a second, not after a model download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .imageio import FORMAT_EXTENSIONS, same_file


@dataclass
class Planned:
    src: str
    dst: str
    error: str | None = None
    usage: bool = False  # the error is about the arguments (exit code 2), not a file


def _ext(fmt: str | None, src: Path) -> str:
    if not fmt:
        return src.suffix or ".png"
    ext = "." + fmt.lower().lstrip(".")
    return ".jpg" if ext == ".jpeg" else ext


def plan_outputs(inputs: list[str], output: str | None, *, suffix: str = "_deblurred", fmt: str | None = None,
                 overwrite: bool = False) -> list[Planned]:
    if fmt and "." + fmt.lower().lstrip(".") not in FORMAT_EXTENSIONS:
        known = ", ".join(sorted({e.lstrip(".") for e in FORMAT_EXTENSIONS}))
        return [Planned(s, "", f"--format {fmt}: unknown image format; choose one of {known}", True) for s in inputs]
    if "-" in inputs and len(inputs) > 1:
        return [Planned("-", "", "stdin (-) can only be used as the single input", True)]
    if output == "-" and len(inputs) > 1:
        return [Planned(s, "-", "-o - (stdout) takes a single input", True) for s in inputs]
    to_folder = output is not None and output != "-" and (
        len(inputs) > 1 or output.endswith(("/", os.sep)) or Path(output).is_dir()
    )
    plans: list[Planned] = []
    seen: dict[str, str] = {}
    for s in inputs:
        plans.append(_plan_one(s, output, to_folder, suffix, fmt, overwrite, seen))
    return plans


def _plan_one(s: str, output: str | None, to_folder: bool, suffix: str, fmt: str | None, overwrite: bool,
              seen: dict[str, str]) -> Planned:
    src = Path(s)
    if s != "-":
        if not src.exists():
            return Planned(s, "", f"{s}: no such file; check the path")
        if src.is_dir():
            return Planned(s, "", f"{s}: is a folder; use 'deblur batch {s} OUT_DIR' for folders", True)
    if s == "-":
        if output is None or output == "-":
            return Planned(s, "-")
        if to_folder:
            return Planned(s, "", "with stdin as input, -o must name a file (or - for stdout)", True)
        dst = Path(output)
    elif output == "-":
        return Planned(s, "-")
    elif output is None:
        dst = src.with_name(f"{src.stem}{suffix}{_ext(fmt, src)}")
    elif to_folder:
        dst = Path(output) / f"{src.stem}{_ext(fmt, src)}"
    else:
        dst = Path(output)
    if dst.suffix.lower() not in FORMAT_EXTENSIONS:
        return Planned(s, str(dst), f"{dst}: unknown output format {dst.suffix or '(no extension)'}; "
                       "end the name in .png, .jpg, .tif, .webp or .bmp", True)
    key = str(dst.resolve())
    if key in seen:
        return Planned(s, str(dst), f"{dst}: would also be written from {seen[key]}; use separate -o files", True)
    seen[key] = s
    if s != "-" and same_file(src, dst):
        return Planned(s, str(dst), f"{dst}: output is the input file; choose another -o or --suffix (original kept)",
                       True)
    if dst.exists() and not overwrite:
        return Planned(s, str(dst), f"{dst}: already exists; pass --overwrite to replace it")
    parent = dst.parent
    if to_folder and not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return Planned(s, str(dst), f"{parent}: cannot create the output folder ({exc.strerror})")
    if not parent.is_dir():
        return Planned(s, str(dst), f"{dst}: folder {parent} does not exist; create it or choose another -o")
    if not os.access(parent, os.W_OK):
        return Planned(s, str(dst), f"{parent}: output folder is not writable; choose another -o")
    return Planned(s, str(dst))
