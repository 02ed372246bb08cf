"""``deblur synth``: a folder of sharp photos (or of video frames) becomes blurred/sharp pairs in
the GoPro layout, written atomically, reproducible from a seed and each source's name.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DeblurError, ImageError
from ..fsutil import atomic_write
from ..imageio.encode import save_png
from ..imageio.formats import IMAGE_EXTENSIONS  # the one list of photo extensions
from .recipes import _to_u8, average_frames, dead_leaves, degrade, largest_kernel

log = logging.getLogger("deblurcli.synth")


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB at its native depth (uint8 or uint16, or float for EXR/TIFF)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)  # not cv2.imread: that fails on non-ASCII paths
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}; check the path and its permissions") \
            from exc
    img = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    if img is None:
        return _read_with_pillow(path)
    return np.ascontiguousarray(img[..., ::-1])


def _read_with_pillow(path: Path) -> np.ndarray:
    """What OpenCV's wheels do not decode (AVIF, HEIC) through deblurcli's own reader, whose error
    names the fix (a missing plug-in, a corrupt file) in one line."""
    from ..imageio import read_image

    try:
        img = read_image(path, allow_large=True)
    except ImageError as exc:
        raise ImageError(f"{exc}; or remove it from the folder") from None
    samples = img.samples if img.samples.ndim == 3 else img.samples[..., None]
    return np.ascontiguousarray(np.broadcast_to(samples, samples.shape[:2] + (3,)) if samples.shape[2] == 1
                                else samples[..., :3])


def _to_float(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535.0)
    return np.clip(img.astype(np.float32), 0.0, 1.0)


def _write_png(path: Path, img: np.ndarray) -> None:
    """One image of a pair, 8-bit, through imageio's one PNG writer (atomic: an interrupted run never
    leaves a torn pair)."""
    save_png(_to_u8(img), path, error=None)  # write_pairs words a failed write for the whole folder


def _write_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, arr))


def _natural_key(p: Path) -> list:
    """Sort frame_2 before frame_10: video frames are often numbered without zero padding."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=_natural_key)


