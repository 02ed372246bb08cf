"""XYScanNet (Liu et al., CVPR-W 2025): a U-Net whose decoder scans feature maps row by row and
column by column with a Mamba block. XYScanNetP, the released model, is the same class at dim 144.

Parameter names match the authors' state dict (after the loader strips DataParallel's
``module.``), and :class:`XYScanNet` ``forward`` computes what theirs does: it takes the image
minus 0.5 and returns ``(restored, residual, None)``.

Two properties of the official network shape this module's helpers:

- Sizes must be multiples of 4: two half-size levels, and the decoder concatenates an upsampled
  level with the encoder's map of the level above, so 2 * (H // 2 // 2) must give back H // 2.
- The cross-level fusion (CLFF) gates each neighbour level with ``sigmoid(KL)`` where the KL
  divergence is averaged over the *whole batch*: one image's output depends on the other images in
  its batch. Training keeps that (it is what the authors trained), but :func:`restore` runs images
  one at a time, so a tile, or a photo, gives the same result whatever it shares a batch with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import CheckpointError, UsageError
from ..contract import count_blocks, strip_module_prefix
from ..mamba import Mamba
from .variants import DEFAULT_VARIANT, VARIANTS

_LN_EPS = 1e-5
_SIZE_MULTIPLE = 4


class _NormParams(nn.Module):
    """Holds the affine parameters under ``body`` so checkpoint keys read ``normX.body.weight``."""

    def __init__(self, dim: int, with_bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel of a (B, C, H, W) map, eps 1e-5.

    ``WithBias`` is the usual LayerNorm; ``BiasFree`` divides by the standard deviation without
    subtracting the mean from x (the variance itself is still centred), as the authors do.
    """

    def __init__(self, dim: int, layer_norm_type: str = "WithBias") -> None:
        super().__init__()
        self.bias_free = layer_norm_type == "BiasFree"
        self.body = _NormParams(dim, with_bias=not self.bias_free)

    def forward(self, x: Tensor) -> Tensor:
        if self.bias_free:
            var = x.var(dim=1, keepdim=True, unbiased=False)
            return x * torch.rsqrt(var + _LN_EPS) * self.body.weight[:, None, None]
        # Normalise a channels-last view: no copy when x is already channels-last in memory, and
        # the result goes back as a view, which the following 1x1 convolutions accept as it is.
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.body.weight, self.body.bias, _LN_EPS)
        return y.permute(0, 3, 1, 2)


