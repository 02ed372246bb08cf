"""Selective scan as a Triton kernel, for CUDA GPUs where mamba-ssm's fused kernel is missing.

One program owns a block of channels of one batch element and walks the sequence in chunks of
``BLOCK_T`` steps. A chunk is loaded as (channels, states, steps) tiles; the recurrence
``h_t = a_t h_{t-1} + b_t`` inside the chunk is an associative scan over the pairs (a_t, b_t),
so the GPU does it in log2(BLOCK_T) parallel rounds instead of BLOCK_T dependent ones; the state
at the chunk's end stays in registers and seeds the next chunk. Nothing of size (b, d, n, l) is
written to memory.

Only the forward pass is compiled. Under autograd the call goes to the chunked torch backend,
which is differentiable (and gives the same values), so training on such a GPU still works.

``TRITON_INTERPRET=1`` runs the same kernel on CPU tensors through Triton's interpreter; the
tests use that where no GPU is present. ``triton.jit`` reads that variable when it decorates, so
the kernel is decorated on first use rather than at import: importing this module (which the
dispatch does to ask ``available()``) must not fix the mode before a test or user has chosen it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import Tensor

from .reference import finish_output, grouped_bc, prepare_inputs
from .torch_scan import selective_scan_torch

# Imported by _import() only where the kernel could run: triton's own library functions are
# decorated when triton is imported, so importing it before TRITON_INTERPRET is set would leave
# them unusable by the interpreter for the rest of the process.
triton: Any = None
tl: Any = None
_IMPORT_ERROR: Exception | None = None

# Elements of one (channels x states x steps) tile. Compiled for sm_90 with 4 warps, tiles of 2048
# take 168-196 registers a thread and spill nothing (ptxas -v); larger tiles would spill.
_TILE_ELEMS = 2048
_BLOCK_T = 32


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _import() -> bool:
    global triton, tl, _IMPORT_ERROR
    if triton is None and _IMPORT_ERROR is None:
        try:
            import triton as triton_mod
            import triton.language as tl_mod
        except Exception as exc:  # ImportError, or a triton that does not match this torch/driver
            _IMPORT_ERROR = exc
            return False
        triton, tl = triton_mod, tl_mod
    return triton is not None


def available() -> bool:
    """True when triton imports and can run here: on a CUDA device, or in its CPU interpreter."""
    return (_interpreting() or torch.cuda.is_available()) and _import()


def _combine_fn(a1, b1, a2, b2):  # triton reads annotations as types: none here
    """Composition of h -> a1 h + b1, then h -> a2 h + b2."""
    return a1 * a2, b1 * a2 + b2


# The decorated forms of _combine_fn and _scan_fn, made by _kernel(); the kernel calls _combine by
# this global name.
_combine: Any = None
_scan_kernel: Any = None


def _scan_fn(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, y_ptr, last_ptr,
    D, L, NSTATE, G, DG,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Grid (batch, channel blocks). u, dt, y: (b, d, l); A: (d, n); B, C: (b, g, n, l)."""
    pid_b = tl.program_id(0).to(tl.int64)  # keeps offsets of long sequences in range
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, BLOCK_T)
    mask_d = offs_d < D
    mask_n = offs_n < NSTATE
    mask_dn = mask_d[:, None] & mask_n[None, :]
    grp = tl.where(mask_d, offs_d, 0) // DG

    # Padded channels and states get A = 0, dt = 0 and B = 0: their state stays 0.
    A = tl.load(A_ptr + offs_d[:, None] * NSTATE + offs_n[None, :], mask=mask_dn, other=0.0)
    h = tl.zeros_like(A)
    row = (pid_b * D + offs_d) * L  # (BLOCK_D,) offsets of each channel's sequence
    bc_base = ((pid_b * G + grp) * NSTATE)[:, None] * L + offs_n[None, :] * L  # (BLOCK_D, BLOCK_N)
    for t0 in range(0, L, BLOCK_T):
        tt = t0 + offs_t
        mask_t = tt < L
        m2 = mask_d[:, None] & mask_t[None, :]
        m3 = mask_dn[:, :, None] & mask_t[None, None, :]
        dt = tl.load(dt_ptr + row[:, None] + tt[None, :], mask=m2, other=0.0)
        u = tl.load(u_ptr + row[:, None] + tt[None, :], mask=m2, other=0.0)
        Bv = tl.load(B_ptr + bc_base[:, :, None] + tt[None, None, :], mask=m3, other=0.0)
        Cv = tl.load(C_ptr + bc_base[:, :, None] + tt[None, None, :], mask=m3, other=0.0)
        # Steps past the end have dt = 0: decay 1 and no input, so the state just carries.
        decay = tl.exp(tl.maximum(dt[:, None, :] * A[:, :, None], -80.0))
        inp = (dt * u)[:, None, :] * Bv
        acc_a, acc_b = tl.associative_scan((decay, inp), 2, _combine)
        hs = acc_a * h[:, :, None] + acc_b
        y = tl.sum(hs * Cv, axis=1)
        tl.store(y_ptr + row[:, None] + tt[None, :], y, mask=m2)
        h = tl.sum(tl.where(offs_t[None, None, :] == BLOCK_T - 1, hs, 0.0), axis=2)
    tl.store(last_ptr + (pid_b * D + offs_d)[:, None] * NSTATE + offs_n[None, :], h, mask=mask_dn)


