"""Blur kernels as objects a user handles: cleaning, centring, statistics, pictures and files."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import KernelError

KERNEL_SUFFIXES = (".png", ".npy")


def _label_components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of ``mask`` (0 = background), by vectorised label spreading.

    Each support pixel starts with its own label and repeatedly takes the largest label among its
    neighbours; kernels are small, so the few dozen sweeps this takes cost microseconds, and no
    per-pixel Python loop or scipy is needed.
    """
    h, w = mask.shape
    labels = np.where(mask, np.arange(1, h * w + 1, dtype=np.int64).reshape(h, w), 0)
    for _ in range(h * w):
        p = np.pad(labels, 1)
        best = labels.copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                np.maximum(best, p[dy:dy + h, dx:dx + w], out=best)
        best = np.where(mask, best, 0)
        if np.array_equal(best, labels):
            break
        labels = best
    return labels


def drop_small_components(kernel: np.ndarray, min_mass: float) -> np.ndarray:
    """Zero the connected pieces of the kernel holding less than ``min_mass`` of its total.

    A camera path is one continuous stroke; isolated specks are noise the least-squares fit put
    where the image happened to correlate.
    """
    k = np.maximum(kernel, 0)
    total = k.sum()
    if total <= 0:
        return k
    labels = _label_components(k > 0)
    ids, inverse = np.unique(labels, return_inverse=True)
    mass = np.bincount(inverse.ravel(), weights=k.ravel())
    keep = (mass / total >= min_mass) | (ids == 0)
    if not keep[ids != 0].any():  # never erase everything: keep the heaviest piece
        keep[np.argmax(np.where(ids == 0, -1, mass))] = True
    return np.where(keep[inverse].reshape(k.shape) & (labels > 0), k, 0).astype(np.float32)


def center_kernel(kernel: np.ndarray) -> np.ndarray:
    """Shift the kernel by whole pixels so its centre of mass sits on the middle pixel.

    Blind estimation only knows the kernel up to a translation; a centred kernel keeps the
    restored image where the photo was, and keeps the support away from the window's edge.
    """
    k = np.asarray(kernel, dtype=np.float32)
    total = k.sum()
    if total <= 0:
        return k
    ys, xs = np.indices(k.shape)
    cy, cx = float((k * ys).sum() / total), float((k * xs).sum() / total)
    sy, sx = round((k.shape[0] - 1) / 2 - cy), round((k.shape[1] - 1) / 2 - cx)
    out = np.zeros_like(k)
    h, w = k.shape
    src_y, dst_y = slice(max(0, -sy), min(h, h - sy)), slice(max(0, sy), min(h, h + sy))
    src_x, dst_x = slice(max(0, -sx), min(w, w - sx)), slice(max(0, sx), min(w, w + sx))
    out[dst_y, dst_x] = k[src_y, src_x]
    return out


def normalise(kernel: np.ndarray) -> np.ndarray:
    k = np.maximum(np.asarray(kernel, dtype=np.float32), 0)
    s = float(k.sum(dtype=np.float64))
    return (k / s).astype(np.float32) if s > 0 else k


def clean_kernel(kernel: np.ndarray, *, rel_threshold: float = 0.05, min_mass: float = 0.1,
                 center: bool = True) -> np.ndarray:
    """Non-negative, small values and stray specks dropped, centred, summing to 1."""
    k = np.maximum(np.asarray(kernel, dtype=np.float32), 0)
    if k.max() <= 0:
        return k
    k[k < rel_threshold * k.max()] = 0
    k = drop_small_components(normalise(k), min_mass)
    if center:
        k = center_kernel(k)
    return normalise(k)