class GDFN(nn.Module):
    """Gated depth-wise feed-forward: 1x1 to 2h, depth-wise 3x3, silu(a) * b, 1x1 back."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.silu(a) * b)


class _StripScan(nn.Module):
    """Shared frame of the intra- and inter-strip scans: project in, depth-wise 3x3, split into
    the branch that is scanned and the gate, ``silu(gate) * scanned``, project out."""

    def __init__(self, dim: int, vssm_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * vssm_expansion_factor)
        if hidden % 2:
            raise ValueError(f"XYScanNet needs an even scan width, got {hidden} (dim {dim})")
        self.proj_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.proj_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)
        self.conv_input = nn.Conv2d(hidden, hidden, kernel_size=1, bias=bias)
        self.fuse_out = nn.Conv2d(hidden, hidden, kernel_size=1, bias=bias)
        # One Mamba serves both directions: half the channels go along rows, half along columns.
        self.mamba = Mamba(d_model=hidden // 2)

    def scan(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        x, gate = self.dwconv(self.proj_in(x)).chunk(2, dim=1)
        return self.proj_out(F.silu(gate) * self.scan(x))


class IntraVSSM(_StripScan):
    """Pixel-level scan inside each strip: every row (length W) and every column (length H) is a
    sequence, so long horizontal and vertical blur trails are followed across the whole image."""

    def scan(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        half = c // 2
        u = self.conv_input(x)
        # Rows become (B*H, W, C/2) and columns (B*W, H, C/2): one gathering copy per half, which
        # measured faster than folding the transposition into the projection's matmul.
        rows = u[:, :half].permute(0, 2, 3, 1).reshape(b * h, w, half)
        cols = u[:, half:].permute(0, 3, 2, 1).reshape(b * w, h, half)
        rows = self.mamba(rows).view(b, h, w, half).permute(0, 3, 1, 2)
        cols = self.mamba(cols).view(b, w, h, half).permute(0, 3, 2, 1)
        # The concatenation is the one copy that brings both back to (B, C, H, W).
        return self.fuse_out(torch.cat((rows, cols), dim=1))


class InterVSSM(_StripScan):
    """Strip-level scan: each row (and each column) is pooled to one token, the sequence of rows
    (columns) is scanned, and the sigmoid of the result re-weights every pixel of that strip."""

    def scan(self, x: Tensor) -> Tensor:
        half = x.shape[1] // 2
        u = self.conv_input(x)
        u_rows, u_cols = u[:, :half], u[:, half:]
        row_tokens = u_rows.mean(dim=3).transpose(1, 2)  # (B, H, C/2)
        col_tokens = u_cols.mean(dim=2).transpose(1, 2)  # (B, W, C/2)
        row_gate = torch.sigmoid(self.mamba(row_tokens)).transpose(1, 2).unsqueeze(3)  # (B, C/2, H, 1)
        col_gate = torch.sigmoid(self.mamba(col_tokens)).transpose(1, 2).unsqueeze(2)  # (B, C/2, 1, W)
        return self.fuse_out(torch.cat((u_rows * row_gate.to(u.dtype), u_cols * col_gate.to(u.dtype)), dim=1))


class StripVSSB(nn.Module):
    """One block: [intra scan], FFN, [inter scan], FFN, each pre-normed and residual. Encoder
    blocks are built with ``ssm=False`` (FFNs only); only the decoder scans."""

    def __init__(
        self, dim: int, vssm_expansion_factor: float, ffn_expansion_factor: float,
        bias: bool = False, ssm: bool = False, layer_norm_type: str = "WithBias",
    ) -> None:
        super().__init__()
        self.ssm = ssm
        if ssm:
            self.norm1_ssm = ChannelLayerNorm(dim, layer_norm_type)
            self.norm2_ssm = ChannelLayerNorm(dim, layer_norm_type)
            self.intra = IntraVSSM(dim, vssm_expansion_factor, bias)
            self.inter = InterVSSM(dim, vssm_expansion_factor, bias)
        self.norm1_ffn = ChannelLayerNorm(dim, layer_norm_type)
        self.norm2_ffn = ChannelLayerNorm(dim, layer_norm_type)
        self.ffn1 = GDFN(dim, ffn_expansion_factor, bias)
        self.ffn2 = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.ssm:
            x = x + self.intra(self.norm1_ssm(x))
        x = x + self.ffn1(self.norm1_ffn(x))
        if self.ssm:
            x = x + self.inter(self.norm2_ssm(x))
        return x + self.ffn2(self.norm2_ffn(x))


class CLFF(nn.Module):
    """Cross-level feature fusion: add the two other encoder levels to this one, each weighted by
    sigmoid of its KL divergence from this level (one scalar for the whole batch, as trained)."""

    def __init__(self, dim: int, dim_n1: int, dim_n2: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.conv_n1 = nn.Conv2d(dim_n1, dim, kernel_size=1, bias=bias)
        self.conv_n2 = nn.Conv2d(dim_n2, dim, kernel_size=1, bias=bias)
        self.fuse_out1 = nn.Conv2d(dim * 2, dim, kernel_size=1, bias=bias)

    @staticmethod
    def _project(conv: nn.Conv2d, n: Tensor, size: torch.Size) -> Tensor:
        """conv(nearest_resize(n)), computed at the smaller of the two sizes.

        A 1x1 convolution commutes with nearest resizing, so a coarser level is projected before
        it is enlarged: the authors' order would convolve (and hold) a 4*dim map at full size.
        """
        if n.shape[-1] > size[-1]:
            return conv(F.interpolate(n, size=size, mode="nearest"))
        if n.shape[-1] < size[-1]:
            return F.interpolate(conv(n), size=size, mode="nearest")
        return conv(n)

    def forward(self, x: Tensor, n1: Tensor, n2: Tensor) -> Tensor:
        """``n1``, ``n2``: the other two levels at their own sizes."""
        size = x.shape[-2:]
        x_ = self.conv(x)
        n1_ = self._project(self.conv_n1, n1, size)
        n2_ = self._project(self.conv_n2, n2, size)
        log_p = F.logsigmoid(x_)
        p = log_p.exp()
        # F.kl_div(logsigmoid(n), logsigmoid(x_), log_target=True) with its default 'mean'
        # reduction, written out to skip kl_div's warning about that reduction.
        g1 = torch.sigmoid((p * (log_p - F.logsigmoid(n1_))).mean())
        g2 = torch.sigmoid((p * (log_p - F.logsigmoid(n2_))).mean())
        return self.fuse_out1(torch.cat((x_, g1 * n1_ + g2 * n2_), dim=1))


class _PatchEmbed(nn.Module):
    """3x3 embedding of the image; never has a bias (the authors do not pass ``bias`` to it)."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class _Resample(nn.Module):
    """Bilinear resize by ``scale`` then a bias-free 3x3 conv to ``out_ch`` (keys ``body.1.*``)."""

    def __init__(self, in_ch: int, out_ch: int, scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False),
            nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class XYScanNet(nn.Module):
    """The authors' XYScanNet; ``dim=144`` is XYScanNetP. Argument names are theirs, so the
    ``kwargs`` recorded in checkpoints and conformance cases pass straight through."""

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 72,
        num_blocks: Sequence[int] = (3, 3, 6),
        vssm_expansion_factor: float = 1,
        ffn_expansion_factor: float = 1,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 - the authors' keyword
    ) -> None:
        super().__init__()
        if len(num_blocks) != 3:
            raise ValueError(f"num_blocks needs three counts (levels 1, 2, 3), got {list(num_blocks)}")
        dims = (dim, dim * 2, dim * 4)

        def level(i: int, ssm: bool) -> nn.Sequential:
            return nn.Sequential(*[
                StripVSSB(dims[i], vssm_expansion_factor, ffn_expansion_factor, bias, ssm, LayerNorm_type)
                for _ in range(num_blocks[i])
            ])

        self.patch_embed = _PatchEmbed(inp_channels, dim)
        self.encoder_level1 = level(0, ssm=False)
        self.down1_2 = _Resample(dims[0], dims[1], 0.5)
        self.encoder_level2 = level(1, ssm=False)
        self.down2_3 = _Resample(dims[1], dims[2], 0.5)
        self.encoder_level3 = level(2, ssm=False)
        self.decoder_level3 = level(2, ssm=True)
        self.up3_2 = _Resample(dims[2], dims[1], 2)
        self.clff_level2 = CLFF(dims[1], dim_n1=dims[0], dim_n2=dims[2], bias=bias)
        self.reduce_chan_level2 = nn.Conv2d(dims[2], dims[1], kernel_size=1, bias=bias)
        self.decoder_level2 = level(1, ssm=True)
        self.up2_1 = _Resample(dims[1], dims[0], 2)
        self.clff_level1 = CLFF(dims[0], dim_n1=dims[1], dim_n2=dims[2], bias=bias)
        self.reduce_chan_level1 = nn.Conv2d(dims[1], dims[0], kernel_size=1, bias=bias)
        self.decoder_level1 = level(0, ssm=True)
        self.output = nn.Conv2d(dim, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img: Tensor) -> tuple[Tensor, Tensor, None]:
        """``inp_img``: image minus 0.5, H and W multiples of 4. Returns (restored, residual, None)."""
        h, w = inp_img.shape[-2:]
        if h % _SIZE_MULTIPLE or w % _SIZE_MULTIPLE:
            raise ValueError(f"XYScanNet needs height and width divisible by {_SIZE_MULTIPLE}, got {h}x{w}")
        enc1 = self.encoder_level1(self.patch_embed(inp_img))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        # Both fusions read the encoder outputs as they were before either fusion.
        skip1 = self.clff_level1(enc1, enc2, enc3)
        skip2 = self.clff_level2(enc2, enc1, enc3)

        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat((self.up3_2(dec3), skip2), dim=1)))
        dec1 = self.decoder_level1(self.reduce_chan_level1(torch.cat((self.up2_1(dec2), skip1), dim=1)))
        residual = self.output(dec1)
        return residual + inp_img, residual, None


