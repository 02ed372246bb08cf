"""Training and validation data: a stream of patches that is a pure function of its position.

Every training sample has a global id ``k`` (0, 1, 2, ... across the whole run and all ranks), and
everything about it (which photo or pair, crop, flip, rotation, blur kernel, noise) comes from a
generator keyed on ``(seed, k)``. The sampler hands out ids in order, step by step, with the patch
size of that step's progressive stage. Hence:

- resuming needs only the next id, not the state of any worker or iterator, and the resumed run
  sees exactly the patches an uninterrupted one would, whatever ``num_workers`` is;
- ranks under torchrun take disjoint slices of each step's ids, so no sample is seen twice;
- persistent workers can serve every stage, because the patch size travels with the index.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing as mp
import os
import random
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DeblurError, OptionError, UsageError

# Distinct streams of the seed sequence, so no two uses of the seed ever share random numbers.
_STREAM_SOURCE, _STREAM_ORDER, _STREAM_CROP = 1, 2, 3

log = logging.getLogger(__name__)

Sample = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class PairFiles:
    """One blurred/sharp pair on disk."""

    blur: Path
    sharp: Path


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


# ------------------------------------------------------------------------------------------------
# Finding the files
# ------------------------------------------------------------------------------------------------


def list_photos(folder: str | Path) -> list[Path]:
    """Sharp photos under ``folder`` (recursively), sorted so the id -> photo map is stable."""
    from ..imageio.formats import IMAGE_EXTENSIONS

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise OptionError("data.synthetic", "no such folder; give a folder of sharp photos", value=str(root))
    photos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
        raise OptionError("data.synthetic", "no images found (png, jpg, tif, webp, bmp); add photos, or set "
                          "data.dead_leaves=1 to train on dead leaves alone", value=str(root))
    return photos


def find_paired(folder: str | Path, *, split: str = "train") -> list[PairFiles]:
    """Pairs in any layout ``deblurcli.eval.datasets`` recognises, preferring ``folder/<split>``.

    The benchmark finders look for a test split first; for training, a ``train/`` child is what
    is wanted, so it is tried before the folder itself.
    """
    from ..eval.datasets import scan_dataset

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UsageError(f"paired data folder {root} does not exist; pass a folder of blurred/sharp pairs")
    candidates = [root / split, root] if (root / split).is_dir() else [root]
    last_error: DeblurError | None = None
    for base in candidates:
        for layout in ("gopro", "pairs"):
            try:
                scan = scan_dataset(layout, base)
            except DeblurError as exc:
                last_error = exc
                continue
            if scan.pairs:
                return [PairFiles(p.blur, p.sharp) for p in scan.pairs]
    detail = str(last_error).splitlines()[0] if last_error else "no pairs"
    raise UsageError(f"no blurred/sharp pairs found under {root} ({detail}); expected e.g. <dir>/blur + <dir>/sharp, "
                     "<dir>/input + <dir>/target, or GoPro's <dir>/<sequence>/blur|sharp")


def split_holdout(items: Sequence[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """(train, held out): every n-th item is held out, so the held-out set spans the whole listing
    (GoPro's pairs come in long runs of one scene; the last 5 % would be one or two scenes)."""
    items = list(items)
    n = int(len(items) * fraction)
    if fraction <= 0 or n < 1 or len(items) < 2:
        return items, []
    picked = set(np.linspace(0, len(items) - 1, n).round().astype(int).tolist())
    return [x for i, x in enumerate(items) if i not in picked], [x for i, x in enumerate(items) if i in picked]


def read_rgb(path: Path) -> np.ndarray:
    """HxWx3 float32 in [0, 1], upright, the way ``deblur run`` reads its inputs."""
    from ..imageio import read_image

    return np.ascontiguousarray(read_image(path, allow_large=True).pixels[..., :3], dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# The training stream
# ------------------------------------------------------------------------------------------------


def augment(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random rotation by 90 degree steps and horizontal flip applied to every array."""
    rot = int(rng.integers(4))
    flip = bool(rng.random() < 0.5)
    out = []
    for a in arrays:
        a = np.rot90(a, rot)
        out.append(np.ascontiguousarray(a[:, ::-1] if flip else a))
    return out


def random_crop(blur: np.ndarray, sharp: np.ndarray, patch: int, rng: np.random.Generator,
                name: str) -> tuple[np.ndarray, np.ndarray]:
    """Aligned random crops; images smaller than the patch are mirrored out to it."""
    if blur.shape != sharp.shape:
        raise DeblurError(f"pair {name}: blurred image is {blur.shape[1]}x{blur.shape[0]} but the sharp one is "
                          f"{sharp.shape[1]}x{sharp.shape[0]}; pairs must have the same size")
    h, w = blur.shape[:2]
    if h < patch or w < patch:
        py, px = max(0, patch - h), max(0, patch - w)
        pad = ((py // 2, py - py // 2), (px // 2, px - px // 2), (0, 0))
        blur, sharp = np.pad(blur, pad, mode="symmetric"), np.pad(sharp, pad, mode="symmetric")
        h, w = blur.shape[:2]
    y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
    return blur[y:y + patch, x:x + patch], sharp[y:y + patch, x:x + patch]


def check_synth(kwargs: Mapping[str, Any]) -> None:
    """Refuse unknown ``data.synth`` keys now, not in a worker process minutes into the run."""
    import inspect

    from ..synth import degrade

    names = [n for n, p in inspect.signature(degrade).parameters.items() if p.kind is p.KEYWORD_ONLY]
    names.append("scale")  # read by SyntheticPairs: the range photos are downscaled by before cropping
    for key in kwargs:
        if key not in names:
            raise UsageError(f"data.synth: deblurcli.synth.degrade has no setting {key!r}; it has {', '.join(names)}")


def _chw(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))


class PatchStream(Dataset):
    """Map-style dataset indexed by ``(sample_id, patch)``; see the module docstring.

    Synthetic samples come from :class:`deblurcli.train.synthetic.SyntheticPairs` (one per patch size,
    made lazily in each worker), whose sample ``k`` of epoch 0 depends on ``(seed, 0, k)`` only.
    """

    def __init__(self, *, seed: int, photos: Sequence[Path] = (), dead_leaves: float = 0.0,
                 pairs: Sequence[PairFiles] = (), paired_fraction: float = 0.5,
                 synth: Mapping[str, Any] | None = None, cache: bool = False) -> None:
        self.seed = int(seed)
        self.photos = [str(p) for p in photos]
        self.dead_leaves = float(dead_leaves)
        self.pairs = list(pairs)
        self.synthetic = bool(self.photos) or self.dead_leaves > 0
        if not self.synthetic and not self.pairs:
            raise UsageError("no training data: give {data.paired} (a folder of pairs), {data.synthetic} "
                             "(sharp photos) or {data.dead_leaves}=1 (procedural images)",
                             names=("data.paired", "data.synthetic", "data.dead_leaves"))
        self.paired_fraction = float(paired_fraction) if self.synthetic and self.pairs else float(bool(self.pairs))
        self.synth = dict(synth or {})
        check_synth(self.synth)
        self.cache = cache
        self._makers: dict[int, Any] = {}
        self._images: dict[Path, np.ndarray] = {}
        self._order: tuple[int, np.ndarray] | None = None
        self._bad: set[PairFiles] = set()

    def __len__(self) -> int:  # the stream is endless; DataLoader only needs this for sanity checks
        return 2**62

    def _maker(self, patch: int) -> Any:
        if patch not in self._makers:
            from .synthetic import SyntheticPairs

            try:
                self._makers[patch] = SyntheticPairs(
                    self.photos, patch_size=patch, samples_per_epoch=1, dead_leaves_fraction=self.dead_leaves,
                    seed=self.seed, degrade_kwargs=self.synth, cache=self.cache)
            except TypeError as exc:
                raise UsageError(f"data.synth: {exc}; see deblurcli.synth.degrade for its settings") from None
        return self._makers[patch]

    def _read(self, path: Path) -> np.ndarray:
        if path in self._images:
            return self._images[path]
        img = read_rgb(path)
        if self.cache:
            self._images[path] = img
        return img

    def _pair_for(self, k: int) -> PairFiles:
        """Pairs are visited epoch by epoch in a fresh seeded order, so each is seen once per epoch."""
        n = len(self.pairs)
        epoch, pos = divmod(k, n)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, _rng(self.seed, _STREAM_ORDER, epoch).permutation(n))
        return self.pairs[int(self._order[1][pos])]

    def _readable_pair(self, k: int) -> tuple[PairFiles, tuple[np.ndarray, np.ndarray]]:
        """Pair ``k``, or the next readable one: a bad file is skipped with one warning, not fatal."""
        n = len(self.pairs)
        epoch, pos = divmod(k, n)
        for j in range(n):  # the rest of this epoch's order, wrapping: every pair is tried once
            pair = self._pair_for(epoch * n + (pos + j) % n)
            if pair in self._bad:
                continue
            try:
                return pair, (self._read(pair.blur), self._read(pair.sharp))
            except DeblurError as exc:
                self._bad.add(pair)
                log.warning("skipping a training pair: %s", exc)
        raise DeblurError(f"none of the {len(self.pairs)} training pairs can be read; "
                          "check the folder (the warnings above name each file)")

    def __getitem__(self, index: tuple[int, int]) -> Sample:
        k, patch = (int(v) for v in index)
        use_pairs = self.paired_fraction >= 1 or (
            self.paired_fraction > 0 and _rng(self.seed, _STREAM_SOURCE, k).random() < self.paired_fraction)
        if not use_pairs:
            try:
                blurred, sharp = self._maker(patch).sample(k)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"data.synth: {exc}") from None
            return _chw(blurred), _chw(sharp)
        pair, images = self._readable_pair(k)
        rng = _rng(self.seed, _STREAM_CROP, k)
        blur, sharp = random_crop(*images, patch, rng, pair.blur.name)
        blur, sharp = augment([blur, sharp], rng)
        return _chw(blur), _chw(sharp)


@dataclass(frozen=True)
class Position:
    """Where the stream stands: the next optimizer step and the next sample id."""

    step: int
    sample: int


class StepBatches(Sampler[list[tuple[int, int]]]):
    """Endless micro-batches of ``(sample_id, patch)`` for one rank, following the stage schedule.

    Each micro-batch takes ``batch * world`` consecutive ids; rank ``r`` gets the ``r``-th slice.
    """

    def __init__(self, start: Position, stages: Sequence[tuple[int, int, int]], *, accumulate: int,
                 world: int = 1, rank: int = 0) -> None:
        self.start = start
        self.stages = list(stages)
        self.accumulate = accumulate
        self.world = world
        self.rank = rank

    def stage_at(self, step: int) -> tuple[int, int]:
        return stage_at(self.stages, step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step, k = self.start.step, self.start.sample
        while True:
            patch, batch = self.stage_at(step)
            for _ in range(self.accumulate):
                first = k + self.rank * batch
                yield [(first + j, patch) for j in range(batch)]
                k += batch * self.world
            step += 1

    def __len__(self) -> int:  # pragma: no cover - endless
        raise TypeError("the training stream is endless")


def stage_at(stages: Sequence[tuple[int, int, int]], step: int) -> tuple[int, int]:
    """(patch, batch) for ``step`` (0-based): the first stage whose end lies after it."""
    for until, patch, batch in stages:
        if step < until:
            return patch, batch
    return stages[-1][1], stages[-1][2]


def _worker_init(main_pid: int, worker_id: int) -> None:
    """Seed the libraries' global generators per worker (samples use their own keyed generators;
    this only keeps any library randomness from repeating across workers), keep each worker to
    one thread, since the workers themselves are the parallelism, and tie its life to the trainer's."""
    del worker_id
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - opencv is a dependency
        pass
    _die_with(main_pid)


def _die_with(main_pid: int) -> None:
    """End this worker the moment the trainer ends, however it ends.

    torch's own check compares the worker's parent with the one it started with, but a forkserver
    worker's parent is the forkserver, which outlives a SIGKILLed trainer: each worker holds the
    forkserver's liveness pipe, so neither side ever sees the other go, and an OOM-killed run left
    its workers running for good. So each worker watches the trainer itself (a pidfd, which cannot
    be fooled by a reused pid; polling where there is none), and also asks the kernel to kill it
    with its parent (PR_SET_PDEATHSIG), which covers the spawn fallback and a killed forkserver.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - not glibc/musl
            pass
    try:
        pidfd = os.pidfd_open(main_pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None and not _pid_alive(main_pid):
        os._exit(0)

    def watch() -> None:
        if pidfd is not None:
            select.select([pidfd], [], [])  # readable once the trainer has exited
        else:
            while _pid_alive(main_pid):
                time.sleep(1.0)
        os._exit(0)  # nothing to flush: the trainer that wanted this worker's batches is gone

    threading.Thread(target=watch, name="deblur-trainer-watch", daemon=True).start()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process took the pid
        return False
    return True


def make_loader(dataset: PatchStream, sampler: StepBatches, *, num_workers: int, prefetch: int, seed: int,
                pin_memory: bool) -> DataLoader:
    """A DataLoader over the endless stream. Its own torch generator seeds the workers, so creating
    it never draws from the global RNG that a resumed run restores."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        # Not fork: by now this process runs OpenCV's, numba's and torch's thread pools (validation
        # pairs, the probe pass), and a forked child inherits their locks but not their threads, so
        # it can hang forever on its first blur. forkserver/spawn children start clean.
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            # The server imports the heavy modules once (starting no threads); workers fork from it.
            ctx.set_forkserver_preload(["deblurcli.train.data", "deblurcli.synth", "deblurcli.imageio"])
        else:
            ctx = mp.get_context("spawn")
        kwargs.update(persistent_workers=True, prefetch_factor=prefetch,
                      worker_init_fn=functools.partial(_worker_init, os.getpid()),
                      multiprocessing_context=ctx)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed), **kwargs)