def _kernel() -> Any:
    """The kernel, decorated (compiled or interpreted, per TRITON_INTERPRET) on first use."""
    global _combine, _scan_kernel
    if _scan_kernel is None:
        if not _import():
            raise RuntimeError(f"triton is not available: {_IMPORT_ERROR}")
        _combine = triton.jit(_combine_fn)
        _scan_kernel = triton.jit(_scan_fn)
    return _scan_kernel


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def _scan_core(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """Launch the kernel on contiguous compute-dtype tensors; B, C: (b, g, n, l)."""
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    y = torch.empty_like(u)
    last = u.new_zeros(b, d, n)
    if b * d == 0 or l == 0:
        y.zero_()
        return y, last
    block_n = max(2, _next_pow2(n))
    block_t = _BLOCK_T
    block_d = max(1, min(_next_pow2(d), _TILE_ELEMS // (block_n * block_t)))
    if u.is_cuda:
        # Few long sequences (b * d small) would leave most SMs idle: trade tile size for programs.
        target = 2 * torch.cuda.get_device_properties(u.device).multi_processor_count
        while block_d > 1 and b * triton.cdiv(d, block_d) < target:
            block_d //= 2
    grid = (b, triton.cdiv(d, block_d))
    with torch.cuda.device(u.device) if u.is_cuda else contextlib.nullcontext():
        _kernel()[grid](
            u, dt, A, B, C, y, last, d, l, n, g, d // g,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t,
        )
    return y, last


def selective_scan_triton(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
    delta_softplus: bool = False, return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's ``selective_scan_fn`` on CUDA tensors; gradients come from the torch backend."""
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if not _import():
        raise RuntimeError(f"triton is not available: {_IMPORT_ERROR}")
    if not _interpreting():
        for t in inputs:
            if t is not None and not t.is_cuda:
                raise ValueError(
                    f"the triton scan backend needs CUDA tensors (got {t.device}); "
                    "use backend='numba' or 'torch' on CPU, or set TRITON_INTERPRET=1 to debug"
                )
    in_dtype = u.dtype
    u, delta, dtype = prepare_inputs(u, delta, D, z, delta_bias, delta_softplus)
    b, d, l = u.shape
    B, C, g = grouped_bc(u, A, B, C)
    y, last = _scan_core(
        u.contiguous(), delta.contiguous(), A.to(dtype).contiguous(),
        B.to(dtype).contiguous(), C.to(dtype).contiguous(),
    )
    y = finish_output(y, u, D, z).to(in_dtype)
    return (y, last) if return_last_state else y


__all__ = ["available", "selective_scan_triton"]
