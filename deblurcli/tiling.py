"""Running a restoration model over a large photo one tile at a time.

Only the tiles (a batch of them) ever live in model memory; the output and the blending weights
live in CPU numpy arrays, so a 100 MP panorama costs the accelerator no more than one batch.

Blending is what makes a tiled result agree with the whole-image result. Pixels near a tile's
inner edge are the worst the model produces (it cannot see past the edge), so each tile's weight
on a side that borders another tile is:

* exactly 0 over the outer quarter of the overlap (those pixels are always covered by the
  neighbour, which sees them with context),
* a raised-cosine ramp over the middle half of the overlap,
* 1 everywhere else, and on sides that touch the image border (nothing better exists there).

A model whose receptive field reaches no further than a quarter of the overlap therefore gives
exactly the whole-image result; a larger one gives differences that fade smoothly instead of
stepping at a seam. The weights of a regular grid of tiles factor into a row profile times a
column profile, so the normalisation needs no HxW weight buffer: each tile is pre-divided by
the (separable) weight sum and simply added into the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .imageio.image import as_float_rgb

__all__ = [
    "CPU_MAX_TILE",
    "MEMORY_FRACTION",
    "Tile",
    "auto_tile",
    "auto_tile_size",
    "axis_positions",
    "fitted_tile",
    "pad_to_multiple",
    "plan_tiles",
    "restore_tiled",
    "too_small_tile_warning",
]

#: Share of the free memory an automatic tile may plan for: allocator fragmentation and cuDNN
#: workspaces are not in an architecture's memory hint.
MEMORY_FRACTION = 0.6
#: Largest automatic tile on a CPU: larger tiles add memory there but hardly any speed.
CPU_MAX_TILE = 1024


@dataclass(frozen=True)
class Tile:
    """A window of the image: rows ``y:y+h``, columns ``x:x+w``; `row`/`col` index the grid."""

    y: int
    x: int
    h: int
    w: int
    row: int = 0
    col: int = 0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom/right of an NxCxHxW tensor up to a multiple, returning the original (h, w).

    Reflection keeps the padded border looking like image content (zeros would create an edge
    the model tries to sharpen); it is impossible when the pad is not smaller than the side, so
    tiny images fall back to replicating the last row/column.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if multiple <= 1:
        return x, (h, w)
    ph, pw = (-h) % multiple, (-w) % multiple
    if pw:
        x = F.pad(x, (0, pw, 0, 0), mode="reflect" if pw < w else "replicate")
    if ph:
        x = F.pad(x, (0, 0, 0, ph), mode="reflect" if ph < h else "replicate")
    return x, (h, w)


def axis_positions(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: equal tiles, first at 0, last flush with the end.

    The slack is spread evenly over all steps (rather than shifting only the last tile inward)
    so that every overlap is about the same and none is smaller than requested.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if tile <= 0 or tile >= size:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    steps = math.ceil((size - tile) / (tile - overlap))
    return [round(i * (size - tile) / steps) for i in range(steps + 1)]


def plan_tiles(h: int, w: int, tile: int, overlap: int) -> list[Tile]:
    """Cover an h x w image with equal-size tiles (row-major); ``tile <= 0`` means one tile.

    Equal sizes let tiles be batched and keep every tile a multiple of the model's stride.
    """
    ys, xs = axis_positions(h, tile, overlap), axis_positions(w, tile, overlap)
    th, tw = (min(tile, h), min(tile, w)) if tile > 0 else (h, w)
    return [Tile(y, x, th, tw, r, c) for r, y in enumerate(ys) for c, x in enumerate(xs)]


def _ramp(overlap: int) -> np.ndarray:
    """Rising weight over an overlap: 0 for the outer quarter, raised cosine, 1 for the last quarter.

    Symmetric so that ramp + reversed(ramp) == 1: two tiles sharing exactly this overlap form a
    partition of unity without any normalisation.
    """
    margin = overlap // 4
    width = overlap - 2 * margin
    t = (np.arange(overlap, dtype=np.float64) + 0.5 - margin) / width
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))


def _axis_profile(start: int, length: int, size: int, overlap: int) -> np.ndarray:
    prof = np.ones(length, np.float64)
    o = min(overlap, length // 2)
    if o <= 0:
        return prof
    ramp = _ramp(o)
    if start > 0:
        prof[:o] *= ramp
    if start + length < size:
        prof[length - o :] *= ramp[::-1]
    return prof


def _axis_weights(size: int, tile: int, overlap: int) -> list[np.ndarray]:
    """Per-tile 1-D weights along an axis (in `axis_positions` order), divided by their sum.

    The 2-D weight of a tile is the outer product of its row and column weights, and because
    every row of tiles shares the same column positions the 2-D sum is the product of the 1-D
    sums: normalising each axis is enough to make all weights add up to exactly 1.
    """
    starts = axis_positions(size, tile, overlap)
    length = min(tile, size) if tile > 0 else size
    profiles = [_axis_profile(s, length, size, overlap) for s in starts]
    total = np.zeros(size, np.float64)
    for s, p in zip(starts, profiles, strict=True):
        total[s : s + length] += p
    if total.min() <= 1e-6:  # a guard only: with overlap <= tile / 2 every pixel has weight
        profiles = [np.ones(length, np.float64) for _ in starts]
        total = np.zeros(size, np.float64)
        for s in starts:
            total[s : s + length] += 1.0
    return [(p / total[s : s + length]).astype(np.float32) for s, p in zip(starts, profiles, strict=True)]


def restore_tiled(
    image: np.ndarray,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    tile: int,
    overlap: int,
    multiple: int = 1,
    batch_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
    sink: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray | None:
    """Apply `fn` (Nx3xhxw -> Nx3xhxw) to an image tile by tile and blend.

    `image` is HxWx3 float in [0, 1], or the samples of a photo as stored (uint8/uint16 HxWx3,
    grey as HxW): each tile is converted to float only as it is fed to the model, so the photo never
    needs a float copy. ``tile=0`` runs the whole image at once. A tile that is not a multiple
    of `multiple` is rounded down to one so that only tiles cut by a small image edge need
    padding; each batch is reflect-padded to the multiple and cropped back here, so `fn` only
    runs the model (and picks the device). `overlap` is capped at half the tile: a wider
    overlap would only add tiles that are thrown away by the blending.

    The result is finished strip by strip: blending needs a float accumulator only one tile
    high, and rows no later tile touches are handed on as soon as the row of tiles above them is
    done. Without `sink` they are gathered into the returned HxWx3 float32 array; with it,
    ``sink(y, rows)`` receives each finished block of rows (top to bottom, `rows` float32
    HxWx3, valid only during the call) and nothing is returned. A sink may write its result
    into `image` itself: rows are handed on only once no later tile reads them.
    """
    if image.ndim == 2 and image.dtype.kind in "ui":  # a grey photo's samples as stored
        h, w = image.shape
    elif image.ndim == 3 and image.shape[2] == 3:
        h, w = image.shape[:2]
    else:
        raise ValueError(f"image must be HxWx3 (or HxW grey), got shape {image.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    multiple = max(1, int(multiple))
    if tile > 0:
        tile = max(multiple, tile - tile % multiple)
        overlap = min(overlap, tile // 2)
    else:
        tile = 0

    wy, wx = _axis_weights(h, tile, overlap), _axis_weights(w, tile, overlap)
    tiles = plan_tiles(h, w, tile, overlap)
    out: np.ndarray | None = None
    if sink is None:
        out = np.empty((h, w, 3), np.float32)

        def gather(y: int, rows: np.ndarray) -> None:
            out[y : y + len(rows)] = rows

        sink = gather
    strip = _Strip(tiles[0].h, w, sink)
    total = len(tiles)
    done = 0
    for i in range(0, total, batch_size):
        batch = tiles[i : i + batch_size]
        x = torch.from_numpy(np.stack([as_float_rgb(image[t.slices]).transpose(2, 0, 1) for t in batch]))
        x, (th, tw) = pad_to_multiple(x, multiple)
        x = x.contiguous()
        with torch.no_grad():
            y = fn(x)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape):
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise RuntimeError(f"model returned {got} for a tile batch of shape {tuple(x.shape)}")
        result = y[..., :th, :tw].detach().to("cpu", torch.float32).numpy()
        del x, y
        for t, r in zip(batch, result, strict=True):
            strip.add(t, r.transpose(1, 2, 0) * (wy[t.row][:, None] * wx[t.col][None, :])[..., None])
        done += len(batch)
        if progress is not None:
            progress(done, total)
    strip.finish(h)
    return out


class _Strip:
    """The rows of the output the current row of tiles covers, as a float accumulator.

    Tiles arrive in row-major order and every tile of a row starts at the same y, so when a tile
    of the next row arrives, all rows above its top are final: they go to the sink, and the
    accumulator moves down. Summation order is the same as into a whole-image buffer, so the
    result is bit-identical to it.
    """

    def __init__(self, height: int, width: int, sink: Callable[[int, np.ndarray], None]) -> None:
        self.acc = np.zeros((height, width, 3), np.float32)
        self.top = 0
        self.sink = sink

    def add(self, t: Tile, weighted: np.ndarray) -> None:
        if t.y > self.top:
            self.finish(t.y)
        rows = slice(t.y - self.top, t.y - self.top + t.h)
        self.acc[rows, t.x : t.x + t.w] += weighted

    def finish(self, upto: int) -> None:
        """Hand on rows ``top:upto`` (all final) and move the accumulator down to start at `upto`."""
        n = upto - self.top
        if n <= 0:
            return
        self.sink(self.top, self.acc[:n])
        keep = len(self.acc) - n
        if keep > 0:
            self.acc[:keep] = self.acc[n:]
        self.acc[max(keep, 0) :] = 0.0
        self.top = upto


def auto_tile_size(
    free_bytes: int,
    bytes_per_pixel: float,
    multiple: int,
    minimum: int = 256,
    *,
    fraction: float = MEMORY_FRACTION,
    batch_size: int = 1,
    maximum: int | None = None,
) -> int:
    """Largest square tile (a multiple of `multiple`) whose estimated memory fits the budget.

    `bytes_per_pixel` is the model's measured peak memory per input pixel; only `fraction` of
    the free memory is used because allocator fragmentation and cuDNN workspaces are not in
    that estimate. Never returns less than `minimum` (rounded up to the multiple): below that
    the model cannot see the blur, and the caller should rather warn or fall back to the CPU.
    """
    multiple = max(1, int(multiple))
    floor_tile = -(-max(minimum, multiple) // multiple) * multiple
    if bytes_per_pixel <= 0:
        raise ValueError(f"bytes_per_pixel must be positive, got {bytes_per_pixel}")
    budget = max(0.0, free_bytes * fraction) / (bytes_per_pixel * max(1, batch_size))
    side = int(math.isqrt(int(budget)))
    side -= side % multiple
    if maximum is not None:
        side = min(side, -(-maximum // multiple) * multiple)
    return max(floor_tile, side)


def fitted_tile(h: int, w: int, side: int, overlap: int, multiple: int, minimum: int = 0) -> int:
    """The automatic tile for an h x w image, given the largest side memory allows: 0 (the whole
    image) when the image has no more pixels than one such tile, else the smallest square tile
    (a multiple of `multiple`, at least `minimum`) that covers the image with as few tiles as
    `side` would. Fewest tiles first: a smaller tile sees less of the blur around each pixel.

    Memory follows the pixel count, not the side, so a 1280x720 video frame fits wherever a
    1024x1024 tile does; cutting it into two overlapping 1024 px tiles would cost 1.6x the work.
    Likewise a 1100 px square needs two tiles per axis, and two of about 570 px do the job of two
    of 1024 px that would overlap by almost their whole width (a quarter of the work).
    """
    if side <= 0 or h * w <= side * side:
        return 0
    multiple = max(1, int(multiple))
    need = 0
    for size in (h, w):  # square tiles: each axis keeps the count the largest side gives it
        n = len(axis_positions(size, side, overlap))
        need = max(need, -(-(size + (n - 1) * overlap) // n))  # n equal tiles, `overlap` apart
    fitted = -(-max(need, minimum) // multiple) * multiple
    return min(fitted, side)


def auto_tile(h: int, w: int, *, free_bytes: int, bytes_per_pixel: float, multiple: int, minimum: int,
              overlap: int, batch_size: int = 1, cpu: bool = False) -> int:
    """The automatic tile side for an h x w image (0 = the whole image): the one place the policy lives.

    The caller measures the device (free memory, the architecture's bytes per pixel at its
    precision); the rest is decided here: plan for `MEMORY_FRACTION` of the free memory, at most
    `CPU_MAX_TILE` on a CPU, never below the architecture's smallest useful tile (`minimum`:
    below it the model could not see the blur), and then the fewest tiles (`fitted_tile`).
    """
    side = auto_tile_size(free_bytes, bytes_per_pixel, multiple, minimum=minimum, batch_size=batch_size,
                          maximum=CPU_MAX_TILE if cpu else None)
    return fitted_tile(h, w, side, overlap, multiple, minimum=minimum)


def too_small_tile_warning(tile: int, min_tile: int, who: str = "this model") -> str | None:
    """A line for the CLI when tiles are below ``min_tile``, the smallest with which the model
    (``who``, its architecture's title) can still see the blur; else None."""
    if tile <= 0 or tile >= min_tile:
        return None
    return (
        f"tile size {tile} px is small for {who}: blur longer than a tile cannot be removed and "
        f"results degrade; use --tile {min_tile} or more (or --tile 0 for the whole image)"
    )