# ------------------------------------------------------------------------------------------------
# Validation set
# ------------------------------------------------------------------------------------------------


def _centre(a: np.ndarray, size: int, multiple: int) -> np.ndarray:
    h, w = a.shape[:2]
    th = min(h, size) if size > 0 else h
    tw = min(w, size) if size > 0 else w
    th, tw = th - th % multiple, tw - tw % multiple
    if th < multiple or tw < multiple:
        raise DeblurError(f"validation image of {w}x{h} is smaller than the network's size step ({multiple} px)")
    y, x = (h - th) // 2, (w - tw) // 2
    return a[y:y + th, x:x + tw]


def paired_val(pairs: Sequence[PairFiles], *, count: int, size: int, multiple: int) -> list[Sample]:
    """Centre crops of ``count`` pairs spread evenly over the listing (so they span the scenes)."""
    if not pairs:
        return []
    idx = sorted(set(np.linspace(0, len(pairs) - 1, min(count, len(pairs))).round().astype(int).tolist()))
    out = []
    for i in idx:
        blur, sharp = read_rgb(pairs[i].blur), read_rgb(pairs[i].sharp)
        if blur.shape != sharp.shape:
            raise DeblurError(f"validation pair {pairs[i].blur.name}: blurred and sharp images differ in size")
        out.append((_chw(_centre(blur, size, multiple)), _chw(_centre(sharp, size, multiple))))
    return out


def synthetic_val(*, photos: Sequence[Path], dead_leaves: float, count: int, size: int, multiple: int, seed: int,
                  synth: Mapping[str, Any] | None = None) -> list[Sample]:
    """``count`` synthetic pairs made once from ``seed`` (no augmentation): the same set every time."""
    from .synthetic import SyntheticPairs

    side = max(multiple, (size or 256) - (size or 256) % multiple)
    maker = SyntheticPairs([str(p) for p in photos], patch_size=side, samples_per_epoch=max(1, count),
                           dead_leaves_fraction=dead_leaves if photos else 1.0, seed=seed, augment=False,
                           degrade_kwargs=dict(synth or {}))
    out = []
    for i in range(count):
        blurred, sharp = maker.sample(i)
        out.append((_chw(blurred), _chw(sharp)))
    return out
