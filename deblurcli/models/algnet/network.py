"""ALGNet (Gao et al., "Learning Enriched Features via Selective State Spaces Model for Efficient
Image Deblurring"), laid out so that the authors' checkpoints load with ``strict=True`` as they are.

Two forms exist, as in the official ``algnet.py``:

- ``plain``: every block's local branch gates with a global average pool (how it was trained);
- ``local`` (the official ``ALGNetLocal``, TLC): that pool becomes a sliding-window mean whose
  window is fixed from the size each layer saw at the training crop size. Training on crops and
  testing on whole frames otherwise shifts the pooled statistics; the paper's numbers use this form.

Facts about the official code that are easy to get wrong, and which this module reproduces:

- The padding to a multiple of 16 is zero padding at the bottom/right, and all four outputs are
  returned at the padded size; the three coarse inputs are nearest-neighbour halvings.
- In a block the global (Mamba) and local branches both read the same gated features; the global
  branch is scaled by ``(inside_all + 1) * lamb_g`` (``inside_all`` is just a second learned
  per-channel scale, folded into one) and the local one by ``lamb_l``; the two are summed.
- ``gamma`` and ``conv3_2`` are allocated (so checkpoints hold them) but never used.
- TLC windows come from integer arithmetic on each layer's *training-time* feature size
  (``feature * base // train``), not from ``base / 2**level``: with a 16 px training size the
  1 px bottleneck gets a 1 px window (an identity), not the whole map.
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

#: The official Glayer hard-codes the Mamba state size; a checkpoint with another one is ours.
OFFICIAL_D_STATE = 32
#: Four 2x downsamplings, hence sizes must be multiples of 16 (the official ``padder_size``).
PAD_MULTIPLE = 16
#: TLC defaults of ``ALGNetLocal``: training crop 256x256, window base 1.5x that.
DEFAULT_TRAIN_SIZE = (256, 256)
#: Strides tried by the official "fast" TLC pooling, largest first.
_FAST_STRIDES = (5, 4, 3, 2, 1)


# --------------------------------------------------------------------------------------------- #
# Small layers
# --------------------------------------------------------------------------------------------- #


class LayerNorm2d(nn.Module):
    """Per-pixel LayerNorm over channels (NAFNet's), eps 1e-6.

    Done by ``F.layer_norm`` on a channels-last view rather than by hand: one fused op, and under
    autocast it is computed in float32, which the hand-written form would not be.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    """NAFNet's gate: halves the channels by multiplying the two halves."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class SlidingMean(nn.Module):
    """TLC's replacement for a global average pool: a mean over a fixed window around each pixel.

    ``kernel`` is fixed at construction (the official code fixes it on its first, training-size
    forward). Windows are computed from a summed-area table and the valid result is edge-replicate
    padded back to the input size, as the official ``AvgPool2d``; a window covering the whole map
    is the plain global mean. The table is accumulated in float32 even for half inputs, because a
    float16 running sum over a large frame loses all precision (or overflows).

    ``fast_imp`` reproduces the official "non-equivalent but faster" path: the table is built on a
    strided subsample and the result upsampled by nearest neighbour.
    """

    def __init__(self, kernel: tuple[int, int], fast_imp: bool = False,
                 max_stride: tuple[int, int] = (_FAST_STRIDES[0], _FAST_STRIDES[0])) -> None:
        super().__init__()
        self.kernel = (int(kernel[0]), int(kernel[1]))
        self.fast_imp = fast_imp
        self.max_stride = (int(max_stride[0]), int(max_stride[1]))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, fast_imp={self.fast_imp}"

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        kh, kw = self.kernel
        if kh >= h and kw >= w:
            return x.mean(dim=(-2, -1), keepdim=True)
        xs = x.float()
        if self.fast_imp:
            out = self._fast(xs, h, w)
        else:
            s = F.pad(xs.cumsum(dim=-1).cumsum(dim=-2), (1, 0, 1, 0))
            k1, k2 = min(h, kh), min(w, kw)
            out = (s[..., k1:, k2:] + s[..., :-k1, :-k2] - s[..., :-k1, k2:] - s[..., k1:, :-k2]) / (k1 * k2)
        dh, dw = h - out.shape[-2], w - out.shape[-1]
        out = F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode="replicate")
        return out.to(x.dtype)

    def _fast(self, x: Tensor, h: int, w: int) -> Tensor:
        r1 = min(self.max_stride[0], next(r for r in _FAST_STRIDES if h % r == 0))
        r2 = min(self.max_stride[1], next(r for r in _FAST_STRIDES if w % r == 0))
        s = x[..., ::r1, ::r2].cumsum(dim=-1).cumsum(dim=-2)
        hs, ws = s.shape[-2:]
        # The official code divides by zero when a subsampled side is a single row/column; a
        # window of one there keeps the output defined without changing any case that works.
        k1 = max(1, min(hs - 1, self.kernel[0] // r1))
        k2 = max(1, min(ws - 1, self.kernel[1] // r2))
        out = (s[..., :-k1, :-k2] - s[..., :-k1, k2:] - s[..., k1:, :-k2] + s[..., k1:, k2:]) / (k1 * k2)
        return F.interpolate(out, scale_factor=(r1, r2))


class _ConvAct(nn.Module):
    """The official ``BasicConv`` (conv + optional GELU); kept as a module for its key names."""

    def __init__(self, cin: int, cout: int, kernel: int, act: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=True)]
        if act:
            layers.append(nn.GELU())
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class SFE(nn.Module):
    """Shallow features of a downscaled input, injected into the encoder at the same scale."""

    def __init__(self, planes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            _ConvAct(in_channels, planes // 4, 3, act=True),
            _ConvAct(planes // 4, planes // 2, 1, act=True),
            _ConvAct(planes // 2, planes // 2, 3, act=True),
            _ConvAct(planes // 2, planes, 1, act=False),
            nn.InstanceNorm2d(planes, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class FAM(nn.Module):
    """Fuses the downsampled encoder features with the SFE features of the same scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.merge = nn.Conv2d(2 * channels, channels, kernel_size=1)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.merge(torch.cat([x, z], dim=1))


# --------------------------------------------------------------------------------------------- #
# The block
# --------------------------------------------------------------------------------------------- #


class GlobalBranch(nn.Module):
    """Mamba over all pixels of the map as one token sequence (row-major), in float32.

    The official layer disables autocast: a long recurrence in half precision drifts. The result
    stays float32, as in the official code: under autocast it promotes the block's residual sum
    to float32, so the residual stream between blocks keeps full precision.
    """

    def __init__(self, dim: int, d_state: int = OFFICIAL_D_STATE, d_conv: int = 4, expand: int = 2) -> None:
        super().__init__()
        self.dim = dim
        self.norm = nn.LayerNorm(dim)
        self.mamba = Mamba(d_model=dim, d_state=d_state, d_conv=d_conv, expand=expand)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            tokens = x.float().reshape(b, c, h * w).transpose(1, 2)
            tokens = F.layer_norm(tokens, (c,), self.norm.weight.float(), self.norm.bias.float(), self.norm.eps)
            out = self.mamba(tokens)
            return out.transpose(1, 2).reshape(b, c, h, w)


class LocalBranch(nn.Module):
    """Channel attention: a pooled per-channel gate on the features, then a 1x1 projection.

    ``ap`` is the global pool in the plain form and a :class:`SlidingMean` in the local form.
    """

    def __init__(self, c: int, pool: nn.Module | None = None) -> None:
        super().__init__()
        self.ap = pool if pool is not None else nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Conv2d(c, c, kernel_size=1)
        self.conv2 = nn.Conv2d(c, c, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(x * self.conv1(self.ap(x)))


class BasicBlock(nn.Module):
    """ALGNet's block: a NAFNet-style block whose attention is a learned mix of a global (Mamba)
    and a local (pooled gate) branch, followed by a gated 1x1 feed-forward."""

    def __init__(self, c: int, d_state: int = OFFICIAL_D_STATE, pool: nn.Module | None = None) -> None:
        super().__init__()
        # Registration order follows the official class, so state_dict keys come out in its order.
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))  # in the checkpoints, unused by the forward
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.inside_all = nn.Parameter(torch.zeros(c, 1, 1))
        self.lamb_g = nn.Parameter(torch.zeros(c))
        self.lamb_l = nn.Parameter(torch.zeros(c))
        self.sg = SimpleGate()
        self.conv1 = nn.Conv2d(c, 2 * c, kernel_size=1)
        self.conv2 = nn.Conv2d(2 * c, 2 * c, kernel_size=3, padding=1, groups=2 * c)
        self.conv3_2 = nn.Conv2d(2 * c, c, kernel_size=1)  # in the checkpoints, unused by the forward
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, 2 * c, kernel_size=1)
        self.conv5 = nn.Conv2d(c, c, kernel_size=1)
        self.g_layer = GlobalBranch(c, d_state=d_state)
        self.l_layer = LocalBranch(c, pool)

    def forward(self, inp: Tensor) -> Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x_g = self.g_layer(x) * (self.inside_all + 1.0) * self.lamb_g[:, None, None]
        x_l = self.l_layer(x) * self.lamb_l[:, None, None]
        y = inp + (x_g + x_l)
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + x * self.beta


