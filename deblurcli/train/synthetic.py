"""The training Dataset of synthetic pairs: sharp crops (or dead leaves) blurred on the fly.

The recipes themselves (kernels, blur, noise, JPEG, dead leaves) are in :mod:`deblurcli.synth`,
which ``deblur synth`` uses without torch; this module only turns them into a torch `Dataset`
with the seeding a resumable, multi-worker training run needs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DeblurError, ImageError
from ..imageio import as_float_rgb, read_image
from ..synth import dead_leaves, degrade, largest_kernel

log = logging.getLogger(__name__)

__all__ = ["SyntheticPairs"]


class SyntheticPairs(Dataset):
    """On-the-fly ``(blurred, sharp)`` CHW float32 tensors for training.

    Each sample crops a random ``patch_size`` window (with a margin of context for the blur) from a
    random source image, or draws a dead-leaves image with probability ``dead_leaves_fraction``
    (default: 0 with images, 1 without), applies a random flip and 90-degree rotation, then
    :func:`degrade`. ``images`` may mix arrays (HxWx3, uint8/uint16 or float in [0, 1]) and paths.

    Seeding: sample ``i`` of epoch ``e`` uses a generator derived from ``(seed, e, i)`` alone. That
    is stricter than per-worker seeding: different DataLoader workers necessarily draw different
    samples (they get different indices), nothing repeats across workers or epochs, and a run
    resumed at epoch ``e`` reproduces the same samples whatever ``num_workers`` is. Call
    :meth:`set_epoch` before iterating each epoch; with ``persistent_workers=True`` the workers
    keep their own copy of the dataset, so pass the epoch through a fresh DataLoader instead.
    """

    def __init__(self, images: Sequence[np.ndarray | str | os.PathLike[str]] = (), *,
                 patch_size: int | tuple[int, int] = 256, samples_per_epoch: int = 1000,
                 dead_leaves_fraction: float | None = None, seed: int = 0, augment: bool = True,
                 degrade_kwargs: dict | None = None, cache: bool = False) -> None:
        self.images = list(images)
        if dead_leaves_fraction is None:
            dead_leaves_fraction = 0.0 if self.images else 1.0
        if not self.images and dead_leaves_fraction < 1:
            raise DeblurError("SyntheticPairs has no sharp images; pass images or dead_leaves_fraction=1")
        self.patch = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.dead_leaves_fraction = float(dead_leaves_fraction)
        self.seed = int(seed)
        self.augment = augment
        self.degrade_kwargs = dict(degrade_kwargs or {})
        # ``scale`` is not a degradation but how a photo is sampled: each crop is taken from the
        # photo downscaled by a factor drawn log-uniformly from this range, so one large photo
        # yields many distinct crops, with detail at many scales (and downscaling sharpens).
        lo_s, hi_s = (float(v) for v in self.degrade_kwargs.pop("scale", (1.0, 1.0)))
        if not 0 < lo_s <= hi_s <= 1:
            raise ValueError(f"scale must be a range within (0, 1], got {(lo_s, hi_s)}")
        self.scale = (lo_s, hi_s)
        self.margin = largest_kernel(self.degrade_kwargs) // 2
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self._bad: set[int] = set()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns (for resumable training)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _source(self, i: int) -> np.ndarray:
        item = self.images[i]
        if isinstance(item, np.ndarray):
            return item
        if i in self._cache:
            return self._cache[i]
        img = _read_samples(Path(item))
        if self.cache:
            self._cache[i] = img
        return img

    def _readable_source(self, rng: np.random.Generator) -> np.ndarray:
        """A random source image, skipping (with one warning each) files that cannot be read.

        A bad file among thousands must not end an hours-long training run. The draws do not depend
        on which bad files are already known, so every worker makes the same samples.
        """
        while True:
            if len(self._bad) == len(self.images):
                raise ImageError(f"none of the {len(self.images)} sharp images can be read; "
                                 "check the folder (the warnings above name each file)")
            i = int(rng.integers(len(self.images)))
            if i in self._bad:
                continue
            try:
                return self._source(i)
            except ImageError as exc:
                self._bad.add(i)
                log.warning("skipping a training image: %s", exc)

    def _window(self, img: np.ndarray, hh: int, ww: int, rng: np.random.Generator) -> np.ndarray:
        """A random ``hh x ww`` window; images smaller than the patch are upscaled to cover it, and
        only the blur margin, if missing, is filled by mirroring."""
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3]
        h, w = img.shape[:2]
        if self.scale != (1.0, 1.0):
            lo_s, hi_s = self.scale
            s = float(np.exp(rng.uniform(np.log(lo_s), np.log(hi_s))))
            s = max(s, hh / h, ww / w)  # never upscale a window to fill the crop
            if s < 1.0:
                sh, sw = min(h, round(hh / s)), min(w, round(ww / s))
                y = int(rng.integers(0, h - sh + 1))
                x = int(rng.integers(0, w - sw + 1))
                img = cv2.resize(np.ascontiguousarray(img[y:y + sh, x:x + sw]), (ww, hh),
                                 interpolation=cv2.INTER_AREA)
                return _unit(img)
        need_h, need_w = hh - 2 * self.margin, ww - 2 * self.margin
        if h < need_h or w < need_w:
            s = max(need_h / h, need_w / w)
            img = cv2.resize(img, (max(need_w, math.ceil(w * s)), max(need_h, math.ceil(h * s))),
                             interpolation=cv2.INTER_CUBIC)
            h, w = img.shape[:2]
        if h < hh or w < ww:
            py, px = max(0, hh - h), max(0, ww - w)
            img = cv2.copyMakeBorder(img, py // 2, py - py // 2, px // 2, px - px // 2, cv2.BORDER_REFLECT)
            h, w = img.shape[:2]
        y = int(rng.integers(0, h - hh + 1))
        x = int(rng.integers(0, w - ww + 1))
        return _unit(img[y:y + hh, x:x + ww])

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(blurred, sharp)`` as HxWx3 float32 arrays, for inspection without torch."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))
        ph, pw = self.patch
        rot = int(rng.integers(4)) if self.augment else 0
        flip = bool(rng.random() < 0.5) if self.augment else False
        hh, ww = (ph, pw) if rot % 2 == 0 else (pw, ph)
        hh, ww = hh + 2 * self.margin, ww + 2 * self.margin
        if rng.random() < self.dead_leaves_fraction:
            sharp = dead_leaves((hh, ww), rng)
        else:
            sharp = self._window(self._readable_source(rng), hh, ww, rng)
        sharp = np.rot90(sharp, rot)
        if flip:
            sharp = sharp[:, ::-1]
        sharp = np.ascontiguousarray(sharp)
        blurred, _ = degrade(sharp, rng, **self.degrade_kwargs)
        m = self.margin
        return blurred[m:m + ph, m:m + pw], sharp[m:m + ph, m:m + pw]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        blurred, sharp = self.sample(index)
        return (torch.from_numpy(np.ascontiguousarray(blurred.transpose(2, 0, 1))),
                torch.from_numpy(np.ascontiguousarray(sharp.transpose(2, 0, 1))))


def _read_samples(path: Path) -> np.ndarray:
    """A photo's own samples (uint8 or uint16, upright, alpha left out), read as ``deblur run``
    reads its inputs; kept as integers so a cached photo costs 3 or 6 bytes a pixel, not 12."""
    return read_image(path, allow_large=True).samples


def _unit(img: np.ndarray) -> np.ndarray:
    """HxWx3 float32 in [0, 1]: integer samples divided by their maximum; float arrays given by a
    caller, or pushed past [0, 1] by cubic resizing, clipped back."""
    return np.clip(as_float_rgb(img), 0.0, 1.0)
