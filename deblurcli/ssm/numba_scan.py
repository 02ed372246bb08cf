"""Selective scan as a compiled CPU kernel (numba), forward and backward.

The torch backend pays a tensor op per step and per chunk; here compiled loops walk each
(batch, channel) row and keep its n states in cache, so the cost is close to the arithmetic:
one ``exp`` and three multiply-adds per (row, step, state) forward, about twice that backward.
The step loop is sequential; the state loop is written so LLVM vectorises it.

Design points, each for a measured or documented reason:

- ``exp`` is our own polynomial (Cody-Waite range reduction, then a degree-5 minimax fit for
  float32 and a degree-13 Taylor series for float64, both within ~1 ulp). A call to libm's
  ``exp`` stops the state loop from vectorising and costs more than the rest of the step; float64
  stays exact enough for ``gradcheck``. Softplus and its derivative are built on it the same way.
- Exponent arguments are clamped to [-80, 88] (float64: [-80, 700]): below -80 the decay is 0 in
  float32 anyway (and the torch backend clamps the same way); the upper clamp keeps the exponent
  bits in range when ``delta`` is negative, which only happens without softplus.
- The kernels compute all of ``selective_scan_fn``: step sizes softplus(delta + bias), the
  recurrence and the gate (y + D u) * silu(z), and differentiate all of it. In torch these were
  a third of the forward's time, and in the Mamba block's layouts (z, delta, B and C are views
  of time-major projections) their backward ops ran 3-7x slower on mixed strides, after copies.
  Every input is read in place with its own strides (``_flat``), and outputs and gradients are
  laid out like their inputs (``_dense_like``; z's gradient like u's) so torch's ops around the
  scan stay fast.
- Work is cut into tasks of (batch, group, slice of the group's channels) and the sequence into
  chunks of K = min(_SCRATCH // n, _VEC // 4) steps. A task walks the chunks and, inside each, all
  its channels: the chunk's B and C are transposed once into (K, n) buffers that every channel
  then reads from L1.
- Every buffer the state loops touch is a stack array (``_stack``, ``_stack_vec``): LLVM then
  knows nothing overlaps and vectorises the loops for any n >= 8 with no runtime overlap checks.
  With heap buffers or input rows it added checks that failed or were priced into a minimum trip
  count of 32, and n = 8 or 16 ran scalar (the first kernels were 2-3x slower per element there).
- The forward runs four channels per state loop (``_forward_task``); the backward one, whose
  loop body is twice as large (four channels spilled registers and ran 1.5x slower, two gained
  nothing).
- The forward stores each channel's state at every chunk start (1/K of the states) when a
  backward will follow. The backward walks chunks in reverse: it recomputes the chunk's decays
  and states from that checkpoint into (K, n) buffers, then runs the reverse recurrence over them,
  so it needs one ``exp`` per element (the stored decays), not two, and touches only L1/L2.
- B/C gradients of the channels of one task are summed in the chunk's (K, n) buffers and written
  once per chunk; only when a group's channels are split across tasks (fewer (batch, group)
  pairs than threads) does torch sum per-slice copies.
- Indices into input arrays are unsigned and kernels use ``error_model="numpy"``: numba's
  negative-index wrap-around and its zero-division checks cost a branch per element, which kept
  the copy and gate loops from vectorising.
- The worker count follows ``torch.get_num_threads()`` so ``--threads N`` bounds every kernel.
- ``cache=True`` keeps compiled kernels across runs (the first run compiles for ~20 s per dtype,
  forward and backward); where no cache directory is writable the kernels compile per process
  instead of failing to import.
"""

from __future__ import annotations

import importlib.abc
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .notice import notify
from .reference import grouped_bc