# --------------------------------------------------------------------------------------------- #
# The network
# --------------------------------------------------------------------------------------------- #


def _pair(value: Any, name: str) -> tuple[int, int]:
    """(H, W) from an int, an (H, W) pair or an (N, C, H, W) shape, as the official TLC accepts."""
    if isinstance(value, int):
        return value, value
    seq = [int(v) for v in value]
    if len(seq) not in (2, 4) or min(seq[-2:]) <= 0:
        raise ValueError(f"{name} must be H, (H, W) or (N, C, H, W) with positive sizes, got {value!r}")
    return seq[-2], seq[-1]


def normalize_local_pool(local_pool: Mapping[str, Any] | None) -> dict[str, Any]:
    """Fill in TLC settings the way ``ALGNetLocal`` does (train 256x256, base 1.5x train)."""
    cfg = dict(local_pool or {})
    unknown = set(cfg) - {"train_size", "base_size", "fast_imp"}
    if unknown:
        raise ValueError(f"unknown local_pool settings: {', '.join(sorted(unknown))}")
    th, tw = _pair(cfg.get("train_size") or DEFAULT_TRAIN_SIZE, "train_size")
    base = cfg.get("base_size")
    bh, bw = _pair(base, "base_size") if base is not None else (int(th * 1.5), int(tw * 1.5))
    return {"train_size": [th, tw], "base_size": [bh, bw], "fast_imp": bool(cfg.get("fast_imp", False))}