# --- the architecture-module contract (see deblurcli.models) ---

# Keys only XYScanNet has (EVSSM shares patch_embed/encoder_level names, ALGNet shares none).
_SIGNATURE_KEYS = ("patch_embed.proj.weight", "clff_level1.conv.weight", "decoder_level1.0.intra.mamba.A_log")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UsageError(f"XYScanNet has no variant {variant!r}: it has only {', '.join(VARIANTS)}")


def build(kwargs: Mapping[str, Any], variant: str = DEFAULT_VARIANT, **settings: Any) -> XYScanNet:
    """An untrained XYScanNet; it has one form, so no variant settings are accepted."""
    _check_variant(variant)
    if settings:
        raise UsageError(f"XYScanNet takes no variant settings, got {', '.join(sorted(settings))}")
    return XYScanNet(**dict(kwargs))


def detect(state_dict: Mapping[str, Any]) -> bool:
    """Whether these keys are XYScanNet's (the cross-level fusion and decoder scans give it away)."""
    sd = strip_module_prefix(state_dict)
    return all(k in sd for k in _SIGNATURE_KEYS)


def _factor(widths: Sequence[tuple[int, int]]) -> float | int:
    """The expansion factor the authors wrote, from each level's ``hidden = int(dim * factor)``.

    Whole factors come back as ``int`` (as in their configs). ``int()`` truncates, so a fractional
    factor is only known to an interval; return its shortest decimal that rebuilds every level.
    """
    ratios = {hidden / dim for hidden, dim in widths}
    if len(ratios) == 1 and all(hidden % dim == 0 for hidden, dim in widths):
        return widths[0][0] // widths[0][1]
    lo = max(hidden / dim for hidden, dim in widths)
    hi = min((hidden + 1) / dim for hidden, dim in widths)
    for digits in range(1, 10):
        f = math.ceil(lo * 10**digits) / 10**digits
        if f < hi and all(int(dim * f) == hidden for hidden, dim in widths):
            return f
    raise CheckpointError(f"XYScanNet weights with inconsistent expansion widths {list(widths)}")



