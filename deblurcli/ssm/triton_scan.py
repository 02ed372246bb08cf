"""Selective scan as a Triton kernel, for CUDA GPUs where mamba-ssm's fused kernel is missing.

One program owns a block of channels of one batch element and walks the sequence in chunks of
``BLOCK_T`` steps. A chunk is loaded as (channels, states, steps) tiles; the recurrence
``h_t = a_t h_{t-1} + b_t`` inside the chunk is an associative scan over the pairs (a_t, b_t),
so the GPU does it in log2(BLOCK_T) parallel rounds instead of BLOCK_T dependent ones; the state
at the chunk's end stays in registers and seeds the next chunk. Nothing of size (b, d, n, l) is
written to memory.

Under autograd the forward also stores the state at each chunk's start (``b*d*n*l/BLOCK_T``
values, 1/32 of the states), and the backward kernel walks the chunks in reverse: it recomputes
the chunk's states from that checkpoint with the same associative scan, then runs the adjoint
recurrence ``G_t = a_{t+1} G_{t+1} + gy_t C_t`` (dL/dh_t) as a second associative scan over the
chunk loaded back to front, carrying ``G`` into the previous chunk as the forward carries ``h``.
So training keeps O(b*d*l) memory per scan instead of the torch scan's ~6*b*d*n*l floats (about
3 GB per image per layer at ALGNet's level 1 on 256 px crops). Step sizes, the skip term and
the gate stay in torch around the kernel (elementwise, O(b*d*l)); B and C gradients are summed
over a group's channels with atomic adds, so they vary in the last bits from run to run.

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
# The backward holds about twice as many tiles live; half the tile keeps it from spilling as much
# (an estimate: not yet measured with ptxas on a GPU).
_TILE_ELEMS_BWD = 1024


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


# The decorated forms of _combine_fn, _scan_fn and _scan_bwd_fn, made by _kernel(); the kernels
# call _combine by this global name.
_combine: Any = None
_scan_kernel: Any = None
_scan_bwd_kernel: Any = None


def _scan_fn(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, y_ptr, last_ptr, ckpt_ptr,
    D, L, NSTATE, G, DG, NCHUNK,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, SAVE: tl.constexpr,
):
    """Grid (batch, channel blocks). u, dt, y: (b, d, l); A: (d, n); B, C: (b, g, n, l).

    With SAVE, ckpt (b, d, NCHUNK, n) receives the state before each chunk of BLOCK_T steps.
    """
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
        if SAVE:
            ck = ((pid_b * D + offs_d) * NCHUNK + t0 // BLOCK_T)[:, None] * NSTATE + offs_n[None, :]
            tl.store(ckpt_ptr + ck, h, mask=mask_dn)
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


def _scan_bwd_fn(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, gy_ptr, ckpt_ptr, glast_ptr,
    gu_ptr, gdt_ptr, gA_ptr, gB_ptr, gC_ptr,
    D, L, NSTATE, G, DG, NCHUNK,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
):
    """Reverse-mode scan. Grid (batch, channel blocks); a block's channels share one B/C group.

    With a_t = exp(dt_t A) and h_t = a_t h_{t-1} + dt_t u_t B_t, y_t = <C_t, h_t>, and G_t = dL/dh_t:
    G_t = a_{t+1} G_{t+1} + gy_t C_t (G_l = dL/d last, a_l = 1); then du_t = dt_t <G_t, B_t>,
    ddt_t = u_t <G_t, B_t> + <G_t, A a_t h_{t-1}>, dA = sum_t G_t dt_t a_t h_{t-1},
    dB_t = sum_channels G_t dt_t u_t, dC_t = sum_channels gy_t h_t.
    gA (b, d, n) is per batch element (summed by the caller); gB, gC (b, g, n, l) start at zero.
    """
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    offs_t = tl.arange(0, BLOCK_T)
    mask_d = offs_d < D
    mask_n = offs_n < NSTATE
    mask_dn = mask_d[:, None] & mask_n[None, :]
    grp = (pid_d * BLOCK_D) // DG  # the caller makes BLOCK_D divide DG

    A = tl.load(A_ptr + offs_d[:, None] * NSTATE + offs_n[None, :], mask=mask_dn, other=0.0)
    row = (pid_b * D + offs_d) * L
    bc_row = (pid_b * G + grp) * NSTATE * L + offs_n * L  # (BLOCK_N,) the block's group's rows of B, C
    ck_row = (pid_b * D + offs_d) * NCHUNK
    gcar = tl.load(glast_ptr + (pid_b * D + offs_d)[:, None] * NSTATE + offs_n[None, :], mask=mask_dn, other=0.0)
    gA = tl.zeros_like(A)
    rev = BLOCK_T - 1 - offs_t
    for i in range(0, NCHUNK):
        c = NCHUNK - 1 - i
        t0 = c * BLOCK_T
        # -- the chunk's states, recomputed from its checkpoint (time order)
        tt = t0 + offs_t
        mask_t = tt < L
        m2 = mask_d[:, None] & mask_t[None, :]
        mnt = mask_n[:, None] & mask_t[None, :]
        dt = tl.load(dt_ptr + row[:, None] + tt[None, :], mask=m2, other=0.0)
        u = tl.load(u_ptr + row[:, None] + tt[None, :], mask=m2, other=0.0)
        Bv = tl.load(B_ptr + bc_row[:, None] + tt[None, :], mask=mnt, other=0.0)[None, :, :]
        h0 = tl.load(ckpt_ptr + (ck_row + c)[:, None] * NSTATE + offs_n[None, :], mask=mask_dn, other=0.0)
        # h_{t-1} for every t: a scan of the pairs one step earlier, the first one the identity
        tp = tt - 1
        mask_p = (offs_t >= 1) & (tp < L)
        mp2 = mask_d[:, None] & mask_p[None, :]
        dtp = tl.load(dt_ptr + row[:, None] + tp[None, :], mask=mp2, other=0.0)
        up = tl.load(u_ptr + row[:, None] + tp[None, :], mask=mp2, other=0.0)
        Bp = tl.load(B_ptr + bc_row[:, None] + tp[None, :], mask=mask_n[:, None] & mask_p[None, :], other=0.0)
        decay_p = tl.exp(tl.maximum(dtp[:, None, :] * A[:, :, None], -80.0))
        pa, pb = tl.associative_scan((decay_p, (dtp * up)[:, None, :] * Bp[None, :, :]), 2, _combine)
        hprev = pa * h0[:, :, None] + pb
        decay = tl.exp(tl.maximum(dt[:, None, :] * A[:, :, None], -80.0))
        q = decay * hprev  # a_t h_{t-1}
        h = q + (dt * u)[:, None, :] * Bv
        # -- the adjoint, scanned back to front: the chunk loaded in reverse time order
        tr = t0 + rev
        mask_r = tr < L
        mr2 = mask_d[:, None] & mask_r[None, :]
        mask_nx = mask_d[:, None] & ((tr + 1) < L)[None, :]
        dtn = tl.load(dt_ptr + row[:, None] + (tr + 1)[None, :], mask=mask_nx, other=0.0)  # a_{t+1}: 1 past the end
        gyr = tl.load(gy_ptr + row[:, None] + tr[None, :], mask=mr2, other=0.0)
        Cr = tl.load(C_ptr + bc_row[:, None] + tr[None, :], mask=mask_n[:, None] & mask_r[None, :], other=0.0)
        decay_n = tl.exp(tl.maximum(dtn[:, None, :] * A[:, :, None], -80.0))
        ga, gb = tl.associative_scan((decay_n, gyr[:, None, :] * Cr[None, :, :]), 2, _combine)
        g_rev = ga * gcar[:, :, None] + gb
        gcar = tl.sum(tl.where(offs_t[None, None, :] == BLOCK_T - 1, g_rev, 0.0), axis=2)  # G at t0
        Gt = tl.flip(g_rev, 2)  # back to time order
        # -- gradients of this chunk
        gy = tl.load(gy_ptr + row[:, None] + tt[None, :], mask=m2, other=0.0)
        gb_dot = tl.sum(Gt * Bv, axis=1)  # <G_t, B_t>
        tl.store(gu_ptr + row[:, None] + tt[None, :], dt * gb_dot, mask=m2)
        gdt = u * gb_dot + tl.sum(Gt * A[:, :, None] * q, axis=1)
        tl.store(gdt_ptr + row[:, None] + tt[None, :], gdt, mask=m2)
        gA += tl.sum(Gt * q * dt[:, None, :], axis=2)
        dB = tl.sum(Gt * (dt * u)[:, None, :], axis=0)  # (BLOCK_N, BLOCK_T), summed over the channels
        dC = tl.sum(h * gy[:, None, :], axis=0)
        tl.atomic_add(gB_ptr + bc_row[:, None] + tt[None, :], dB, mask=mnt)
        tl.atomic_add(gC_ptr + bc_row[:, None] + tt[None, :], dC, mask=mnt)
    tl.store(gA_ptr + (pid_b * D + offs_d)[:, None] * NSTATE + offs_n[None, :], gA, mask=mask_dn)


def _kernel(backward: bool = False) -> Any:
    """A kernel, decorated (compiled or interpreted, per TRITON_INTERPRET) on first use."""
    global _combine, _scan_kernel, _scan_bwd_kernel
    if _scan_kernel is None:
        if not _import():
            raise RuntimeError(f"triton is not available: {_IMPORT_ERROR}")
        _combine = triton.jit(_combine_fn)
        _scan_kernel = triton.jit(_scan_fn)
        _scan_bwd_kernel = triton.jit(_scan_bwd_fn)
    return _scan_bwd_kernel if backward else _scan_kernel


def _next_pow2(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def _blocks(b: int, d: int, n: int, dg: int | None, tile: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, BLOCK_T); with ``dg``, BLOCK_D also divides the channels of one group."""
    block_n = max(2, _next_pow2(n))
    block_t = _BLOCK_T
    block_d = max(1, min(_next_pow2(d), tile // (block_n * block_t)))
    if dg is not None:
        block_d = min(block_d, dg & -dg)  # the largest power of two dividing dg
    if device.type == "cuda":
        # Few long sequences (b * d small) would leave most SMs idle: trade tile size for programs.
        target = 2 * torch.cuda.get_device_properties(device).multi_processor_count
        while block_d > 1 and b * triton.cdiv(d, block_d) < target:
            block_d //= 2
    return block_d, block_n, block_t


def _scan_core(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor,
               save: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the kernel on contiguous compute-dtype tensors; B, C: (b, g, n, l).

    Returns y, the last state and (with ``save``) the chunk checkpoints (b, d, chunks, n).
    """
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    y = torch.empty_like(u)
    last = u.new_zeros(b, d, n)
    nchunk = triton.cdiv(l, _BLOCK_T) if l else 0
    ckpt = u.new_empty((b, d, nchunk, n) if save else (1,))
    if b * d == 0 or l == 0:
        y.zero_()
        return y, last, ckpt
    block_d, block_n, block_t = _blocks(b, d, n, None, _TILE_ELEMS, u.device)
    grid = (b, triton.cdiv(d, block_d))
    with torch.cuda.device(u.device) if u.is_cuda else contextlib.nullcontext():
        _kernel()[grid](
            u, dt, A, B, C, y, last, ckpt, d, l, n, g, d // g, nchunk,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t, SAVE=save,
        )
    return y, last, ckpt


def _scan_core_backward(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, ckpt: Tensor,
                        gy: Tensor, glast: Tensor) -> tuple[Tensor, ...]:
    """Gradients of (y, last) from ``_scan_core`` with respect to u, dt, A, B, C."""
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    gu, gdt = torch.zeros_like(u), torch.zeros_like(dt)
    gA = u.new_zeros(b, d, n)
    gB, gC = torch.zeros_like(B), torch.zeros_like(C)
    if b * d == 0 or l == 0:
        return gu, gdt, gA.sum(0), gB, gC
    block_d, block_n, block_t = _blocks(b, d, n, d // g, _TILE_ELEMS_BWD, u.device)
    grid = (b, triton.cdiv(d, block_d))
    with torch.cuda.device(u.device) if u.is_cuda else contextlib.nullcontext():
        _kernel(backward=True)[grid](
            u, dt, A, B, C, gy, ckpt, glast, gu, gdt, gA, gB, gC, d, l, n, g, d // g, ckpt.shape[2],
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t,
        )
    return gu, gdt, gA.sum(0), gB, gC


class _ScanFunction(torch.autograd.Function):
    """The recurrence (u, dt, A, B, C) -> (y, last state) with the Triton backward."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
        y, last, ckpt = _scan_core(u, dt, A, B, C, save=True)
        ctx.save_for_backward(u, dt, A, B, C, ckpt)
        return y, last

    @staticmethod
    def backward(ctx: Any, gy: Tensor | None, glast: Tensor | None) -> tuple[Tensor, ...]:
        u, dt, A, B, C, ckpt = ctx.saved_tensors
        gy = torch.zeros_like(u) if gy is None else gy.to(u.dtype).contiguous()
        glast = u.new_zeros(u.shape[0], u.shape[1], A.shape[1]) if glast is None else glast.to(u.dtype).contiguous()
        return _scan_core_backward(u, dt, A, B, C, ckpt, gy, glast)


def selective_scan_triton(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
    delta_softplus: bool = False, return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's ``selective_scan_fn`` on CUDA tensors; differentiable in every input."""
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
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
    args = (u.contiguous(), delta.contiguous(), A.to(dtype).contiguous(),
            B.to(dtype).contiguous(), C.to(dtype).contiguous())
    if grad:
        y, last = _ScanFunction.apply(*args)
    else:
        y, last, _ = _scan_core(*args)
    y = finish_output(y, u, D, z).to(in_dtype)
    return (y, last) if return_last_state else y


__all__ = ["available", "selective_scan_triton"]
