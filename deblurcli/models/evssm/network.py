"""EVSSM (Kong et al., CVPR 2025): a visual state-space U-Net for motion deblurring.

The parameter names follow the authors' code exactly, so their BasicSR checkpoints
(``params`` / ``params_ema``) load strictly with no key mapping. One class serves both forms the
authors use:

- ``global`` (``scan_window=None``): the training form, each block scans its whole feature map.
- ``windowed``: the test form behind the paper's numbers. Each block cuts the map into overlapping
  windows (official sizes 384 / 192 / 96 px at levels 1 / 2 / 3), scans each window alone and
  averages the overlaps. The authors give no reason; bounded windows keep test-time sequences
  nearer the lengths seen on training crops (128 px in their GoPro config) and bound memory.

Where this code departs from the letter of the official one it is for speed and never changes
the result beyond float rounding: norms are applied before windows are cut (they act per pixel),
the residual is added once after averaging, projections run channel-first as matrix products,
and the patch FFT transforms strided axes in place instead of permuting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import CheckpointError, UsageError
from ...ssm import selective_scan
from ..contract import count_blocks, strip_module_prefix
from .variants import DEFAULT_VARIANT, VARIANTS

#: The official test-time window sizes, levels 1, 2, 3 (``models/EVSSM.py``).
OFFICIAL_WINDOWS: tuple[int, int, int] = (384, 192, 96)
#: Side of the square patches the frequency FFN transforms.
FFT_PATCH = 8

WindowSpec = Mapping[str, int] | Sequence[int] | int | None


# ---------------------------------------------------------------------------------------------
# layers


class _NormParams(nn.Module):
    """Holds the norm's affine parameters one level down, where the checkpoints keep them."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


class ChannelRMSNorm(nn.Module):
    """RMS normalisation over channels with a bias (the authors' ``WithBias_LayerNorm``).

    Despite the official name there is no mean subtraction; computing it on the channel axis of
    an NCHW map avoids the two layout round-trips of the reference.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = _NormParams(dim)

    def forward(self, x: Tensor) -> Tensor:
        scale = torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-6)
        return torch.addcmul(self.body.bias[:, None, None], x * scale, self.body.weight[:, None, None])


def conv1x1(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` for a 1x1 convolution, as one batched GEMM on the NCHW data in place.

    PyTorch's CPU convolution takes a generic path for 1x1 kernels that is up to twice slower
    than the matrix product it amounts to.
    """
    b, c, h, w = x.shape
    weight = conv.weight.view(conv.out_channels, c).expand(b, -1, -1)
    x3 = x.reshape(b, c, h * w)
    if conv.bias is None:
        out = torch.bmm(weight, x3)
    else:
        out = torch.baddbmm(conv.bias.view(1, -1, 1), weight, x3)
    return out.view(b, conv.out_channels, h, w)


