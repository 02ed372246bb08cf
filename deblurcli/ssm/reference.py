"""Sequential selective scan: slow, obviously correct, the ground truth for every other backend.

It walks the sequence one step at a time and keeps only the running state (b, d, n), so it is
cheap in memory even for long sequences; tests and fixtures compare everything else to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _expand_groups(M: Tensor, d: int) -> Tensor:
    """(b, n, l) -> (b, 1, n, l); (b, g, n, l) -> (b, d, n, l) view-expanded over each group."""
    if M.dim() == 3:
        return M.unsqueeze(1)
    b, g, n, l = M.shape
    if d % g:
        raise ValueError(f"channels ({d}) must be a multiple of the B/C groups ({g})")
    return M.repeat_interleave(d // g, dim=1) if g > 1 else M


def grouped_bc(u: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor, int]:
    """B and C as (b, g, n, l) with their group count, after checking every shape agrees."""
    b, d, l = u.shape
    n = A.shape[1]
    B = B.unsqueeze(1) if B.dim() == 3 else B
    C = C.unsqueeze(1) if C.dim() == 3 else C
    g = B.shape[1]
    if d % g:
        raise ValueError(f"channels ({d}) must be a multiple of the B/C groups ({g})")
    if A.shape != (d, n) or B.shape != (b, g, n, l) or C.shape != (b, g, n, l):
        raise ValueError(
            f"shape mismatch: u {tuple(u.shape)}, A {tuple(A.shape)}, B {tuple(B.shape)}, "
            f"C {tuple(C.shape)} (B and C must have the same groups)"
        )
    return B, C, g


def prepare_inputs(
    u: Tensor, delta: Tensor, D: Tensor | None, z: Tensor | None,
    delta_bias: Tensor | None, delta_softplus: bool,
) -> tuple[Tensor, Tensor, torch.dtype]:
    """Common preamble of every backend: the computation dtype and the final step sizes."""
    dtype = torch.promote_types(u.dtype, torch.float32)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return u.to(dtype), delta, dtype


def finish_output(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """Add the skip term and the SiLU gate, as selective_scan_fn does after the recurrence."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def selective_scan_reference(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
    delta_softplus: bool = False, return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    in_dtype = u.dtype
    u, delta, dtype = prepare_inputs(u, delta, D, z, delta_bias, delta_softplus)
    b, d, l = u.shape
    A = A.to(dtype)
    Bx = _expand_groups(B.to(dtype), d)
    Cx = _expand_groups(C.to(dtype), d)
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * Bx[..., t] * u[:, :, t, None]
        ys.append((h * Cx[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(b, d, 0)
    y = finish_output(y, u, D, z).to(in_dtype)
    return (y, h) if return_last_state else y
