"""Selective scan as a compiled CPU kernel (numba), forward and backward.

The torch backend pays a tensor op per step and per chunk; here one compiled loop walks each
(batch, channel) row and keeps its n states in cache, so the cost is close to the arithmetic:
one ``exp`` and three multiply-adds per (row, step, state). Rows are independent and run in
parallel; the step loop is sequential; the state loop is written so LLVM vectorises it.

Design points, each for a measured or documented reason:

- ``exp`` is our own polynomial (Cody-Waite range reduction, then a degree-5 minimax fit for
  float32 and a degree-13 Taylor series for float64, both within ~1 ulp). A call to libm's
  ``exp`` stops the state loop from vectorising and costs more than the rest of the step; float64
  stays exact enough for ``gradcheck``.
- Exponent arguments are clamped to [-80, 88] (float64: [-80, 700]): below -80 the decay is 0 in
  float32 anyway (and the torch backend clamps the same way); the upper clamp keeps the exponent
  bits in range when ``delta`` is negative, which only happens without softplus.
- B and C are transposed to (b, g, l, n) once per call so the state loop reads contiguous memory.
- For n = 8 or 16 the state loop is shorter than the 32-wide body LLVM vectorises, so the default
  forward kernel runs four channels of a group per task (see ``_forward_quads``).
- Softplus, bias, ``D * u`` and ``silu(z)`` stay in torch: they are elementwise, torch's autograd
  already differentiates them, and the kernel stays a plain linear recurrence.
- The backward recomputes a row's states into a per-thread (l + 1, n) buffer and walks the
  sequence in reverse; B/C gradients of channels that share a group go to per-worker
  accumulators that torch sums, so no two threads ever write the same element and nothing of
  size (b, d, n, l) is ever allocated.
- The worker count follows ``torch.get_num_threads()`` so ``--threads N`` bounds every kernel.
- ``cache=True`` keeps compiled kernels across runs (the first run compiles for ~20-30 s); where
  no cache directory is writable the kernels compile per process instead of failing to import.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .reference import finish_output, prepare_inputs

try:
    import numba
    import numpy as np
    from numba.core import types
    from numba.extending import intrinsic, overload

    _IMPORT_ERROR: Exception | None = None
except Exception as exc:  # ImportError, or a broken llvmlite
    numba = None  # type: ignore[assignment]
    _IMPORT_ERROR = exc

# Lets the vectoriser reorder the dot product <C_t, h_t> and fuse multiply-adds. The exp
# polynomial is compiled on its own with only "contract", so reassociation cannot undo its
# Cody-Waite range reduction.
_FASTMATH = {"reassoc", "contract", "nsz"}


def available() -> bool:
    """True when numba imports; the kernels compile on first use."""
    return numba is not None


def _njit(**opts: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` with an on-disk cache when one can be written.

    numba raises at decoration time when neither the package directory nor the user cache
    directory is writable (e.g. a read-only site-packages with no home); compiling on each run is
    slower to start but must not make the backend disappear.
    """

    def wrap(fn: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **opts)(fn)
        except RuntimeError:
            return numba.njit(**opts)(fn)

    return wrap