class SS2D(nn.Module):
    """The selective-scan mixer: one row-major scan over the (possibly transformed) map.

    Direction variety comes from the block's flip / transpose, not from several scans here
    (the official class keeps VMamba's ``K`` axis with ``K = 1``, hence the leading 1 in
    ``x_proj_weight``, ``dt_projs_weight`` and ``dt_projs_bias``).
    """

    def __init__(self, d_model: int, d_state: int = 8, d_conv: int = 3, expand: float = 2.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16)
        di, n, r = self.d_inner, d_state, self.dt_rank
        proj = r + 2 * n

        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        self.conv2d = nn.Conv2d(di, di, d_conv, padding=(d_conv - 1) // 2, groups=di, bias=True)
        self.x_proj_weight = nn.Parameter(torch.empty(1, proj, di))
        self.x_conv = nn.Conv1d(proj, proj, kernel_size=7, padding=3, groups=proj, bias=True)
        self.dt_projs_weight = nn.Parameter(torch.empty(1, di, r))
        self.dt_projs_bias = nn.Parameter(torch.empty(1, di))
        self.A_logs = nn.Parameter(torch.empty(di, n))
        self.Ds = nn.Parameter(torch.empty(di))
        self.out_norm = nn.LayerNorm(di)
        self.out_proj = nn.Linear(di, d_model, bias=False)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Mamba's initialisation, so that training from scratch starts where the authors' did.

        Step sizes start log-uniform in [1e-3, 0.1] (bias = softplus^-1), A is the S4D-real
        ladder -1..-N, and the skip D is 1. Skipped on the meta device (shape-only models),
        where these ops would only cost time.
        """
        if self.A_logs.is_meta:
            return
        nn.init.uniform_(self.x_proj_weight, -(self.d_inner**-0.5), self.d_inner**-0.5)
        nn.init.uniform_(self.dt_projs_weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        lo, hi = math.log(1e-3), math.log(1e-1)
        dt = torch.exp(torch.rand(self.d_inner) * (hi - lo) + lo).clamp(min=1e-4)
        self.dt_projs_bias.copy_((dt + torch.log(-torch.expm1(-dt)))[None])
        ladder = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(torch.log(ladder).expand(self.d_inner, -1))
        self.Ds.fill_(1.0)
        self.A_logs._no_weight_decay = True  # type: ignore[attr-defined]
        self.Ds._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        L = h * w
        di, n, r = self.d_inner, self.d_state, self.dt_rank
        # Layouts are chosen so that no big tensor is ever transposed in memory except y, once,
        # for the fused LayerNorm: the scan side (u, delta, B, C) is channel-first (b, ch, L),
        # as the scan wants it; the gate z is computed channel-last, where the norm's output is.
        # Weights are expanded (not copied) over the batch so each product is one plain GEMM.
        x3 = x.reshape(b, c, L)
        w_in = self.in_proj.weight
        u = torch.bmm(w_in[:di].expand(b, -1, -1), x3)
        z = torch.bmm(x3.transpose(1, 2), w_in[di:].t().expand(b, -1, -1))  # (b, L, di)
        u = F.gelu(self.conv2d(u.view(b, di, h, w))).view(b, di, L)
        x_dbl = self.x_conv(torch.bmm(self.x_proj_weight.expand(b, -1, -1), u))
        dt, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=1)
        delta = torch.bmm(self.dt_projs_weight.expand(b, -1, -1), dt)
        # The recurrence multiplies hundreds of thousands of decays: float32 whatever autocast says.
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = selective_scan(
                u.float(), delta.float(), -torch.exp(self.A_logs.float()),
                Bs.float().unsqueeze(1), Cs.float().unsqueeze(1), self.Ds.float(),
                z=None, delta_bias=self.dt_projs_bias.float().view(-1), delta_softplus=True,
            )
        assert isinstance(y, Tensor)
        # Back to the norm's own dtype: a no-op in fp32 and under autocast (whose LayerNorm runs
        # in fp32), and what a bf16-cast model on the CPU needs, where nothing casts for it.
        y = self.out_norm(y.transpose(1, 2).to(self.out_norm.weight.dtype))  # (b, L, di)
        gate = F.gelu(z)
        y = y * gate if torch.is_grad_enabled() else y.mul_(gate)
        out = torch.bmm(self.out_proj.weight.expand(b, -1, -1), y.transpose(1, 2))  # (b, c, L)
        return out.view(b, c, h, w)


class EDFFN(nn.Module):
    """Gated depthwise FFN followed by a learned filter on each 8x8 patch's spectrum.

    Maps that are not a multiple of 8 are reflect-padded and cropped back, as the authors' test
    model does; on multiples of 8 (always the case in the global form under its size rule) the
    pad is a no-op, so this is also exactly the training form.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.fft = nn.Parameter(torch.ones(dim, 1, 1, FFT_PATCH, FFT_PATCH // 2 + 1))
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(conv1x1(self.project_in, x)).chunk(2, dim=1)
        x = conv1x1(self.project_out, F.gelu(x1) * x2)
        b, c, h, w = x.shape
        p = FFT_PATCH
        ph, pw = (-h) % p, (-w) % p
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        hp, wp = h + ph, w + pw
        # Transform axes 3 and 5 of the (b, c, rows, p, cols, p) view rather than permuting the
        # patches to the end: same numbers, no copy. The filter is viewed to match.
        patches = x.float().reshape(b, c, hp // p, p, wp // p, p)
        spec = torch.fft.rfft2(patches, dim=(3, 5))
        spec = spec * self.fft.view(c, 1, p, 1, p // 2 + 1)
        x = torch.fft.irfft2(spec, s=(p, p), dim=(3, 5)).reshape(b, c, hp, wp)
        # The weights' dtype, as for the scan's output: fp32 in fp32 and under autocast, bf16 in a
        # bf16-cast model on the CPU (else the residual sum turns fp32 and the next conv refuses it).
        x = x.to(self.project_out.weight.dtype)
        return x[:, :, :h, :w] if (ph or pw) else x


def window_starts(size: int, window: int) -> tuple[int, list[int]]:
    """The official window placement along one axis: (window length, start offsets).

    ``n = ceil(size / k)`` windows stepping by ``ceil((size - k) / (n - 1))``, the last one moved
    back flush with the edge; ``k`` is the window clipped to the map.
    """
    k = min(size, window)
    n = (size - 1) // k + 1
    step = k if n == 1 else -(-(size - k) // (n - 1))
    starts: list[int] = []
    i = 0
    while i < size:
        if i + k >= size:
            starts.append(size - k)
            break
        starts.append(i)
        i += step
    return k, starts


def windowed_apply(fn: nn.Module, x: Tensor, window: int) -> Tensor:
    """``fn`` applied to overlapping ``window``-sized tiles of ``x``, overlaps averaged.

    All tiles go through ``fn`` as one batch. A map no larger than the window is passed straight
    through, which is why the windowed form equals the global one on small inputs.
    """
    b, c, h, w = x.shape
    kh, rows = window_starts(h, window)
    kw, cols = window_starts(w, window)
    if len(rows) == 1 and len(cols) == 1:
        return fn(x)
    tiles = torch.cat([x[:, :, i : i + kh, j : j + kw] for i in rows for j in cols], dim=0)
    out = fn(tiles)
    acc = out.new_zeros(b, out.shape[1], h, w, dtype=torch.promote_types(out.dtype, torch.float32))
    k = 0
    for i in rows:
        for j in cols:
            acc[:, :, i : i + kh, j : j + kw] += out[k * b : (k + 1) * b]
            k += 1
    # Tiles form a grid, so the coverage count is the outer product of the per-axis counts.
    row_n = torch.zeros(h, dtype=acc.dtype, device=acc.device)
    col_n = torch.zeros(w, dtype=acc.dtype, device=acc.device)
    for i in rows:
        row_n[i : i + kh] += 1
    for j in cols:
        col_n[j : j + kw] += 1
    return acc.div_(row_n[:, None] * col_n[None, :])


class EVS(nn.Module):
    """One EVS block: re-orient the map, scan-mix it, then the frequency FFN.

    Odd blocks flip both axes (the scan runs backwards), even blocks transpose (the scan runs
    column-major). The map is left re-oriented: successive blocks compose the orientations, and
    since flip and transpose commute and are involutions, an encoder level and its decoder level
    always see the same orientation, so the skip additions line up for any block counts.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, idx: int,
                 window: int | None = None) -> None:
        super().__init__()
        self.idx = idx
        self.window = window
        self.norm1 = ChannelRMSNorm(dim)
        self.attn = SS2D(dim)
        self.norm2 = ChannelRMSNorm(dim)
        self.ffn = EDFFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.idx % 2:
            x = torch.flip(x, dims=(-2, -1))
        else:
            x = x.transpose(-2, -1).contiguous()
        t = self.norm1(x)
        x = x + (self.attn(t) if self.window is None else windowed_apply(self.attn, t, self.window))
        return x + self.ffn(self.norm2(x))


class _Stem(nn.Module):
    def __init__(self, in_c: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class _Resample(nn.Module):
    """Bilinear rescale then a 3x3 conv; ``body.1`` is where the checkpoints keep the conv."""

    def __init__(self, n_feat: int, scale: float, out_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False),
            nn.Conv2d(n_feat, out_feat, 3, padding=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def parse_scan_window(scan_window: WindowSpec) -> tuple[int, int, int] | None:
    """Windows per level from ``{"level1": .., "level2": .., "level3": ..}``, a 3-sequence or None.

    A single int is the level-1 window, halved for each deeper level as in the official
    384 / 192 / 96, so that every level's window covers the same patch of the image.
    """
    if scan_window is None:
        return None
    if isinstance(scan_window, int) and not isinstance(scan_window, bool):
        values: list[Any] = [scan_window, scan_window // 2, scan_window // 4]
    elif isinstance(scan_window, Mapping):
        try:
            values = [scan_window[f"level{k}"] for k in (1, 2, 3)]
        except KeyError:
            raise UsageError(f"scan_window needs keys level1, level2, level3; got {dict(scan_window)}") from None
    elif isinstance(scan_window, Sequence) and not isinstance(scan_window, str):
        values = list(scan_window)
        if len(values) != 3:
            raise UsageError(f"scan_window needs three sizes (levels 1, 2, 3); got {values}")
    else:
        raise UsageError(f"scan_window must be sizes per level or one int; got {scan_window!r}")
    try:
        sizes = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise UsageError(f"scan_window sizes must be integers; got {values}") from None
    if any(v < 1 for v in sizes):
        raise UsageError(f"scan_window sizes must be positive; got {sizes}")
    return sizes  # type: ignore[return-value]


class EVSSM(nn.Module):
    """The EVSSM network; ``forward`` maps a [0, 1] image to its restored version (same range).

    ``scan_window=None`` builds the global (training) form; windows per level build the windowed
    (test) form. :meth:`set_scan_window` switches between them without touching the weights.
    ``num_refinement_blocks`` is accepted, and ignored, because the official test class takes it.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (6, 6, 12),
        ffn_expansion_factor: float = 3,
        bias: bool = False,
        scan_window: WindowSpec = None,
        num_refinement_blocks: int = 4,
    ) -> None:
        super().__init__()
        if len(num_blocks) != 3:
            raise ValueError(f"num_blocks needs three counts; got {list(num_blocks)}")

        def level(width: int, count: int) -> nn.Sequential:
            seq = nn.Sequential()
            for i in range(count):
                seq.add_module(f"block{i}", EVS(width, ffn_expansion_factor, bias, idx=i))
            return seq

        n1, n2, n3 = (int(v) for v in num_blocks)
        self.patch_embed = _Stem(inp_channels, dim)
        self.encoder_level1 = level(dim, n1)
        self.down1_2 = _Resample(dim, 0.5, dim * 2)
        self.encoder_level2 = level(dim * 2, n2)
        self.down2_3 = _Resample(dim * 2, 0.5, dim * 4)
        self.encoder_level3 = level(dim * 4, n3)
        self.decoder_level3 = level(dim * 4, n3)
        self.up3_2 = _Resample(dim * 4, 2, dim * 2)
        self.decoder_level2 = level(dim * 2, n2)
        self.up2_1 = _Resample(dim * 2, 2, dim)
        self.decoder_level1 = level(dim, n1)
        self.output = nn.Conv2d(dim, out_channels, 3, padding=1, bias=bias)
        self.scan_window: tuple[int, int, int] | None = None
        self.set_scan_window(scan_window)

    @property
    def variant(self) -> str:
        return "global" if self.scan_window is None else "windowed"

    def set_scan_window(self, scan_window: WindowSpec) -> None:
        """Switch form: None = global; windows per level (dict or 3-sequence) = windowed."""
        windows = parse_scan_window(scan_window)
        self.scan_window = windows
        levels = {1: ("encoder_level1", "decoder_level1"), 2: ("encoder_level2", "decoder_level2"),
                  3: ("encoder_level3", "decoder_level3")}
        for k, names in levels.items():
            for name in names:
                for block in getattr(self, name):
                    block.window = None if windows is None else windows[k - 1]

    def forward(self, inp_img: Tensor) -> Tensor:
        enc1 = self.encoder_level1(self.patch_embed(inp_img))
        enc2 = self.encoder_level2(self.down1_2(enc1))
        x = self.decoder_level3(self.encoder_level3(self.down2_3(enc2)))
        x = self.decoder_level2(self.up3_2(x) + enc2)
        x = self.decoder_level1(self.up2_1(x) + enc1)
        return self.output(x) + inp_img


# ---------------------------------------------------------------------------------------------
# the architecture-module contract (see deblurcli.models)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UsageError(f"unknown EVSSM variant {variant!r}: choose {' or '.join(VARIANTS)}")


def build(kwargs: Mapping[str, Any], variant: str = DEFAULT_VARIANT, **settings: Any) -> EVSSM:
    """An EVSSM from official constructor kwargs; ``scan_window=`` sets the windowed form's sizes.

    The windowed form defaults to the official 384/192/96; the global form takes no windows.
    """
    _check_variant(variant)
    unknown = set(settings) - {"scan_window"}
    if unknown:
        raise UsageError(f"EVSSM takes no setting(s) {', '.join(sorted(unknown))}")
    window = settings.get("scan_window")
    if variant == "global":
        if window is not None:
            raise UsageError("the global EVSSM form scans whole maps: scan_window must not be given")
    elif window is None:
        window = OFFICIAL_WINDOWS
    kw = dict(kwargs)
    kw.pop("scan_window", None)
    return EVSSM(**kw, scan_window=window)


def detect(state_dict: Mapping[str, Any]) -> bool:
    """EVSSM checkpoints are the only ones with per-block ``attn.A_logs`` and an ``ffn.fft`` filter.

    (XYScanNet shares ``patch_embed`` / ``down1_2`` names, so those prove nothing.)
    """
    keys = strip_module_prefix(state_dict)
    return all(
        k in keys
        for k in ("encoder_level1.block0.attn.A_logs", "encoder_level1.block0.ffn.fft", "output.weight")
    )



def _expansion_factor(shapes: Sequence[Sequence[int]]) -> float:
    """The simplest ``ffn_expansion_factor`` that rebuilds every level's FFN width.

    The constructor stores only ``int(width * factor)``, so a factor such as 2.66 leaves an
    interval of candidates; the shortest decimal in it is the one a person would have written.
    """
    pairs = [(int(s[0]), int(s[1])) for s in shapes]  # (width, hidden) per level
    lo = max(h / d for d, h in pairs)
    hi = min((h + 1) / d for d, h in pairs)
    for digits in range(7):
        scale = 10**digits
        f = math.ceil(lo * scale - 1e-9) / scale
        if f < hi and all(int(d * f) == h for d, h in pairs):
            return int(f) if f == int(f) else f
    raise CheckpointError(f"EVSSM FFN widths {pairs} fit no single ffn_expansion_factor")


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The official constructor kwargs, read from key names and shapes alone."""
    sd = strip_module_prefix(state_dict)
    if not detect(sd):
        raise CheckpointError("these weights are not an EVSSM checkpoint (no encoder_level1.block0.attn.A_logs)")
    stem = sd["patch_embed.proj.weight"].shape
    dim, inp = int(stem[0]), int(stem[1])
    keys = list(sd)
    num_blocks = [count_blocks(keys, f"encoder_level{k}.block", "EVSSM") for k in (1, 2, 3)]
    decoder = [count_blocks(keys, f"decoder_level{k}.block", "EVSSM") for k in (1, 2, 3)]
    if decoder != num_blocks:
        raise CheckpointError(f"EVSSM encoder and decoder block counts differ: {num_blocks} vs {decoder}")
    factor = _expansion_factor([sd[f"encoder_level{k}.block0.ffn.project_out.weight"].shape
                                for k, count in zip((1, 2, 3), num_blocks, strict=True) if count])
    return {
        "inp_channels": inp,
        "out_channels": int(sd["output.weight"].shape[0]),
        "dim": dim,
        "num_blocks": num_blocks,
        "ffn_expansion_factor": factor,
        "bias": "encoder_level1.block0.ffn.project_in.bias" in sd,
    }


def pad_multiple(kwargs: Mapping[str, Any], variant: str) -> int:
    """Input sides must be multiples of this.

    Two halvings need multiples of 4. The global form also splits level-3 maps (1/4 size) into
    8x8 FFT patches with no padding, hence 32; the windowed form's FFN pads itself.
    """
    _check_variant(variant)
    return 32 if variant == "global" else 4


def restore(model: nn.Module, x: Tensor) -> Tensor:
    """The restored image for ``x`` in [0, 1] (sides multiples of ``pad_multiple``), unclamped.

    Sides below 20 px cannot run: the FFN's reflect pad of a level-3 map needs it wider than
    the pad.
    """
    h, w = x.shape[-2:]
    variant = getattr(model, "variant", DEFAULT_VARIANT)
    m = pad_multiple({}, variant)
    if h % m or w % m:
        raise UsageError(f"EVSSM ({variant}) needs sides that are multiples of {m}; got {h}x{w}")
    if min(h, w) < 20:
        raise UsageError(f"EVSSM needs images at least 20 px on each side; got {h}x{w}")
    return model(x)


def training_outputs(model: nn.Module, x: Tensor) -> list[Tensor]:
    """EVSSM predicts only the full-size image."""
    return [model(x)]


__all__ = [
    "EDFFN", "EVS", "EVSSM", "OFFICIAL_WINDOWS", "SS2D", "build", "detect", "infer_config", "pad_multiple",
    "parse_scan_window", "restore", "training_outputs", "window_starts", "windowed_apply",
]