class _HideScipy(importlib.abc.MetaPathFinder):
    """Makes SciPy look absent to one thread while numba starts up.

    numba imports ``scipy.linalg`` when it first prepares to compile or to load a cached kernel,
    only to learn whether ``np.dot``-style functions inside jitted code can call BLAS. Our kernels
    never do, and where SciPy is installed (our test extra pulls it in) that import was the largest
    single part of numba's start-up: 0.3-0.5 s of CPU on every ``deblur run``. Without it numba uses
    its own loops for ``np.correlate``/``np.convolve`` in this process; its linear algebra still
    imports SciPy when it is first compiled. Only the thread starting numba is affected, so code
    running meanwhile on other threads imports SciPy as usual.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if threading.get_ident() == self.thread and (name == "scipy" or name.startswith("scipy.")):
            raise ModuleNotFoundError(f"{name} is not needed by the scan kernels", name=name)
        return None


@contextmanager
def _without_scipy() -> Iterator[None]:
    """SciPy hidden from numba in this thread, unless it is imported already (then it costs nothing)."""
    if "scipy.linalg" in sys.modules:
        yield
        return
    finder = _HideScipy()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


try:
    import numpy as np

    with _without_scipy():
        import numba
        from numba import literal_unroll
        from numba.core import cgutils, types
        from numba.extending import intrinsic, overload

    _IMPORT_ERROR: Exception | None = None
except Exception as exc:  # ImportError, or a broken llvmlite
    numba = None  # type: ignore[assignment]
    _IMPORT_ERROR = exc

# Lets the vectoriser reorder the dot product <C_t, h_t> and fuse multiply-adds. The exp
# polynomial is compiled on its own with only "contract", so reassociation cannot undo its
# Cody-Waite range reduction.
_FASTMATH = {"reassoc", "contract", "nsz"}
# Every kernel also compiles with error_model="numpy": the default ("python") checks each float
# division for a zero divisor and branches to raise, which keeps the gate's loops from vectorising.

# A chunk is K = min(_SCRATCH // n, _VEC // 4) steps: its (K, n) buffers of B, C, decays and states
# (8 KiB each in float32) stay in L1/L2, and its per-step values fit a stack vector of _VEC
# elements; n <= _VEC. Stack matrices hold _SCRATCH + _VEC elements, room for K + 1 state rows.
_SCRATCH = 2048
_VEC = 1024
# Each stack buffer gets one cache line more than it needs: buffers of whole pages start at the same
# page offset, so a state loop touching eight of them hit one L1 set (8 ways) and missed (10-15%).
_PAD = 16


def available() -> bool:
    """True when numba imports; the kernels compile on first use."""
    return numba is not None


def _writable_dir(path: Path) -> bool:
    """Whether files can be created in ``path`` (made if missing); the test numba itself makes."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def _choose_cache_dir() -> str | None:
    """Where the compiled kernels are kept between runs; None leaves numba's choice (beside this module).

    Compiling takes tens of seconds, so the cache matters on the first run of every process.
    Beside the module is best (one cache per installed copy), but site-packages is often
    read-only (system installs, containers); then a user cache folder, ``$XDG_CACHE_HOME``
    (``~/.cache``) ``/deblurcli/numba``, else one in the temporary folder: numba's own fallback
    (``~/.cache/numba``) does not help where the home folder is not writable either.
    ``NUMBA_CACHE_DIR`` set by the user always wins.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    if _writable_dir(Path(__file__).parent / "__pycache__"):
        return None
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    candidates = []
    try:
        candidates.append((Path(xdg) if xdg else Path.home() / ".cache") / "deblurcli" / "numba")
    except RuntimeError:  # no home folder known (a container's arbitrary uid)
        pass
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(Path(tempfile.gettempdir()) / f"deblurcli-{uid}" / "numba")
    for c in candidates:
        if _writable_dir(c):
            numba.config.CACHE_DIR = str(c)
            return str(c)
    return None


#: The folder the compiled kernels are cached in (None: beside this module, numba's default).
CACHE_DIR: str | None = None


def _will_compile(kernel: Any) -> str | None:
    """Whether the first call of ``kernel`` in this process compiles it: None (it loads the cache or
    is compiled already), "cached" (it compiles and caches) or "uncached" (it compiles every run).

    Reads numba's cache index (private, so any surprise means None: then nothing is said).
    """
    try:
        if kernel.signatures:
            return None
        cache_file = getattr(getattr(kernel, "_cache", None), "_cache_file", None)
        if cache_file is None:
            return "uncached"  # nowhere writable: every process compiles
        return None if cache_file._load_index() else "cached"
    except Exception:
        return None


_noticed: set[str] = set()


def _compile_notice(kernel: Any, what: str) -> None:
    """Say once per process that the kernel is compiling, so a first run does not look stuck."""
    if what in _noticed:
        return
    _noticed.add(what)
    state = _will_compile(kernel)
    if state == "cached":
        where = f"cached in {CACHE_DIR}" if CACHE_DIR else "cached for later runs"
        notify(f"compiling the {what} for this CPU: about 10-30 s, once ({where})")
    elif state == "uncached":
        notify(f"compiling the {what} for this CPU: about 10-30 s; no writable cache folder, so every run "
               "compiles again (set NUMBA_CACHE_DIR to a writable folder)")


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
    CACHE_DIR = _choose_cache_dir()
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

    def _fsoftplus(x: float) -> tuple[float, float]:  # pragma: no cover - replaced by the overload
        sig = 1.0 / (1.0 + math.exp(-x))
        return (x, 1.0) if x > 20.0 else (math.log1p(math.exp(x)), sig)

    @overload(_fsoftplus, jit_options={"fastmath": {"contract"}})
    def _fsoftplus_impl(x: Any) -> Any:
        """torch's softplus (threshold 20) and its derivative, without libm so that loops vectorise.

        softplus(x) = max(x, 0) + log1p(e) with e = exp(-|x|) in (0, 1], and log1p(e) = 2 atanh(s)
        with s = e / (2 + e) <= 1/3: the odd series of atanh shrinks by 1/9 a term, so 8 terms
        reach a float32 ulp and 17 a float64 one. The derivative sigmoid(x) is (1 or e) / (1 + e):
        one exp and one division serve both.
        """
        if not isinstance(x, types.Float):
            return None
        f = np.float32 if x == types.float32 else np.float64
        terms = 8 if x == types.float32 else 17
        coef = tuple(1.0 / (2 * j + 1) for j in range(terms))

        def softplus(x: Any) -> Any:
            e = _fexp(-abs(x))
            r = f(1.0) / ((f(2.0) + e) * (f(1.0) + e))
            s = e * (f(1.0) + e) * r
            s2 = s * s
            p = f(coef[terms - 1])
            for j in literal_unroll(coef[-2::-1]):
                p = p * s2 + f(j)
            y = max(x, f(0.0)) + f(2.0) * s * p
            sig = (f(1.0) if x >= f(0.0) else e) * (f(2.0) + e) * r
            big = x > f(20.0)
            return (x if big else y), (f(1.0) if big else sig)

        return softplus

    @_njit()
    def _softplus_array(x: Any, out: Any, grad: Any) -> None:
        """Vector entry point to the polynomial softplus and its derivative, for tests."""
        for i in range(x.shape[0]):
            out[i], grad[i] = _fsoftplus(x[i])

    def _stack_codegen(capacity: int, arrty: Any, nargs: int) -> Any:
        """Codegen of a stack array: an entry-block alloca of ``capacity`` elements, shape from args."""

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            lty = context.get_value_type(arrty.dtype)
            with builder.goto_entry_block():
                ptr = builder.alloca(lty, size=cgutils.intp_t(capacity))
                ptr.align = 64
            shape = [context.cast(builder, v, t, types.intp)
                     for v, t in zip(args[:nargs], signature.args[:nargs], strict=True)]
            itemsize = context.get_constant(types.intp, context.get_abi_sizeof(lty))
            strides = [itemsize] if nargs == 1 else [builder.mul(shape[1], itemsize), itemsize]
            ary = context.make_array(arrty)(context, builder)
            context.populate_array(ary, data=ptr, shape=shape, strides=strides, itemsize=itemsize, meminfo=None)
            return ary._getvalue()

        return codegen

    @intrinsic
    def _stack(typingctx: Any, rows: Any, cols: Any, like: Any) -> Any:
        """A (rows, cols) scratch matrix on the caller's stack, rows * cols <= ``_SCRATCH + _VEC``.

        Why not ``np.empty``: LLVM cannot tell a heap buffer from any other array, so every
        state loop that writes one got runtime overlap checks, and those checks (hoisted over the
        step loop, or priced into a minimum trip count of 32) sent n = 8..32 down the scalar path.
        A stack slot provably overlaps nothing else, so the loops vectorise with no checks.
        The buffer lives until the function that called this returns: never return it.
        """
        if not (isinstance(rows, types.Integer) and isinstance(cols, types.Integer)
                and isinstance(like, types.Float)):
            return None
        arrty = types.Array(like, 2, "C")
        return arrty(rows, cols, like), _stack_codegen(_SCRATCH + _VEC + _PAD, arrty, 2)

    @intrinsic
    def _stack_vec(typingctx: Any, size: Any, like: Any) -> Any:
        """A vector of ``size <= _VEC`` on the caller's stack (a state row, or a chunk of a row)."""
        if not (isinstance(size, types.Integer) and isinstance(like, types.Float)):
            return None
        arrty = types.Array(like, 1, "C")
        return arrty(size, like), _stack_codegen(_VEC + _PAD, arrty, 1)

    @_njit(fastmath=_FASTMATH, error_model="numpy")
    def _chunk_len(n: int) -> int:
        """Steps per chunk; see ``_SCRATCH``."""
        return min(_SCRATCH // n, _VEC // 4)

    @_njit(fastmath=_FASTMATH, error_model="numpy", inline="always")
    def _gather(src: Any, o: int, step: int, m: int, out: Any) -> None:
        """out[i] = src[o + i * step] for i < m: a row segment of any layout into a buffer.

        Unsigned indices: a signed one costs a wrap-around test per element (numba's negative
        indexing), which kept these copies scalar; with it the forward's per-chunk work took 2x
        as long. Inlined by numba: as calls (LLVM kept them out of line) the argument passing
        cost more than copying a short row (S2, T5 7-10% slower); inlining the larger helpers
        too doubled the compile time for 2%.
        """
        if step == 1:
            for i in range(m):
                out[i] = src[np.uint64(o + i)]
        else:
            for i in range(m):
                out[i] = src[np.uint64(o + i * step)]

    @_njit(fastmath=_FASTMATH, error_model="numpy", inline="always")
    def _scatter(buf: Any, m: int, dst: Any, o: int, step: int) -> None:
        """dst[o + i * step] = buf[i] for i < m."""
        if step == 1:
            for i in range(m):
                dst[np.uint64(o + i)] = buf[i]
        else:
            for i in range(m):
                dst[np.uint64(o + i * step)] = buf[i]

    @_njit(fastmath=_FASTMATH, error_model="numpy")
    def _load_chunk(src: Any, o: int, sn: int, sl: int, m: int, out: Any) -> None:
        """out[i, k] = src[o + k * sn + i * sl]: m steps of B or C, time-major for the state loops.

        The loop order follows the source's layout, so reads are sequential either way.
        """
        n = out.shape[1]
        if sn == 1:  # time-major (the Mamba block's x_proj output): contiguous rows, vector copies
            for i in range(m):
                r = o + i * sl
                for k in range(n):
                    out[i, k] = src[np.uint64(r + k)]
        elif sn < sl:
            for i in range(m):
                for k in range(n):
                    out[i, k] = src[np.uint64(o + k * sn + i * sl)]
        else:
            for k in range(n):
                for i in range(m):
                    out[i, k] = src[np.uint64(o + k * sn + i * sl)]

    @_njit(fastmath=_FASTMATH, error_model="numpy")
    def _store_chunk(buf: Any, m: int, dst: Any, o: int, sn: int, sl: int) -> None:
        """dst[o + k * sn + i * sl] = buf[i, k]: the inverse of ``_load_chunk``."""
        n = buf.shape[1]
        if sn == 1:
            for i in range(m):
                r = o + i * sl
                for k in range(n):
                    dst[np.uint64(r + k)] = buf[i, k]
        elif sn < sl:
            for i in range(m):
                for k in range(n):
                    dst[np.uint64(o + k * sn + i * sl)] = buf[i, k]
        else:
            for k in range(n):
                for i in range(m):
                    dst[np.uint64(o + k * sn + i * sl)] = buf[i, k]

    @_njit(fastmath=_FASTMATH, error_model="numpy")
    def _forward_in(
        u: Any, su: Any, dt: Any, sdt: Any, bias: Any, softplus: bool, A: Any, last: Any, ckpt: Any,
        bi: int, ch: int, c: int, t0: int, m: int, a: Any, h: Any, ub: Any, db: Any,
    ) -> None:
        """A channel's A row and running state, its u and step sizes for the chunk; keeps a checkpoint."""
        ar = A[ch]
        st = last[bi, ch]
        for k in range(A.shape[1]):
            a[k] = ar[k]
            h[k] = st[k]
        if ckpt.shape[0] > 0:
            ck = ckpt[bi, ch, c]
            for k in range(A.shape[1]):
                ck[k] = st[k]
        _gather(u, bi * su[0] + ch * su[1] + t0 * su[2], su[2], m, ub)
        _gather(dt, bi * sdt[0] + ch * sdt[1] + t0 * sdt[2], sdt[2], m, db)
        bc = bias[ch]
        if softplus:
            for i in range(m):
                db[i] = _fsoftplus(db[i] + bc)[0]
        else:
            for i in range(m):
                db[i] += bc

    @_njit(fastmath=_FASTMATH, error_model="numpy")
    def _forward_out(
        z: Any, sz: Any, D: Any, out: Any, sout: Any, ysum: Any, last: Any, bi: int, ch: int,
        t0: int, m: int, h: Any, ub: Any, yb: Any, zb: Any, ob: Any,
    ) -> None:
        """Stores a channel's state and writes (y + D u) * silu(z) for the chunk (and y + D u)."""
        st = last[bi, ch]
        for k in range(st.shape[0]):
            st[k] = h[k]
        Dc = D[ch]
        for i in range(m):
            yb[i] += Dc * ub[i]
        if ysum.shape[0] > 0:
            ys = ysum[bi, ch]
            for i in range(m):
                ys[t0 + i] = yb[i]
        o = bi * sout[0] + ch * sout[1] + t0 * sout[2]
        if z.shape[0] > 0:
            one = D.dtype.type(1)
            _gather(z, bi * sz[0] + ch * sz[1] + t0 * sz[2], sz[2], m, zb)
            for i in range(m):
                zi = zb[i]
                ob[i] = yb[i] * zi / (one + _fexp(-zi))
            _scatter(ob, m, out, o, sout[2])
        else:
            _scatter(yb, m, out, o, sout[2])

    @_njit(fastmath=_FASTMATH, error_model="numpy")
    def _forward_task(
        u: Any, su: Any, dt: Any, sdt: Any, bias: Any, softplus: bool, z: Any, sz: Any, D: Any, A: Any,
        B: Any, sB: Any, C: Any, sC: Any, out: Any, sout: Any, ysum: Any, last: Any, ckpt: Any,
        l: int, bi: int, gi: int, lo: int, hi: int,
    ) -> None:
        """Channels lo..hi-1 (all of group gi) of batch bi, chunk by chunk, four at a time.

        Arrays of (b, d, l) or (b, g, n, l) values are 1-D memory with strides (``_flat``).
        out = (y + D u) * silu(z) (no silu without z). ``last`` holds each channel's running state
        between chunks (the final state at the end). For a backward, non-empty ``ckpt``
        (b, d, chunks, n) keeps the state at each chunk start and ``ysum`` (b, d, l) y + D u.

        Four channels share each step's loads of B_t and C_t and keep four exp chains in flight;
        with one, the state loop's reduction made LLVM unroll it to 16 lanes, so n = 8 ran at
        half width (1.5x slower), and per-step overhead was paid per channel (10% at n = 16, 32).
        Past the slice's end the last channel is repeated: same values, written twice.
        """
        n = A.shape[1]
        K = _chunk_len(n)
        zero = A.dtype.type(0)
        Bc = _stack(K, n, zero)
        Cc = _stack(K, n, zero)
        a0, a1, a2, a3 = _stack_vec(n, zero), _stack_vec(n, zero), _stack_vec(n, zero), _stack_vec(n, zero)
        h0, h1, h2, h3 = _stack_vec(n, zero), _stack_vec(n, zero), _stack_vec(n, zero), _stack_vec(n, zero)
        u0, u1, u2, u3 = _stack_vec(K, zero), _stack_vec(K, zero), _stack_vec(K, zero), _stack_vec(K, zero)
        d0, d1, d2, d3 = _stack_vec(K, zero), _stack_vec(K, zero), _stack_vec(K, zero), _stack_vec(K, zero)
        y0, y1, y2, y3 = _stack_vec(K, zero), _stack_vec(K, zero), _stack_vec(K, zero), _stack_vec(K, zero)
        zb = _stack_vec(K, zero)
        ob = _stack_vec(K, zero)
        for ch in range(lo, hi):
            last[bi, ch, :] = zero
        for c in range((l + K - 1) // K):
            t0 = c * K
            m = min(K, l - t0)
            _load_chunk(B, bi * sB[0] + gi * sB[1] + t0 * sB[3], sB[2], sB[3], m, Bc)
            _load_chunk(C, bi * sC[0] + gi * sC[1] + t0 * sC[3], sC[2], sC[3], m, Cc)
            for q in range(lo, hi, 4):
                c0, c1, c2, c3 = q, min(q + 1, hi - 1), min(q + 2, hi - 1), min(q + 3, hi - 1)
                _forward_in(u, su, dt, sdt, bias, softplus, A, last, ckpt, bi, c0, c, t0, m, a0, h0, u0, d0)
                _forward_in(u, su, dt, sdt, bias, softplus, A, last, ckpt, bi, c1, c, t0, m, a1, h1, u1, d1)
                _forward_in(u, su, dt, sdt, bias, softplus, A, last, ckpt, bi, c2, c, t0, m, a2, h2, u2, d2)
                _forward_in(u, su, dt, sdt, bias, softplus, A, last, ckpt, bi, c3, c, t0, m, a3, h3, u3, d3)
                for i in range(m):
                    e0, e1, e2, e3 = d0[i], d1[i], d2[i], d3[i]
                    f0, f1, f2, f3 = e0 * u0[i], e1 * u1[i], e2 * u2[i], e3 * u3[i]
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    s3 = zero
                    for k in range(n):
                        bk = Bc[i, k]
                        ck = Cc[i, k]
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
                    y0[i] = s0
                    y1[i] = s1
                    y2[i] = s2
                    y3[i] = s3
                _forward_out(z, sz, D, out, sout, ysum, last, bi, c0, t0, m, h0, u0, y0, zb, ob)
                _forward_out(z, sz, D, out, sout, ysum, last, bi, c1, t0, m, h1, u1, y1, zb, ob)
                _forward_out(z, sz, D, out, sout, ysum, last, bi, c2, t0, m, h2, u2, y2, zb, ob)
                _forward_out(z, sz, D, out, sout, ysum, last, bi, c3, t0, m, h3, u3, y3, zb, ob)

    @_njit(fastmath=_FASTMATH, error_model="numpy", inline="always")
    def _task(it: int, g: int, parts: int, dg: int) -> tuple[int, int, int, int, int]:
        """Task ``it`` -> (batch, group, part, first channel, end channel), shared by both kernels."""
        bi = it // (g * parts)
        r = it - bi * (g * parts)
        gi = r // parts
        p = r - gi * parts
        return bi, gi, p, gi * dg + (p * dg) // parts, gi * dg + ((p + 1) * dg) // parts

    @_njit(parallel=True, fastmath=_FASTMATH, error_model="numpy")
    def _forward_kernel(
        u: Any, su: Any, dt: Any, sdt: Any, bias: Any, softplus: bool, z: Any, sz: Any, D: Any, A: Any,
        B: Any, sB: Any, C: Any, sC: Any, out: Any, sout: Any, ysum: Any, last: Any, ckpt: Any,
        b: int, l: int, g: int, parts: int, nw: int,
    ) -> None:
        """Tasks (batch, group, channel slice) round-robin over nw workers; see ``_forward_task``."""
        d = A.shape[0]
        dg = d // g
        tasks = b * g * parts
        for w in numba.prange(nw):
            for it in range(w, tasks, nw):
                bi, gi, p, lo, hi = _task(it, g, parts, dg)
                _forward_task(u, su, dt, sdt, bias, softplus, z, sz, D, A, B, sB, C, sC, out, sout, ysum, last, ckpt,
                              l, bi, gi, lo, hi)

    @_njit(fastmath=_FASTMATH, error_model="numpy")
    def _backward_task(
        u: Any, su: Any, dt: Any, sdt: Any, bias: Any, softplus: bool, z: Any, sz: Any, D: Any, A: Any,
        B: Any, sB: Any, C: Any, sC: Any, gout: Any, sgo: Any, ysum: Any, ckpt: Any, gstate: Any,
        gu: Any, sgu: Any, gdt: Any, sgdt: Any, gz: Any, sgz: Any, gD: Any, gbias: Any, gA: Any,
        gB: Any, sgB: Any, gC: Any, sgC: Any, l: int, bi: int, gi: int, p: int, lo: int, hi: int,
    ) -> None:
        """Reverse scan of channels lo..hi-1 of batch bi; p picks this slice's gB, gC copy.

        Per chunk, last to first: undo the gate, recompute the decays E and states H of each
        channel from its checkpoint, then walk the chunk backwards. ``gstate`` carries
        a_{t+1} dL/dh_{t+1} between chunks (dL/d last on entry).
        """
        n = A.shape[1]
        K = _chunk_len(n)
        zero = A.dtype.type(0)
        one = A.dtype.type(1)
        has_z = z.shape[0] > 0
        Bc = _stack(K, n, zero)
        Cc = _stack(K, n, zero)
        dBc = _stack(K, n, zero)
        dCc = _stack(K, n, zero)
        E = _stack(K, n, zero)
        H = _stack(K + 1, n, zero)  # H[i + 1] = h at step t0 + i, H[0] the checkpoint
        a = _stack_vec(n, zero)
        h = _stack_vec(n, zero)
        G = _stack_vec(n, zero)
        gar = _stack_vec(n, zero)
        ub = _stack_vec(K, zero)
        db = _stack_vec(K, zero)
        gb = _stack_vec(K, zero)  # dL/d out, then dL/d y
        zb = _stack_vec(K, zero)
        gzb = _stack_vec(K, zero)
        gub = _stack_vec(K, zero)
        gdb = _stack_vec(K, zero)
        sg = _stack_vec(K, zero)  # d(step size)/d(raw delta)
        for ch in range(lo, hi):
            gA[bi, ch, :] = zero
            gD[bi, ch] = zero
            gbias[bi, ch] = zero
        for c in range((l + K - 1) // K - 1, -1, -1):
            t0 = c * K
            m = min(K, l - t0)
            _load_chunk(B, bi * sB[0] + gi * sB[1] + t0 * sB[3], sB[2], sB[3], m, Bc)
            _load_chunk(C, bi * sC[0] + gi * sC[1] + t0 * sC[3], sC[2], sC[3], m, Cc)
            for i in range(m):
                for k in range(n):
                    dBc[i, k] = zero
                    dCc[i, k] = zero
            for ch in range(lo, hi):
                _gather(u, bi * su[0] + ch * su[1] + t0 * su[2], su[2], m, ub)
                _gather(dt, bi * sdt[0] + ch * sdt[1] + t0 * sdt[2], sdt[2], m, db)
                bc = bias[ch]
                if softplus:
                    for i in range(m):
                        db[i], sg[i] = _fsoftplus(db[i] + bc)
                else:
                    for i in range(m):
                        db[i] += bc
                _gather(gout, bi * sgo[0] + ch * sgo[1] + t0 * sgo[2], sgo[2], m, gb)
                if has_z:
                    _gather(z, bi * sz[0] + ch * sz[1] + t0 * sz[2], sz[2], m, zb)
                    ys = ysum[bi, ch]
                    for i in range(m):
                        zi = zb[i]
                        s = one / (one + _fexp(-zi))
                        go = gb[i]
                        gzb[i] = go * ys[t0 + i] * s * (one + zi * (one - s))
                        gb[i] = go * zi * s
                    _scatter(gzb, m, gz, bi * sgz[0] + ch * sgz[1] + t0 * sgz[2], sgz[2])
                gdc = zero
                for i in range(m):
                    gdc += gb[i] * ub[i]
                gD[bi, ch] += gdc
                ar = A[ch]
                ck = ckpt[bi, ch, c]
                gs = gstate[bi, ch]
                ga = gA[bi, ch]
                for k in range(n):
                    a[k] = ar[k]
                    h[k] = ck[k]
                    H[0, k] = ck[k]
                    G[k] = gs[k]
                    gar[k] = ga[k]
                for i in range(m):
                    dlt = db[i]
                    du = dlt * ub[i]
                    for k in range(n):
                        ek = _fexp(dlt * a[k])
                        hk = ek * h[k] + du * Bc[i, k]
                        E[i, k] = ek
                        h[k] = hk
                        H[i + 1, k] = hk
                Dc = D[ch]
                for i in range(m - 1, -1, -1):
                    dlt = db[i]
                    ut = ub[i]
                    du = dlt * ut
                    g = gb[i]
                    gdu = zero
                    gx = zero
                    for k in range(n):
                        Gk = G[k] + g * Cc[i, k]  # dL/dh_t
                        dCc[i, k] += g * H[i + 1, k]
                        dBc[i, k] += du * Gk
                        gdu += Gk * Bc[i, k]
                        ek = E[i, k]
                        Gn = Gk * ek
                        q = Gn * H[i, k]  # dL/d(dlt * a_k)
                        gx += q * a[k]
                        gar[k] += q * dlt
                        G[k] = Gn
                    gub[i] = gdu * dlt + g * Dc
                    gdb[i] = gdu * ut + gx
                _scatter(gub, m, gu, bi * sgu[0] + ch * sgu[1] + t0 * sgu[2], sgu[2])
                if softplus:
                    for i in range(m):
                        gdb[i] *= sg[i]
                gbc = zero
                for i in range(m):
                    gbc += gdb[i]
                gbias[bi, ch] += gbc
                _scatter(gdb, m, gdt, bi * sgdt[0] + ch * sgdt[1] + t0 * sgdt[2], sgdt[2])
                for k in range(n):
                    gs[k] = G[k]
                    ga[k] = gar[k]
            o = p * sgB[0] + bi * sgB[1] + gi * sgB[2] + t0 * sgB[4]
            _store_chunk(dBc, m, gB, o, sgB[3], sgB[4])
            o = p * sgC[0] + bi * sgC[1] + gi * sgC[2] + t0 * sgC[4]
            _store_chunk(dCc, m, gC, o, sgC[3], sgC[4])

    @_njit(parallel=True, fastmath=_FASTMATH, error_model="numpy")
    def _backward_kernel(
        u: Any, su: Any, dt: Any, sdt: Any, bias: Any, softplus: bool, z: Any, sz: Any, D: Any, A: Any,
        B: Any, sB: Any, C: Any, sC: Any, gout: Any, sgo: Any, ysum: Any, ckpt: Any, gstate: Any,
        gu: Any, sgu: Any, gdt: Any, sgdt: Any, gz: Any, sgz: Any, gD: Any, gbias: Any, gA: Any,
        gB: Any, sgB: Any, gC: Any, sgC: Any, b: int, l: int, g: int, parts: int, nw: int,
    ) -> None:
        """Reverse-mode scan over the forward's tasks. gD (b, d); gA (b, d, n); gB, gC (parts, b, g, n, l)."""
        d = A.shape[0]
        dg = d // g
        tasks = b * g * parts
        for w in numba.prange(nw):
            for it in range(w, tasks, nw):
                bi, gi, p, lo, hi = _task(it, g, parts, dg)
                _backward_task(u, su, dt, sdt, bias, softplus, z, sz, D, A, B, sB, C, sC, gout, sgo, ysum, ckpt,
                               gstate, gu, sgu, gdt, sgdt, gz, sgz, gD, gbias, gA, gB, sgB, gC, sgC,
                               l, bi, gi, p, lo, hi)


def _threads() -> int:
    """Kernel threads for this call: torch's intra-op thread count, capped by numba's pool."""
    nt = max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads()))
    with _keep_torch_threads():  # the first call in a thread starts numba's pool
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
    with _keep_torch_threads():
        if layer in (None, "workqueue"):
            with _WORKQUEUE_LOCK:
                kernel(*args)
        else:
            kernel(*args)


@contextmanager
def _keep_torch_threads() -> Iterator[None]:
    """torch's thread count as it was, after numba starts its OpenMP pool in this thread.

    Starting the pool (on the first parallel kernel loaded or run in a thread) resets the calling
    thread's OpenMP thread count to numba's. Inside a forward pass that left the rest of a
    process's first forward on numba's count (one thread under ``NUMBA_NUM_THREADS=1``) instead of
    ``--threads``: slower, and numerically a little unlike every later forward.
    """
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


# Pins the number of channel slices per (batch, group) in tests; None lets _split choose.
_FORCE_PARTS: int | None = None


def _split(pairs: int, dg: int, nt: int) -> int:
    """Slices per group's channels, so that ``pairs * parts`` tasks share ``nt`` threads evenly.

    One slice whenever there are enough (batch, group) pairs: slices re-read B and C, and in the
    backward each needs its own B/C gradient copy that torch then sums.
    """
    if _FORCE_PARTS is not None:
        return max(1, min(_FORCE_PARTS, dg))
    parts = 1
    while parts < dg and (pairs * parts) % nt and pairs * parts < 4 * nt:
        parts += 1
    return parts


def _flat(t: Tensor | None, like: Tensor) -> tuple[Any, Any]:
    """t's memory as a 1-D numpy array from its first element, and its strides in elements.

    Kernels index ``base[i0 * s0 + i1 * s1 + ...]``: the views the Mamba block passes (slices of
    time-major projections) are read in place instead of copied, and one compiled kernel serves
    every layout (numba compiles one per contiguity of each array argument). None and empty
    tensors give an empty base, which the kernels read as absent.
    """
    if t is None or t.numel() == 0:
        return like.detach().new_empty(0).numpy(), np.zeros(like.dim(), dtype=np.int64)
    t = t.detach()
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True))
    return t.as_strided((span,), (1,)).numpy(), np.array(t.stride(), dtype=np.int64)