def _pad_to(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


class ALGNet(nn.Module):
    """The official ``ALGNet`` (``local_pool=None``) or ``ALGNetLocal`` (``local_pool`` given).

    ``d_state`` is ours (the official one is fixed at 32) so that scaled-down models can use a
    smaller Mamba state; it is read back from ``A_log``'s shape. ``forward`` is the official one:
    zero-pads to a multiple of 16 and returns ``[out_1/8, out_1/4, out_1/2, out_full]`` at the
    padded size.
    """

    pad_multiple = PAD_MULTIPLE

    def __init__(self, img_channel: int = 3, width: int = 32, middle_blk_num: int = 8,
                 enc_blk_nums: Sequence[int] = (2, 2, 4, 8), dec_blk_nums: Sequence[int] = (8, 4, 2, 2),
                 d_state: int = OFFICIAL_D_STATE, local_pool: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if len(enc_blk_nums) != 4 or len(dec_blk_nums) != 4:
            # SFE2/4/8, FAM2/4/8 and the widths of Convs/ConvsOut are wired for exactly four levels.
            raise ValueError("ALGNet has exactly four encoder and four decoder levels")
        self.config = {
            "img_channel": img_channel, "width": width, "middle_blk_num": middle_blk_num,
            "enc_blk_nums": list(enc_blk_nums), "dec_blk_nums": list(dec_blk_nums), "d_state": d_state,
        }
        self.local_pool = normalize_local_pool(local_pool) if local_pool is not None else None
        self.variant = "plain" if local_pool is None else "local"

        self.intro = nn.Conv2d(img_channel, width, kernel_size=3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, kernel_size=3, padding=1)

        def blocks(c: int, n: int, level: int) -> nn.Sequential:
            return nn.Sequential(*[BasicBlock(c, d_state, self._make_pool(level)) for _ in range(n)])

        # Same registration order as the official class (hence the placeholders), for key order.
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.middle_blks = nn.Sequential()
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()
        chan = width
        for level, num in enumerate(enc_blk_nums):
            self.encoders.append(blocks(chan, num, level))
            self.downs.append(nn.Conv2d(chan, 2 * chan, kernel_size=2, stride=2))
            chan *= 2
        self.middle_blks = blocks(chan, middle_blk_num, len(enc_blk_nums))
        for i, num in enumerate(dec_blk_nums):
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, kernel_size=1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(blocks(chan, num, len(dec_blk_nums) - 1 - i))

        self.SFE2 = SFE(width * 2, img_channel)
        self.SFE4 = SFE(width * 4, img_channel)
        self.SFE8 = SFE(width * 8, img_channel)
        self.FAM2 = FAM(width * 2)
        self.FAM4 = FAM(width * 4)
        self.FAM8 = FAM(width * 8)
        self.Convs = nn.ModuleList([nn.Conv2d(width * 2 * m, width * m, kernel_size=1) for m in (8, 4, 2, 1)])
        self.ConvsOut = nn.ModuleList(
            [nn.Conv2d(width * m, img_channel, kernel_size=3, padding=1) for m in (8, 4, 2)]
        )

    def _make_pool(self, level: int) -> nn.Module | None:
        """The TLC pool for a block at ``level`` (map size / 2**level), or None for the plain form.

        The official code sizes each window on a dummy forward at the training size; the map a
        layer sees there is the zero-padded training size divided by 2**level, so it is computed
        here directly (same integer arithmetic, no dummy pass, no device needed).
        """
        if self.local_pool is None:
            return None
        (th, tw), (bh, bw) = self.local_pool["train_size"], self.local_pool["base_size"]
        fh, fw = _pad_to(th, PAD_MULTIPLE) >> level, _pad_to(tw, PAD_MULTIPLE) >> level
        r0 = _FAST_STRIDES[0]
        return SlidingMean(
            (fh * bh // th, fw * bw // tw), fast_imp=self.local_pool["fast_imp"],
            max_stride=(max(1, r0 * fh // th), max(1, r0 * fw // tw)),
        )

    def forward(self, inp: Tensor) -> list[Tensor]:
        inp = self.check_image_size(inp)
        x_2 = F.interpolate(inp, scale_factor=0.5)
        x_4 = F.interpolate(x_2, scale_factor=0.5)
        x_8 = F.interpolate(x_4, scale_factor=0.5)
        fused = [(self.FAM2, self.SFE2(x_2)), (self.FAM4, self.SFE4(x_4)), (self.FAM8, self.SFE8(x_8))]

        x = self.intro(inp)
        skips = []
        for level, (encoder, down) in enumerate(zip(self.encoders, self.downs, strict=True)):
            x = encoder(x)
            skips.append(x)
            x = down(x)
            if level < len(fused):
                fam, z = fused[level]
                x = fam(x, z)

        x = self.middle_blks(x)

        decs = []
        for decoder, up, conv, skip in zip(self.decoders, self.ups, self.Convs, skips[::-1], strict=True):
            x = decoder(conv(torch.cat([up(x), skip], dim=1)))
            decs.append(x)

        return [
            self.ConvsOut[0](decs[0]) + x_8,
            self.ConvsOut[1](decs[1]) + x_4,
            self.ConvsOut[2](decs[2]) + x_2,
            self.ending(x) + inp,
        ]

    def check_image_size(self, x: Tensor) -> Tensor:
        """Zero-pad bottom/right to a multiple of 16, as the official forward does."""
        h, w = x.shape[-2:]
        return F.pad(x, (0, (-w) % PAD_MULTIPLE, 0, (-h) % PAD_MULTIPLE))


# --------------------------------------------------------------------------------------------- #
# The architecture contract (see deblurcli.models)
# --------------------------------------------------------------------------------------------- #


def build(kwargs: Mapping[str, Any], variant: str = DEFAULT_VARIANT, **settings: Any) -> ALGNet:
    """Build ALGNet from its official constructor kwargs (plus our ``d_state``) and a variant.

    ``local_pool`` (only for ``local``) defaults to the official 256x256 training size. Settings
    of other architectures are accepted only when None, so a generic caller can pass them all.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown ALGNet variant {variant!r}: choose {' or '.join(VARIANTS)}")
    local_pool = settings.pop("local_pool", None)
    extra = [k for k, v in settings.items() if v is not None]
    if extra:
        raise ValueError(f"ALGNet does not take the setting(s) {', '.join(sorted(extra))}")
    if variant == "plain":
        if local_pool is not None:
            raise ValueError("local_pool is a setting of the 'local' ALGNet variant, not 'plain'")
        return ALGNet(**kwargs)
    return ALGNet(**kwargs, local_pool=local_pool or {})


def detect(state_dict: Mapping[str, Any]) -> bool:
    """Whether these are ALGNet's keys: the intro conv plus its SFE/FAM/multi-output heads."""
    keys = set(strip_module_prefix(state_dict))
    return {"intro.weight", "FAM2.merge.weight", "ConvsOut.0.weight"} <= keys and any(
        k.startswith("SFE2.") for k in keys
    )



def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor kwargs from key names and shapes alone.

    ``d_state`` is reported only when it differs from the official 32, so the result for an
    authors' checkpoint is exactly the official constructor's kwargs.
    """
    sd = strip_module_prefix(state_dict)
    if "intro.weight" not in sd:
        raise CheckpointError("not ALGNet weights: no 'intro.weight'")
    keys = list(sd)
    width, img_channel = (int(s) for s in sd["intro.weight"].shape[:2])
    config: dict[str, Any] = {
        "img_channel": img_channel,
        "width": width,
        "middle_blk_num": count_blocks(keys, "middle_blks.", "ALGNet"),
        "enc_blk_nums": [count_blocks(keys, f"encoders.{i}.", "ALGNet") for i in range(4)],
        "dec_blk_nums": [count_blocks(keys, f"decoders.{i}.", "ALGNet") for i in range(4)],
    }
    a_log = next((sd[k] for k in keys if k.endswith("g_layer.mamba.A_log")), None)
    if a_log is not None and int(a_log.shape[1]) != OFFICIAL_D_STATE:
        config["d_state"] = int(a_log.shape[1])
    return config


def pad_multiple(kwargs: Mapping[str, Any] | None = None, variant: str = DEFAULT_VARIANT) -> int:
    """Inputs must be multiples of 16 (four 2x downsamplings) for outputs to match their size."""
    return PAD_MULTIPLE


def restore(model: nn.Module, x: Tensor) -> Tensor:
    """The restored image (finest output), cropped back in case ``x`` needed padding."""
    return model(x)[-1][..., : x.shape[-2], : x.shape[-1]]


def training_outputs(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The four predictions the multi-scale loss compares, 1/8 scale first, full size last."""
    return list(model(x))


__all__ = [
    "ALGNet", "BasicBlock", "SlidingMean", "build", "detect", "infer_config", "normalize_local_pool", "pad_multiple",
    "restore", "training_outputs",
]