if numba is not None:
    _LOG2E = 1.4426950408889634
    # ln 2 split so that k * _LN2_HI is exact for the exponents we use (Cody-Waite).
    _LN2_HI32 = 0.693359375
    _LN2_LO32 = -2.12194440e-4
    _LN2_HI64 = 6.93147180369123816490e-01
    _LN2_LO64 = 1.90821492927058770002e-10
    # exp(r) ~ 1 + r * (c1 + r * (c2 + ...)) on |r| <= ln2 / 2: a degree-5 fit minimising the
    # maximum relative error (9e-8, under one float32 ulp), two multiply-adds cheaper than Taylor.
    _EXP32_POLY = (
        0.9999997071885905, 0.49999149529222475, 0.16667636196829996,
        0.041897929482119685, 0.008290314650912907,
    )

    @intrinsic
    def _bits_as_float(typingctx: Any, bits: Any) -> Any:
        """Reinterpret int32/int64 bits as float32/float64; builds 2**k for the exp kernel."""
        if not isinstance(bits, types.Integer) or bits.bitwidth not in (32, 64):
            return None
        out = types.float32 if bits.bitwidth == 32 else types.float64

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], context.get_value_type(out))

        return out(bits), codegen

    def _fexp(x: float) -> float:  # pragma: no cover - replaced by the overload inside kernels
        return math.exp(x)

    @overload(_fexp, jit_options={"fastmath": {"contract"}})
    def _fexp_impl(x: Any) -> Any:
        """exp without libm, so that loops calling it vectorise."""
        if x == types.float32:
            f = np.float32

            def exp32(x: Any) -> Any:
                x = min(max(x, f(-80.0)), f(88.0))
                k = np.floor(x * f(_LOG2E) + f(0.5))
                r = (x - k * f(_LN2_HI32)) - k * f(_LN2_LO32)
                p = f(_EXP32_POLY[4])
                p = p * r + f(_EXP32_POLY[3])
                p = p * r + f(_EXP32_POLY[2])
                p = p * r + f(_EXP32_POLY[1])
                p = p * r + f(_EXP32_POLY[0])
                p = p * r + f(1.0)
                return p * _bits_as_float(np.int32((np.int32(k) + np.int32(127)) << np.int32(23)))

            return exp32
        if x == types.float64:

            def exp64(x: Any) -> Any:
                x = min(max(x, -80.0), 700.0)
                k = np.floor(x * _LOG2E + 0.5)
                r = (x - k * _LN2_HI64) - k * _LN2_LO64
                p = 1.0 / 6227020800.0
                p = p * r + 1.0 / 479001600.0
                p = p * r + 1.0 / 39916800.0
                p = p * r + 1.0 / 3628800.0
                p = p * r + 1.0 / 362880.0
                p = p * r + 1.0 / 40320.0
                p = p * r + 1.0 / 5040.0
                p = p * r + 1.0 / 720.0
                p = p * r + 1.0 / 120.0
                p = p * r + 1.0 / 24.0
                p = p * r + 1.0 / 6.0
                p = p * r + 0.5
                p = p * r + 1.0
                p = p * r + 1.0
                return p * _bits_as_float(np.int64((np.int64(k) + np.int64(1023)) << np.int64(52)))

            return exp64
        return None

    @_njit()
    def _exp_array(x: Any, out: Any) -> None:
        """Vector entry point to the polynomial exp, for tests of its accuracy."""
        for i in range(x.shape[0]):
            out[i] = _fexp(x[i])

    @_njit(parallel=True, fastmath=_FASTMATH)
    def _forward_rows(u: Any, dt: Any, A: Any, Bt: Any, Ct: Any, y: Any, last: Any, nw: int) -> None:
        """One (batch, channel) row per task, the state loop vectorised over n.

        Layouts: u, dt, y (b, d, l); Bt, Ct (b, g, l, n); last (b, d, n). Offers b*d tasks, so it
        is the choice when there are more threads than four-channel tasks for ``_forward_quads``.
        """
        b, d, l = u.shape
        n = A.shape[1]
        dg = d // Bt.shape[1]
        rows = b * d
        for w in numba.prange(nw):
            h = np.empty(n, dtype=u.dtype)
            zero = u.dtype.type(0)
            for r in range(w, rows, nw):
                bi = r // d
                di = r - bi * d
                gi = di // dg
                a = A[di]
                Bg = Bt[bi, gi]
                Cg = Ct[bi, gi]
                ur = u[bi, di]
                dtr = dt[bi, di]
                yr = y[bi, di]
                h[:] = zero
                for t in range(l):
                    dlt = dtr[t]
                    du = dlt * ur[t]
                    bt = Bg[t]
                    ct = Cg[t]
                    acc = zero
                    for k in range(n):
                        hk = _fexp(dlt * a[k]) * h[k] + du * bt[k]
                        h[k] = hk
                        acc += hk * ct[k]
                    yr[t] = acc
                last[bi, di, :] = h

    @_njit(parallel=True, fastmath=_FASTMATH)
    def _forward_quads(u: Any, dt: Any, A: Any, Bt: Any, Ct: Any, y: Any, last: Any, nw: int) -> None:
        """Four channels of one group per task, sharing each step's loads of B_t and C_t.

        With one channel, a state loop of n = 8 or 16 is shorter than the 32-wide body LLVM
        vectorises (8 lanes x 4 interleaved) and runs in its scalar remainder, 2x slower per
        element; four independent channels in the body make it choose a body of 8, and keep four
        exp chains in flight. Past a group's end the last channel is repeated (same values written
        twice by the same task). Layouts as in ``_forward_rows``.
        """
        b, d, l = u.shape
        n = A.shape[1]
        g = Bt.shape[1]
        dg = d // g
        qg = (dg + 3) // 4
        items = b * g * qg
        for wk in numba.prange(nw):
            H = np.empty((4, n), dtype=u.dtype)
            zero = u.dtype.type(0)
            for it in range(wk, items, nw):
                bi = it // (g * qg)
                rem = it - bi * (g * qg)
                gi = rem // qg
                c0 = gi * dg + (rem - gi * qg) * 4
                end = (gi + 1) * dg - 1
                c1 = min(c0 + 1, end)
                c2 = min(c0 + 2, end)
                c3 = min(c0 + 3, end)
                a0, a1, a2, a3 = A[c0], A[c1], A[c2], A[c3]
                u0, u1, u2, u3 = u[bi, c0], u[bi, c1], u[bi, c2], u[bi, c3]
                d0, d1, d2, d3 = dt[bi, c0], dt[bi, c1], dt[bi, c2], dt[bi, c3]
                y0, y1, y2, y3 = y[bi, c0], y[bi, c1], y[bi, c2], y[bi, c3]
                Bg = Bt[bi, gi]
                Cg = Ct[bi, gi]
                H[:, :] = zero
                h0, h1, h2, h3 = H[0], H[1], H[2], H[3]
                for t in range(l):
                    e0, e1, e2, e3 = d0[t], d1[t], d2[t], d3[t]
                    f0, f1, f2, f3 = e0 * u0[t], e1 * u1[t], e2 * u2[t], e3 * u3[t]
                    bt = Bg[t]
                    ct = Cg[t]
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    s3 = zero
                    for k in range(n):
                        bk = bt[k]
                        ck = ct[k]
                        v0 = _fexp(e0 * a0[k]) * h0[k] + f0 * bk
                        v1 = _fexp(e1 * a1[k]) * h1[k] + f1 * bk
                        v2 = _fexp(e2 * a2[k]) * h2[k] + f2 * bk
                        v3 = _fexp(e3 * a3[k]) * h3[k] + f3 * bk
                        h0[k] = v0
                        h1[k] = v1
                        h2[k] = v2
                        h3[k] = v3
                        s0 += v0 * ck
                        s1 += v1 * ck
                        s2 += v2 * ck
                        s3 += v3 * ck
                    y0[t] = s0
                    y1[t] = s1
                    y2[t] = s2
                    y3[t] = s3
                for k in range(n):
                    last[bi, c0, k] = h0[k]
                    last[bi, c1, k] = h1[k]
                    last[bi, c2, k] = h2[k]
                    last[bi, c3, k] = h3[k]

    @_njit(fastmath=_FASTMATH)
    def _forward_step(a: Any, bt: Any, hp: Any, hn: Any, dlt: Any, du: Any) -> None:
        """h_t = exp(dlt * a) * h_{t-1} + du * B_t, into hn.

        The backward's step loops live in their own functions: numba optimises each function
        on its own before inlining, so each loop is vectorised with only its own arrays to check
        for overlap; written inline in the kernel, LLVM gave up on them (3x slower).
        """
        for k in range(a.shape[0]):
            hn[k] = _fexp(dlt * a[k]) * hp[k] + du * bt[k]

    @_njit(fastmath=_FASTMATH)
    def _reverse_step(
        a: Any, bt: Any, ct: Any, hp: Any, hn: Any, g: Any, dlt: Any, du: Any,
        gh: Any, gar: Any, gbt: Any, gct: Any,
    ) -> tuple[Any, Any]:
        """One reverse step; gh holds a_{t+1} dL/dh_{t+1} on entry and a_t dL/dh_t on exit.

        Returns dL/d(du) and the part of dL/d(delta) that flows through the decay.
        """
        n = a.shape[0]
        zero = a.dtype.type(0)
        for k in range(n):
            gh[k] += g * ct[k]  # dL/dh_t
            gct[k] += g * hn[k]
        gdu = zero
        for k in range(n):
            gbt[k] += gh[k] * du
            gdu += gh[k] * bt[k]
        gx = zero
        for k in range(n):
            ak = _fexp(dlt * a[k])
            q = gh[k] * ak * hp[k]  # dL/d(dlt * a_k)
            gx += q * a[k]
            gar[k] += q * dlt
            gh[k] *= ak
        return gdu, gx

    @_njit(parallel=True, fastmath=_FASTMATH)
    def _backward_kernel(
        u: Any, dt: Any, A: Any, Bt: Any, Ct: Any, gy: Any, glast: Any, nw: int,
        gu: Any, gdt: Any, gA: Any, gB: Any, gC: Any,
    ) -> None:
        """Reverse-mode scan. gA: (b, d, n) per row; gB, gC: (nw, b, g, l, n) per worker, zeroed."""
        b, d, l = u.shape
        n = A.shape[1]
        dg = d // Bt.shape[1]
        rows = b * d
        for w in numba.prange(nw):
            H = np.empty((l + 1, n), dtype=u.dtype)  # H[t + 1] = h_t, H[0] = 0
            gh = np.empty(n, dtype=u.dtype)  # a_{t+1} * dL/dh_{t+1}, then dL/dh_t
            gar = np.empty(n, dtype=u.dtype)
            zero = u.dtype.type(0)
            for r in range(w, rows, nw):
                bi = r // d
                di = r - bi * d
                gi = di // dg
                a = A[di]
                Bg = Bt[bi, gi]
                Cg = Ct[bi, gi]
                gBg = gB[w, bi, gi]
                gCg = gC[w, bi, gi]
                ur = u[bi, di]
                dtr = dt[bi, di]
                gyr = gy[bi, di]
                gur = gu[bi, di]
                gdtr = gdt[bi, di]
                H[0, :] = zero
                for t in range(l):
                    _forward_step(a, Bg[t], H[t], H[t + 1], dtr[t], dtr[t] * ur[t])
                gh[:] = glast[bi, di]
                gar[:] = zero
                for t in range(l - 1, -1, -1):
                    dlt = dtr[t]
                    ut = ur[t]
                    du = dlt * ut
                    gdu, gx = _reverse_step(
                        a, Bg[t], Cg[t], H[t], H[t + 1], gyr[t], dlt, du, gh, gar, gBg[t], gCg[t]
                    )
                    gur[t] = gdu * dlt
                    gdtr[t] = gdu * ut + gx
                gA[bi, di, :] = gar


