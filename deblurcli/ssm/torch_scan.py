"""Chunked selective scan in pure PyTorch: the portable fallback and the differentiable path.

A Python loop over the sequence costs one interpreter round-trip per element; here the sequence
is cut into ``nc`` chunks of ``T`` steps and every step works on all chunks at once
("reduce-then-scan"):

1. reduce: each chunk's end state from a zero start, and its total decay ``exp(A * sum(delta))``;
2. a short sequential pass over chunks turns those into each chunk's true starting state;
3. scan: the chunks are replayed from their true starting states, emitting ``y``.

Every factor is a decay ``exp(delta * A) <= 1`` (A < 0, delta >= 0), so nothing can overflow —
unlike log-space or cumulative-sum factorisations, which produce inf/NaN at Mamba's own initial
values. Exponent arguments are clamped at -80: ``exp`` there is already 0 in float32 and
``torch.exp`` is an order of magnitude slower on denormal-producing arguments.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .reference import finish_output, prepare_inputs

_EXP_FLOOR = -80.0


def choose_chunk(l: int, state_elems: int) -> int:
    """A chunk length balancing per-step overhead (few big steps) against cache size.

    ``state_elems`` is b*d*n, the size of one step's state across one chunk.
    """
    if l <= 256:
        return l  # short sequences: one chunk, the plain loop is already optimal
    # About sqrt(l) steps per pass keeps 2T + l/T small; stay within 48..128 where the per-step
    # tensors (state_elems * nc) still fit the caches on typical CPUs.
    t = int(math.sqrt(l / 2))
    if state_elems * (l // max(t, 1)) > 4_000_000:
        t = max(t, 128)
    return max(48, min(128, t))


def _steps_first(M: Tensor, l_pad: int, nc: int, T: int, last: bool) -> Tensor:
    """B or C (b, n, l) / (b, G, n, l) as contiguous per-step blocks (T, b, G, nc, 1, n) or (..., n, 1)."""
    if M.dim() == 3:
        M = M.unsqueeze(1)
    b, g, n, l = M.shape
    if l_pad != l:
        M = torch.nn.functional.pad(M, (0, l_pad - l))
    M = M.reshape(b, g, n, nc, T).permute(4, 0, 1, 3, 2)  # (T, b, G, nc, n)
    return (M.unsqueeze(-1) if last else M.unsqueeze(-2)).contiguous()


def selective_scan_torch(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
    delta_softplus: bool = False, return_last_state: bool = False, chunk: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    in_dtype = u.dtype
    u, delta, dtype = prepare_inputs(u, delta, D, z, delta_bias, delta_softplus)
    b, d, l = u.shape
    n = A.shape[1]
    g = 1 if B.dim() == 3 else B.shape[1]
    if d % g:
        raise ValueError(f"channels ({d}) must be a multiple of the B/C groups ({g})")
    dg = d // g
    T = chunk or choose_chunk(l, b * d * n)
    T = max(1, min(T, max(l, 1)))
    nc = max(1, math.ceil(l / T))
    l_pad = nc * T
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C)
    )

    du = delta * u
    if l_pad != l:  # delta = 0 past the end: decay 1 and no input, so the state just carries
        delta = torch.nn.functional.pad(delta, (0, l_pad - l))
        du = torch.nn.functional.pad(du, (0, l_pad - l))
    # Step-major layouts, so that every step reads one contiguous block. State: (b, G, nc, dg, n).
    delta_s = delta.reshape(b, g, dg, nc, T).permute(4, 0, 1, 3, 2).unsqueeze(-1).contiguous()
    du_s = du.reshape(b, g, dg, nc, T).permute(4, 0, 1, 3, 2).unsqueeze(-1).contiguous()
    A4 = A.to(dtype).reshape(g, 1, dg, n)
    B_s = _steps_first(B.to(dtype), l_pad, nc, T, last=False)
    C_s = _steps_first(C.to(dtype), l_pad, nc, T, last=True)

    def step(h: Tensor, t: int) -> Tensor:
        dA = torch.exp((delta_s[t] * A4).clamp_(min=_EXP_FLOOR))
        if grad:
            return torch.addcmul(dA * h, du_s[t], B_s[t])
        return h.mul_(dA).addcmul_(du_s[t], B_s[t])

    # 1. reduce: local end states from zero, and each chunk's total decay
    h = u.new_zeros(b, g, nc, dg, n)
    if nc > 1:
        for t in range(T):
            h = step(h, t)
        decay = torch.exp((delta_s.sum(dim=0) * A4).clamp_(min=_EXP_FLOOR))  # (b, G, nc, dg, n)
        # 2. carry states across chunks
        starts = []
        carry = u.new_zeros(b, g, dg, n)
        for c in range(nc):
            starts.append(carry)
            carry = decay[:, :, c] * carry + h[:, :, c]
        h = torch.stack(starts, dim=2)
    # 3. scan from the true starting states; <C_t, h_t> as a batched mat-vec
    ys = [torch.matmul(h := step(h, t), C_s[t]) for t in range(T)]  # each (b, G, nc, dg, 1)
    y = torch.stack(ys, dim=0).squeeze(-1).permute(1, 2, 4, 3, 0).reshape(b, d, l_pad)[..., :l]
    y = finish_output(y, u, D, z).to(in_dtype)
    if return_last_state:
        return y, h[:, :, -1].reshape(b, d, n)
    return y