def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor kwargs, read from key names and tensor shapes (works on meta tensors)."""
    sd = strip_module_prefix(state_dict)
    missing = [k for k in (*_SIGNATURE_KEYS, "output.weight", "decoder_level1.0.intra.proj_in.weight") if k not in sd]
    if missing:
        raise CheckpointError(f"not an XYScanNet state dict: missing {', '.join(missing)}")
    dim, inp_channels = sd["patch_embed.proj.weight"].shape[:2]
    num_blocks = [count_blocks(sd, f"encoder_level{i}.", "XYScanNet") for i in (1, 2, 3)]
    decoder_blocks = [count_blocks(sd, f"decoder_level{i}.", "XYScanNet") for i in (1, 2, 3)]
    if decoder_blocks != num_blocks or 0 in num_blocks:
        raise CheckpointError(
            f"XYScanNet weights with encoder blocks {num_blocks} but decoder blocks {decoder_blocks}"
        )
    dims = (int(dim), 2 * int(dim), 4 * int(dim))
    # (hidden, level dim) at each level: a fractional factor truncates differently per level.
    ffn_widths = [(sd[f"decoder_level{i}.0.ffn1.project_in.weight"].shape[0] // 2, d) for i, d in enumerate(dims, 1)]
    vssm_widths = [(sd[f"decoder_level{i}.0.intra.proj_in.weight"].shape[0] // 2, d) for i, d in enumerate(dims, 1)]
    return {
        "inp_channels": int(inp_channels),
        "out_channels": int(sd["output.weight"].shape[0]),
        "dim": int(dim),
        "num_blocks": num_blocks,
        "vssm_expansion_factor": _factor(vssm_widths),
        "ffn_expansion_factor": _factor(ffn_widths),
        # The output conv is built with the network's bias flag (patch_embed and resamplers never are).
        "bias": "output.bias" in sd,
        "LayerNorm_type": "WithBias" if "decoder_level1.0.norm1_ffn.body.bias" in sd else "BiasFree",
    }


def pad_multiple(kwargs: Mapping[str, Any], variant: str = DEFAULT_VARIANT) -> int:
    """Two half-size levels whose maps are concatenated back: H and W must divide by 4."""
    _check_variant(variant)
    return _SIZE_MULTIPLE


def restore(model: nn.Module, x: Tensor) -> Tensor:
    """Restore images in [0, 1], one image per forward pass.

    The CLFF gates average over the batch, so batching would make each image's result depend on
    its batch-mates (tiles of one photo would change with how they are grouped). Grad mode is left
    to the caller (wrap in ``torch.inference_mode()`` for inference).
    """
    return torch.cat([model(x[i : i + 1] - 0.5)[0] + 0.5 for i in range(x.shape[0])], dim=0)


def training_outputs(model: nn.Module, x: Tensor) -> list[Tensor]:
    """The single full-size prediction in [0, 1], from one batched pass as the authors trained."""
    return [model(x - 0.5)[0] + 0.5]