def _dense_like(t: Tensor, lead: tuple[int, ...] = ()) -> Tensor:
    """An uninitialised dense tensor shaped ``lead + t.shape`` whose last dims keep t's stride order.

    Outputs and gradients in their input's layout keep torch's ops around the scan (softplus
    backward, the views back into time-major projections) on matching strides; mixed layouts
    made them 3-7x slower and cost copies.
    """
    order = sorted(range(t.dim()), key=lambda i: (-t.stride(i), i))
    base = t.new_empty(lead + tuple(t.shape[i] for i in order))
    k = len(lead)
    perm = list(range(k)) + [k + order.index(i) for i in range(t.dim())]
    return base.permute(perm)


def _np(t: Tensor) -> Any:
    return t.detach().numpy()


def _scan_forward(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    bias: Tensor | None, softplus: bool, save: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """out = (<C_t, h_t> + D u) * silu(z) with steps softplus(delta + bias), and h_{l-1}; for a
    backward also the chunk checkpoints and y + D u (needed with z only).

    Any strides; A (d, n), D and bias (d,) contiguous.
    """
    b, d, l = u.shape
    g, n = B.shape[1], A.shape[1]
    out = _dense_like(u)
    last = u.new_zeros(b, d, n)
    chunks = -(-l // min(_SCRATCH // n, _VEC // 4))
    ckpt = u.new_empty((b, d, chunks, n) if save else (0, 0, 0, 0))
    ysum = u.new_empty((b, d, l) if save and z is not None else (0, 0, 0))
    if b * d == 0 or l == 0:
        return out, last, ckpt, ysum
    nt = _threads()
    parts = _split(b * g, d // g, nt)
    _compile_notice(_forward_kernel, "selective-scan kernel")
    preload(u.dtype)
    _launch(_forward_kernel, *_forward_args(u, delta, A, B, C, D, z, bias, softplus, out, ysum, last, ckpt, parts, nt))
    return out, last, ckpt, ysum


def _forward_args(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, z: Tensor | None,
    bias: Tensor | None, softplus: bool, out: Tensor, ysum: Tensor, last: Tensor, ckpt: Tensor, parts: int, nt: int,
) -> tuple[Any, ...]:
    """``_forward_kernel``'s arguments; `preload` types the same ones, so it loads the very kernel calls use."""
    b, d, l = u.shape
    g = B.shape[1]
    zeros = u.new_zeros(d)
    return (*_flat(u, u), *_flat(delta, u), _np(zeros if bias is None else bias), softplus,
            *_flat(z, u), _np(zeros if D is None else D), _np(A), *_flat(B, B), *_flat(C, C), *_flat(out, u),
            _np(ysum), _np(last), _np(ckpt), b, l, g, parts, min(nt, b * g * parts))


_preload_lock = threading.Lock()
_preloaded: set[torch.dtype] = set()


def preload(dtype: torch.dtype = torch.float32) -> None:
    """Make the forward kernel for ``dtype`` ready (from numba's cache, else compiled) without running it.

    Getting it ready costs 0.5-1 s of CPU per process even from the cache, nearly all of it numba
    building its typing tables, in Python. `deblurcli.ssm.preload_in_background` runs this on
    another thread while the photo is read and the network's first convolutions run (which release
    the GIL), so a single photo need not wait for it; the first scan call then waits here only for
    what is left. Thread-safe; later calls return at once. Every argument of the kernel is a 1-D
    array, a bool or an int whatever the tensors' shapes and strides (see `_flat`), so the tiny
    tensors below give the signature every real call has.
    """
    if numba is None or dtype in _preloaded:
        return
    with _preload_lock:
        if dtype in _preloaded:
            return
        kind = torch.promote_types(dtype, torch.float32)
        u = torch.zeros(1, 1, 1, dtype=kind)
        B = torch.zeros(1, 1, 1, 1, dtype=kind)
        args = _forward_args(u, u, torch.zeros(1, 1, dtype=kind), B, B, None, None, None, True, u,
                             u.new_empty(0, 0, 0), u.new_zeros(1, 1, 1), u.new_empty(0, 0, 0, 0), 1, 1)
        _compile_notice(_forward_kernel, "selective-scan kernel")
        # the first kernel makes numba load its typing tables (which import SciPy) and start its pool
        with _without_scipy(), _keep_torch_threads():
            _forward_kernel.compile(tuple(numba.typeof(a) for a in args))
        _preloaded.add(dtype)


class _ScanFunction(torch.autograd.Function):
    """The whole of ``selective_scan_fn`` (steps, recurrence, gate) with a compiled backward."""

    @staticmethod
    def forward(
        ctx: Any, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
        z: Tensor | None, bias: Tensor | None, softplus: bool,
    ) -> tuple[Tensor, Tensor]:
        out, last, ckpt, ysum = _scan_forward(u, delta, A, B, C, D, z, bias, softplus, save=True)
        ctx.save_for_backward(u, delta, A, B, C, D, z, bias)
        ctx.inner = (ckpt, ysum, softplus)  # intermediates, not inputs or outputs: kept on ctx
        return out, last

    @staticmethod
    def backward(ctx: Any, gout: Tensor | None, glast: Tensor | None) -> tuple[Tensor | None, ...]:
        u, delta, A, B, C, D, z, bias = ctx.saved_tensors
        ckpt, ysum, softplus = ctx.inner
        b, d, l = u.shape
        g, n = B.shape[1], A.shape[1]
        gout = torch.zeros_like(u) if gout is None else gout.to(u.dtype)
        # carries dL/dh between chunks, so the kernel writes into it: never glast itself
        gstate = u.new_zeros(b, d, n) if glast is None else glast.to(u.dtype, copy=True).contiguous()
        nt = _threads()
        parts = _split(b * g, d // g, nt)
        gu, gdelta = _dense_like(u), _dense_like(delta)
        # like u, not z: in the Mamba block z and u's input are halves of one projection whose
        # gradients are concatenated next, which is fastest on alike layouts (and the kernel
        # writes u's contiguous rows faster than z's time-major ones)
        gz = _dense_like(u) if z is not None else None
        gD, gbias, gA = u.new_zeros(b, d), u.new_zeros(b, d), u.new_zeros(b, d, n)
        gB, gC = _dense_like(B, (parts,)), _dense_like(C, (parts,))
        if b * d > 0 and l > 0:
            zeros = u.new_zeros(d)
            _compile_notice(_backward_kernel, "selective-scan backward kernel")
            _launch(
                _backward_kernel, *_flat(u, u), *_flat(delta, u), _np(zeros if bias is None else bias), softplus,
                *_flat(z, u), _np(zeros if D is None else D), _np(A), *_flat(B, B), *_flat(C, C),
                *_flat(gout, u), _np(ysum), _np(ckpt), _np(gstate), *_flat(gu, u), *_flat(gdelta, u),
                *_flat(gz, u), _np(gD), _np(gbias), _np(gA), *_flat(gB, gB), *_flat(gC, gC),
                b, l, g, parts, min(nt, b * g * parts),
            )
        else:
            for t in (gu, gdelta, gz, gB, gC):
                if t is not None:
                    t.zero_()
        return (gu, gdelta, gA.sum(0), gB.sum(0) if parts > 1 else gB[0], gC.sum(0) if parts > 1 else gC[0],
                gD.sum(0) if D is not None else None, gz, gbias.sum(0) if bias is not None else None, None)


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
    dtype = torch.promote_types(u.dtype, torch.float32)  # as prepare_inputs: the kernels' precision
    u, delta = u.to(dtype), delta.to(dtype)
    b, d, l = u.shape
    n = A.shape[1]
    B, C, g = grouped_bc(u, A, B, C)
    if n > _VEC:
        raise ValueError(f"the numba scan backend supports d_state up to {_VEC}, got {n}")
    A = A.to(dtype).contiguous()
    B, C = B.to(dtype), C.to(dtype)
    D = D.to(dtype).contiguous() if D is not None else None
    z = z.to(dtype) if z is not None else None
    bias = delta_bias.to(dtype).contiguous() if delta_bias is not None else None
    inputs = (u, delta, A, B, C, D, z, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        y, last = _ScanFunction.apply(*inputs, delta_softplus)
    else:
        y, last, _, _ = _scan_forward(*inputs, delta_softplus, save=False)
    y = y.to(in_dtype)
    return (y, last) if return_last_state else y


__all__ = ["available", "preload", "selective_scan_numba"]