# "rows" or "quads" pins the forward kernel (tests cover both); None lets _use_quads choose.
_FORCE_KERNEL: str | None = None


def _threads() -> int:
    """Kernel threads for this call: torch's intra-op thread count, capped by numba's pool."""
    nt = max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads()))
    numba.set_num_threads(nt)
    return nt


_WORKQUEUE_LOCK = threading.Lock()


def _launch(kernel: Any, *args: Any) -> None:
    """Run a parallel kernel; serialised when numba fell back to its workqueue threading layer.

    The omp and tbb layers accept calls from several Python threads at once; workqueue (used when
    neither is installed) aborts the whole process on concurrent use.
    """
    try:
        layer: str | None = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet, so the layer is not chosen
        layer = None
    if layer in (None, "workqueue"):
        with _WORKQUEUE_LOCK:
            kernel(*args)
    else:
        kernel(*args)


def _use_quads(b: int, d: int, g: int, n: int, nt: int) -> bool:
    """Whether four-channel tasks finish sooner than single-row tasks on ``nt`` threads.

    Per element both cost the same when n is a multiple of 16 and rows cost ~2x otherwise
    (measured); rows win only when they keep threads busy that quads would leave idle.
    """
    quads = -(-(b * g * -(-(d // g) // 4)) // nt) * 4
    rows = -(-(b * d) // nt) * (1 if n % 16 == 0 else 2)
    return quads <= rows


def _np(t: Tensor) -> Any:
    return t.detach().numpy()


def _scan_forward(u: Tensor, dt: Tensor, A: Tensor, Bt: Tensor, Ct: Tensor) -> tuple[Tensor, Tensor]:
    """The bare recurrence: y = <C_t, h_t> and h_{l-1}. Bt, Ct: contiguous (b, g, l, n)."""
    b, d, l = u.shape
    g, n = Bt.shape[1], A.shape[1]
    y = torch.empty_like(u)
    last = u.new_empty(b, d, n)
    if b * d == 0:
        return y, last
    nt = _threads()
    args = (_np(u), _np(dt), _np(A), _np(Bt), _np(Ct), _np(y), _np(last))
    quads = _use_quads(b, d, g, n, nt) if _FORCE_KERNEL is None else _FORCE_KERNEL == "quads"
    if quads:
        _launch(_forward_quads, *args, min(nt, b * g * -(-(d // g) // 4)))
    else:
        _launch(_forward_rows, *args, min(nt, b * d))
    return y, last


class _ScanFunction(torch.autograd.Function):
    """The bare recurrence (no softplus, D or z) with the compiled reverse scan as its backward."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, dt: Tensor, A: Tensor, Bt: Tensor, Ct: Tensor) -> tuple[Tensor, Tensor]:
        y, last = _scan_forward(u, dt, A, Bt, Ct)
        ctx.save_for_backward(u, dt, A, Bt, Ct)
        return y, last

    @staticmethod
    def backward(ctx: Any, gy: Tensor | None, glast: Tensor | None) -> tuple[Tensor, ...]:
        u, dt, A, Bt, Ct = ctx.saved_tensors
        b, d, l = u.shape
        n = A.shape[1]
        gy = torch.zeros_like(u) if gy is None else gy.to(u.dtype).contiguous()
        glast = u.new_zeros(b, d, n) if glast is None else glast.to(u.dtype).contiguous()
        nw = min(_threads(), max(b * d, 1))
        gu = torch.empty_like(u)
        gdt = torch.empty_like(u)
        gA = u.new_zeros(b, d, n)
        gBt = Bt.new_zeros((nw, *Bt.shape))
        gCt = Ct.new_zeros((nw, *Ct.shape))
        if b * d:
            _launch(
                _backward_kernel, _np(u), _np(dt), _np(A), _np(Bt), _np(Ct), _np(gy), _np(glast), nw,
                _np(gu), _np(gdt), _np(gA), _np(gBt), _np(gCt),
            )
        return gu, gdt, gA.sum(0), gBt.sum(0), gCt.sum(0)


def _check_inputs(tensors: dict[str, Tensor | None]) -> None:
    for name, t in tensors.items():
        if t is not None and t.device.type != "cpu":
            raise ValueError(
                f"the numba scan backend runs on CPU tensors only, but {name} is on {t.device}; "
                "use backend='auto' (or 'cuda'/'triton'/'torch') for GPU tensors"
            )


def selective_scan_numba(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
    delta_softplus: bool = False, return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's ``selective_scan_fn`` on CPU tensors; differentiable in every input."""
    if numba is None:
        raise RuntimeError(f"numba is not available: {_IMPORT_ERROR}")
    _check_inputs({"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z,
                   "delta_bias": delta_bias})
    in_dtype = u.dtype
    u, delta, dtype = prepare_inputs(u, delta, D, z, delta_bias, delta_softplus)
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
    u = u.contiguous()
    delta = delta.contiguous()
    A = A.to(dtype).contiguous()
    Bt = B.to(dtype).transpose(-1, -2).contiguous()
    Ct = C.to(dtype).transpose(-1, -2).contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, Bt, Ct)):
        y, last = _ScanFunction.apply(u, delta, A, Bt, Ct)
    else:
        y, last = _scan_forward(u, delta, A, Bt, Ct)
    y = finish_output(y, u, D, z).to(in_dtype)
    return (y, last) if return_last_state else y


__all__ = ["available", "selective_scan_numba"]