def _name_rng(seed: int, name: str, *extra: int) -> np.random.Generator:
    """A generator keyed on the seed and a source's name (not its position in the listing), so
    adding or removing images leaves the pairs made from the others unchanged."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), *extra]))


def _crop_hw(crop: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if crop is None:
        return None
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    if ch < 1 or cw < 1:
        raise DeblurError(f"crop size must be positive, got {crop}; pass e.g. crop=256")
    return int(ch), int(cw)


def _crop_box(h: int, w: int, crop: tuple[int, int] | None, margin: int,
              rng: np.random.Generator) -> tuple[slice, slice, slice, slice]:
    """A random crop plus up to ``margin`` pixels of context around it.

    The context is what a camera would have seen beyond the crop; blurring it along keeps real
    scene content (instead of a mirrored border) flowing into the crop's edges.
    Returns (outer rows, outer cols, inner rows, inner cols), inner relative to outer.
    """
    ch, cw = (h, w) if crop is None else (min(crop[0], h), min(crop[1], w))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    oy0, ox0 = max(0, y - margin), max(0, x - margin)
    oy1, ox1 = min(h, y + ch + margin), min(w, x + cw + margin)
    return (slice(oy0, oy1), slice(ox0, ox1), slice(y - oy0, y - oy0 + ch), slice(x - ox0, x - ox0 + cw))


@dataclass(frozen=True)
class SynthProgress:
    """One source (an image, or a folder of frames) finished by :func:`write_pairs`.

    ``error`` is set when the source, or part of it, was skipped; the run carries on regardless.
    """

    done: int
    total: int
    source: Path
    written: int
    error: str | None = None


def write_pairs(sharp_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                count_per_image: int = 1, seed: int = 0, frames: bool = False,
                crop: int | tuple[int, int] | None = None,
                progress: Callable[[SynthProgress], None] | None = None,
                degrade_kwargs: dict | None = None) -> int:
    """Write blurred/sharp pairs in the GoPro layout; returns the number of pairs written.

    Layout: ``out_dir/<sequence>/blur/NNNNNN.png`` and ``out_dir/<sequence>/sharp/NNNNNN.png``
    (8-bit), so the evaluation code reads synthetic sets exactly like GoPro's ``test/<seq>``.

    * ``frames=False``: every image in ``sharp_dir`` is a sequence named by its stem, and gets
      ``count_per_image`` pairs made by :func:`degrade`; the kernel(s) used go to
      ``kernels/NNNNNN.npy``.
    * ``frames=True``: every subfolder of ``sharp_dir`` holds consecutive video frames (sorted by
      name); consecutive, non-overlapping windows of 7, 9, 11 or 13 frames are averaged by
      :func:`average_frames`. There is no kernel, so no ``kernels/``; ``count_per_image`` is unused.
      Frames should come from high-frame-rate video, or the average shows ghosts, not blur.

    ``crop`` (pixels, or ``(h, w)``) takes a random crop of each pair. Randomness is keyed on
    ``seed`` and each source's name, so the same call reproduces the same files. Unreadable images
    are skipped and reported (through ``progress`` and the log); files are written atomically.
    """
    src, dst = Path(sharp_dir), Path(out_dir)
    if not src.is_dir():
        raise DeblurError(f"sharp image folder not found: {src}; pass an existing folder of sharp images")
    if count_per_image < 1:
        raise DeblurError(f"count_per_image must be at least 1, got {count_per_image}")
    crop_hw = _crop_hw(crop)
    kwargs = dict(degrade_kwargs or {})
    margin = largest_kernel(kwargs) // 2
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeblurError(f"cannot create output folder {dst}: {exc.strerror or exc}; "
                          "choose a writable location") from exc

    if frames:
        sources = sorted((p for p in src.iterdir() if p.is_dir() and p.resolve() != dst.resolve()),
                         key=_natural_key)
        kind = "subfolders of video frames"
    else:
        sources = _list_images(src)
        kind = "images (" + ", ".join(sorted(IMAGE_EXTENSIONS)) + ")"
    if not sources:
        raise DeblurError(f"no {kind} found in {src}; check the folder"
                          + (" or drop --frames" if frames else " or pass --frames for video frames"))

    names: dict[str, int] = {}
    written = 0
    for done, path in enumerate(sources, start=1):
        name = path.name if frames else path.stem
        if name in names:  # photo.png and photo.jpg must not overwrite each other
            names[name] += 1
            name = f"{name}_{names[name]}"
        names.setdefault(name, 0)
        seq = dst / name
        try:
            n, error = (_frames_pairs if frames else _image_pairs)(
                path, seq, name, seed=seed, count=count_per_image, crop=crop_hw, margin=margin,
                kwargs=kwargs)
        except OSError as exc:
            raise DeblurError(f"cannot write pairs under {seq}: {exc.strerror or exc}; "
                              "check free space and permissions") from exc
        written += n
        if error is not None:
            log.warning("%s", error)
        if progress is not None:
            progress(SynthProgress(done, len(sources), path, n, error))
    return written


def _make_dirs(seq: Path, *subdirs: str) -> None:
    for sub in subdirs:
        (seq / sub).mkdir(parents=True, exist_ok=True)


def _image_pairs(path: Path, seq: Path, name: str, *, seed: int, count: int,
                 crop: tuple[int, int] | None, margin: int, kwargs: dict) -> tuple[int, str | None]:
    try:
        sharp_all = _read_rgb(path)
    except DeblurError as exc:
        return 0, f"skipped: {exc}"
    h, w = sharp_all.shape[:2]
    _make_dirs(seq, "blur", "sharp", "kernels")
    for k in range(count):
        rng = _name_rng(seed, name, k)
        oy, ox, iy, ix = _crop_box(h, w, crop, margin, rng)
        sharp = _to_float(sharp_all[oy, ox])
        blurred, kernel = degrade(sharp, rng, **kwargs)
        stem = f"{k:06d}"
        _write_png(seq / "blur" / f"{stem}.png", blurred[iy, ix])
        _write_png(seq / "sharp" / f"{stem}.png", sharp[iy, ix])
        _write_npy(seq / "kernels" / f"{stem}.npy", kernel)
    return count, None


def _frames_pairs(path: Path, seq: Path, name: str, *, seed: int, count: int,
                  crop: tuple[int, int] | None, margin: int, kwargs: dict) -> tuple[int, str | None]:
    del count, margin, kwargs  # averaging needs no kernel margin and no kernel recipe
    files = _list_images(path)
    rng = _name_rng(seed, name)
    errors: list[str] = []
    start = index = 0
    while True:
        n = int(rng.choice([7, 9, 11, 13]))
        if start + n > len(files):
            break
        window, start = files[start:start + n], start + n
        try:
            imgs = [_read_rgb(f) for f in window]
        except DeblurError as exc:
            errors.append(str(exc))
            continue
        if any(im.shape != imgs[0].shape for im in imgs):
            errors.append(f"frames {window[0].name}..{window[-1].name} in {path} differ in size")
            continue
        oy, ox, iy, ix = _crop_box(*imgs[0].shape[:2], crop, 0, rng)
        blurred, sharp = average_frames([_to_float(im[oy, ox]) for im in imgs])
        if index == 0:
            _make_dirs(seq, "blur", "sharp")
        _write_png(seq / "blur" / f"{index:06d}.png", blurred)
        _write_png(seq / "sharp" / f"{index:06d}.png", sharp)
        index += 1
    if index == 0 and not errors:
        errors.append(f"{path} has {len(files)} frames, fewer than the 7 needed for one blurred frame")
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return index, f"skipped part of {path}: {errors[0]}{more}"
    return index, None


def write_dead_leaves_pairs(out_dir: str | os.PathLike[str], count: int, *, seed: int = 0, size: int = 512,
                            degrade_kwargs: dict | None = None) -> int:
    """Write ``count`` dead-leaves pairs as the sequence ``dead_leaves`` (same layout as write_pairs).

    Dead leaves need no photos and no licence, so they make a training set of any size.
    """
    seq = Path(out_dir) / "dead_leaves"
    _make_dirs(seq, "blur", "sharp", "kernels")
    for k in range(count):
        rng = _name_rng(seed, "dead_leaves", k)
        sharp = dead_leaves((size, size), rng)
        blurred, kernel = degrade(sharp, rng, **(degrade_kwargs or {}))
        stem = f"{k:06d}"
        _write_png(seq / "blur" / f"{stem}.png", blurred)
        _write_png(seq / "sharp" / f"{stem}.png", sharp)
        _write_npy(seq / "kernels" / f"{stem}.npy", kernel)
    return count
