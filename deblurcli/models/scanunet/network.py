"""ScanUNet: the embedded default's architecture, a convolutional U-Net with selective scans only
at its coarse levels.

Why not one of the papers' networks at a smaller width: on a CPU their cost sits at full
resolution (ALGNet-8 spends most of its time scanning 16 channels over every pixel), and a
scaled-down copy is both slow (about 5 s per megapixel on two cores) and short of receptive
field. Motion blur needs two things: sharp local detail, which plain 3x3 convolutions give
cheaply, and the blur's direction and extent, which is a property of the whole photo (or a
large region of it) and wants a global view. So this network

- folds 2x2 pixels into channels at the input (pixel-unshuffle), so no layer runs at full
  resolution, and unfolds them at the output, predicting a residual on the input;
- runs residual conv blocks (3x3, ReLU) at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input size;
- adds a bidirectional Mamba mixer (row-major and column-major token orders, the same Mamba v1
  block ALGNet and XYScanNet use, so every scan backend serves it) to the blocks of the coarse
  levels listed in ``scan_levels``. There a 1-megapixel photo is a few thousand tokens, so the
  scan costs little while it spans the whole image.

Parameter names are ours (there are no authors' checkpoints); detection keys on ``head``,
``mid`` and ``tail``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import CheckpointError
from ..contract import count_blocks, strip_module_prefix
from ..mamba import Mamba
from .variants import DEFAULT_VARIANT, VARIANTS

#: Levels below the unshuffle: 1/2 .. 1/16 are encoder/decoder levels, the middle is at 1/32.
LEVELS = 4


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a ReLU between, added to the input.

    No normalisation: at the widths used here it costs as much as the convolutions on a CPU and
    a residual branch scaled down at initialisation (``res_scale``) trains stably without it.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = nn.Parameter(torch.full((1, channels, 1, 1), 0.1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x), inplace=True))


class ScanMixer(nn.Module):
    """A global token mixer: Mamba over the rows, then over the columns, of a feature map.

    One direction of a causal scan sees only what came before a pixel; row-major then
    column-major order (each in its own Mamba) lets every position gather from the whole map in
    two passes, which is what a blur kernel's extent needs.
    """

    def __init__(self, channels: int, d_state: int) -> None:
        super().__init__()
        self.norm_h = nn.LayerNorm(channels)
        self.scan_h = Mamba(channels, d_state=d_state, expand=1)
        self.norm_v = nn.LayerNorm(channels)
        self.scan_v = Mamba(channels, d_state=d_state, expand=1)
        self.scale = nn.Parameter(torch.full((1, channels, 1, 1), 0.1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        rows = rows + self.scan_h(self.norm_h(rows))
        cols = rows.reshape(b, h, w, c).transpose(1, 2).reshape(b, w * h, c)
        cols = cols + self.scan_v(self.norm_v(cols))
        mixed = cols.reshape(b, w, h, c).permute(0, 3, 2, 1)
        return x + self.scale * (mixed - x)


class Stage(nn.Module):
    """``count`` residual blocks at one level, each followed by a scan mixer if the level has one."""

    def __init__(self, channels: int, count: int, scan: bool, d_state: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(channels) for _ in range(count))
        self.mixers = nn.ModuleList(ScanMixer(channels, d_state) for _ in range(count if scan else 0))

    def forward(self, x: Tensor) -> Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x)
            if self.mixers:
                x = self.mixers[i](x)
        return x


class ScanUNet(nn.Module):
    """Input (N, C, H, W) in [0, 1], H and W multiples of 32; output the same shape (not clamped)."""

    def __init__(self, img_channel: int = 3, width: int = 16, enc_blk_nums: Sequence[int] = (1, 1, 1, 1),
                 middle_blk_num: int = 1, dec_blk_nums: Sequence[int] = (1, 1, 1, 1),
                 scan_levels: Sequence[int] = (2, 3), d_state: int = 8, max_mult: int = 4) -> None:
        super().__init__()
        if len(enc_blk_nums) != LEVELS or len(dec_blk_nums) != LEVELS:
            raise ValueError(f"ScanUNet has {LEVELS} levels: enc_blk_nums and dec_blk_nums need {LEVELS} numbers")
        bad = [lv for lv in scan_levels if not 0 <= int(lv) <= LEVELS]
        if bad:
            raise ValueError(f"scan_levels must be in 0..{LEVELS} (level {LEVELS} is the middle): {bad}")
        self.img_channel = img_channel
        scans = {int(lv) for lv in scan_levels}
        # Channels double per level up to ``max_mult`` x the width: the coarse levels are cheap in
        # time but would otherwise hold most of the parameters, and the file ships in the package.
        widths = [width * min(2**i, max_mult) for i in range(LEVELS + 1)]
        self.head = nn.Conv2d(img_channel * 4, width, 3, padding=1)
        self.enc = nn.ModuleList(Stage(widths[i], n, i in scans, d_state) for i, n in enumerate(enc_blk_nums))
        self.down = nn.ModuleList(nn.Conv2d(widths[i], widths[i + 1], 2, stride=2) for i in range(LEVELS))
        self.mid = Stage(widths[LEVELS], middle_blk_num, LEVELS in scans, d_state)
        self.up = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i] * 4, 1) for i in range(LEVELS))
        self.dec = nn.ModuleList(Stage(widths[i], n, i in scans, d_state) for i, n in enumerate(dec_blk_nums))
        self.tail = nn.Conv2d(width, img_channel * 4, 3, padding=1)
        # Start as the identity: an untrained network then returns its input, the right first
        # guess for a residual deblurrer, instead of adding noise that training must first undo.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, inp: Tensor) -> Tensor:
        x = F.relu(self.head(F.pixel_unshuffle(inp, 2)), inplace=True)
        skips = []
        for stage, down in zip(self.enc, self.down, strict=True):
            x = stage(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for i in reversed(range(LEVELS)):
            x = F.pixel_shuffle(self.up[i](x), 2) + skips[i]
            x = self.dec[i](x)
        return inp + F.pixel_shuffle(self.tail(x), 2)


def build(kwargs: Mapping[str, Any], variant: str = DEFAULT_VARIANT, **settings: Any) -> ScanUNet:
    """Build from constructor kwargs; the one variant takes no settings (others' must be None)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ScanUNet variant {variant!r}: its only form is 'plain'")
    extra = [k for k, v in settings.items() if v is not None]
    if extra:
        raise ValueError(f"ScanUNet does not take the setting(s) {', '.join(sorted(extra))}")
    return ScanUNet(**kwargs)


def detect(state_dict: Mapping[str, Any]) -> bool:
    """Our own key layout: a pixel-unshuffled head, ``mid`` stage and ``tail``."""
    keys = set(strip_module_prefix(state_dict))
    return {"head.weight", "tail.weight", "down.0.weight", "up.0.weight"} <= keys and any(
        k.startswith("mid.blocks.") for k in keys)



def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor kwargs from key names and shapes alone."""
    sd = strip_module_prefix(state_dict)
    if "head.weight" not in sd:
        raise CheckpointError("not ScanUNet weights: no 'head.weight'")
    keys = list(sd)
    width, in4 = (int(s) for s in sd["head.weight"].shape[:2])
    stages = [f"enc.{i}." for i in range(LEVELS)] + ["mid."]
    scan_levels = [lv for lv, p in enumerate(stages) if any(k.startswith(p + "mixers.") for k in keys)]
    a_log = next((sd[k] for k in keys if k.endswith("A_log")), None)
    return {
        "img_channel": in4 // 4,
        "width": width,
        "enc_blk_nums": [count_blocks(keys, f"enc.{i}.blocks.", "ScanUNet") for i in range(LEVELS)],
        "middle_blk_num": count_blocks(keys, "mid.blocks.", "ScanUNet"),
        "dec_blk_nums": [count_blocks(keys, f"dec.{i}.blocks.", "ScanUNet") for i in range(LEVELS)],
        "scan_levels": scan_levels,
        "d_state": int(a_log.shape[1]) if a_log is not None else 8,
        # the last downsampling's output is the 1/32 level's width (present even with no middle blocks)
        "max_mult": int(sd[f"down.{LEVELS - 1}.weight"].shape[0]) // width,
    }


def pad_multiple(kwargs: Mapping[str, Any] | None = None, variant: str = DEFAULT_VARIANT) -> int:
    """2x unshuffle and four 2x downsamplings: sizes must be multiples of 32."""
    return 2 * 2**LEVELS


def restore(model: nn.Module, x: Tensor) -> Tensor:
    return model(x)


def training_outputs(model: nn.Module, x: Tensor) -> list[Tensor]:
    """One full-size prediction: the network has no multi-scale heads."""
    return [model(x)]


__all__ = ["ScanUNet", "build", "detect", "infer_config", "pad_multiple", "restore", "training_outputs"]