def pad_to_odd_square(kernel: np.ndarray) -> np.ndarray:
    """Zero-pad to an odd square, so the kernel has a centre pixel and one size."""
    h, w = kernel.shape
    n = max(h, w)
    n += 1 - n % 2
    out = np.zeros((n, n), dtype=np.float32)
    y0, x0 = (n - h) // 2, (n - w) // 2
    out[y0:y0 + h, x0:x0 + w] = kernel
    return out


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KernelStats:
    """What a kernel says about the shake, for `deblur inspect` and for trusting an estimate.

    ``extent_px``: length of the support along its main direction (the shake length);
    ``width_px``: its extent across that direction; ``direction_deg``: main direction in degrees
    in [0, 180), counter-clockwise from the image's x axis with y pointing up; ``support``:
    pixels carrying weight; ``support_fraction``: that count over the window's area (a diffuse
    blob filling the window is not a camera path); ``entropy_bits``: Shannon entropy of the
    weights (a path of n equally weighted pixels has log2(n)); ``peak``: the largest weight;
    ``components``: connected pieces (a shake is one stroke); ``border_mass``: weight in the
    window's outer two pixels (a kernel cut by its window was estimated with too small a size).
    """

    size: int
    extent_px: float
    width_px: float
    direction_deg: float
    support: int
    support_fraction: float
    entropy_bits: float
    peak: float
    components: int
    border_mass: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def kernel_stats(kernel: np.ndarray, *, rel_threshold: float = 0.05) -> KernelStats:
    """Shape statistics of a blur kernel (see `KernelStats`)."""
    k = normalise(np.asarray(kernel, dtype=np.float32))
    h, w = k.shape
    peak = float(k.max()) if k.size else 0.0
    mask = k >= rel_threshold * peak if peak > 0 else np.zeros_like(k, dtype=bool)
    ys, xs = np.nonzero(mask)
    wts = k[ys, xs].astype(np.float64)
    direction, extent, width = 0.0, 0.0, 0.0
    if wts.size and wts.sum() > 0:
        px, py = xs.astype(np.float64), -ys.astype(np.float64)  # y up, as a person reads angles
        mx, my = np.average(px, weights=wts), np.average(py, weights=wts)
        cov = np.cov(np.stack([px - mx, py - my]), aweights=wts, bias=True) if wts.size > 1 else np.zeros((2, 2))
        evals, evecs = np.linalg.eigh(np.atleast_2d(cov))
        v = evecs[:, -1]
        direction = math.degrees(math.atan2(v[1], v[0])) % 180.0
        along = (px - mx) * v[0] + (py - my) * v[1]
        across = -(px - mx) * v[1] + (py - my) * v[0]
        extent = float(along.max() - along.min() + 1)
        width = float(across.max() - across.min() + 1)
    p = k[k > 0].astype(np.float64)
    entropy = float(-(p * np.log2(p)).sum()) if p.size else 0.0
    border = np.ones_like(mask)
    border[2:-2, 2:-2] = False
    components = int(np.unique(_label_components(mask)).size - 1) if mask.any() else 0
    return KernelStats(size=int(max(h, w)), extent_px=round(extent, 2), width_px=round(width, 2),
                       direction_deg=round(direction, 1), support=int(mask.sum()),
                       support_fraction=float(mask.sum() / max(k.size, 1)), entropy_bits=entropy, peak=peak,
                       components=components, border_mass=float(k[border].sum()))


# --------------------------------------------------------------------------------------------
# Pictures and files
# --------------------------------------------------------------------------------------------


def kernel_image(kernel: np.ndarray, *, min_side: int = 128, gamma: float = 0.5) -> np.ndarray:
    """The kernel as a uint8 grey picture a person can read: white path on black, enlarged.

    Scaled so the brightest weight is white, and shown with ``gamma`` (square root by default) so
    the faint parts of a trail stay visible; each weight becomes a block of pixels (nearest
    neighbour), because smoothing would hide how sharp the path is.
    """
    k = np.maximum(np.asarray(kernel, dtype=np.float32), 0)
    if k.ndim != 2 or k.size == 0:
        raise ValueError(f"kernel must be a non-empty 2-D array, got shape {k.shape}")
    peak = float(k.max())
    v = (k / peak) ** gamma if peak > 0 else k
    img = np.round(np.clip(v, 0, 1) * 255).astype(np.uint8)
    zoom = max(1, math.ceil(min_side / max(k.shape)))
    return np.repeat(np.repeat(img, zoom, axis=0), zoom, axis=1)


def _bad(path: Path, problem: str) -> KernelError:
    return KernelError(f"{path}: {problem}; give a blur kernel as a grey PNG or a 2-D NPY array of "
                       "non-negative weights")


def load_kernel(path: str | os.PathLike[str], *, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read a user's kernel (PNG or NPY), check that it is one, and return it normalised.

    Returned as a float32 odd square summing to 1, centred as drawn (its translation is the
    user's choice). ``image_shape`` (H, W, ...) also checks that the kernel fits the image.
    Anything that is not a kernel raises `KernelError` with one line naming the file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in KERNEL_SUFFIXES:
        raise KernelError(f"{p}: unknown kernel format {suffix or '(no suffix)'!r}; use a .png or .npy file")
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(p) as im:
                im.load()
                arr = np.asarray(im.convert("F") if im.mode not in ("I;16", "I") else im, dtype=np.float32)
    except FileNotFoundError:
        raise KernelError(f"{p}: no such kernel file; check the path") from None
    except (OSError, ValueError) as exc:
        raise _bad(p, f"cannot be read ({exc.__class__.__name__})") from None
    if arr.dtype.kind not in "fiub":
        raise _bad(p, f"holds {arr.dtype} values, not numbers")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise _bad(p, f"is {arr.ndim}-D (shape {arr.shape}), a kernel is 2-D")
    if not np.isfinite(arr).all():
        raise _bad(p, "contains NaN or infinite values")
    if (arr < 0).any():
        raise _bad(p, f"has negative weights (min {arr.min():.3g})")
    if arr.sum() <= 0:
        raise _bad(p, "is all zero")
    k = pad_to_odd_square(normalise(arr.astype(np.float32)))
    if image_shape is not None:
        check_fits(k, image_shape, source=str(p))
    return k


def check_fits(kernel: np.ndarray, image_shape: tuple[int, ...], *, source: str = "kernel") -> None:
    """A kernel as large as the image leaves nothing to recover: say so instead of returning mush."""
    h, w = image_shape[:2]
    if kernel.shape[0] >= h or kernel.shape[1] >= w:
        raise KernelError(f"{source}: the kernel ({kernel.shape[1]}x{kernel.shape[0]}) is not smaller than the "
                          f"image ({w}x{h}); crop the kernel to its trail")
