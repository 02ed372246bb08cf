"""Adapter to mamba-ssm's fused CUDA kernel (``selective_scan_fn``), used when it really runs.

Facts about that kernel (mamba-ssm's ``selective_scan_interface.py`` and ``selective_scan.cpp``)
that this adapter exists to respect:

- Since mamba-ssm 2.3.x (its #977, July 2026) a plain ``pip install mamba-ssm`` builds without the compiled
  ``selective_scan_cuda``; the package still imports and ``selective_scan_fn`` raises only when
  called. So importing is no proof: :func:`available` runs one tiny scan (and checks it against
  the reference) before the dispatcher may pick this backend, once per process.
- The C++ entry point checks types rather than converting them: u in float32/float16/bfloat16;
  delta, variable B/C and z in u's type; A float32; D and delta_bias float32; every tensor on
  CUDA; state size <= 256. We cast and lay out every argument as it wants, computing in the
  widest of the input types so that nothing is rounded down (the kernel accumulates in float32
  whatever the storage type). Float64 has no kernel: it is refused with the backends that do it.
- ``selective_scan_fn``'s backward ignores the gradient of the returned last state (its own
  docstring says so). Our dispatcher promises the reference's semantics, so when the last
  state is asked for under autograd it is computed by our differentiable Triton (or torch)
  scan instead, which costs one more scan but gives the true gradient.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import Tensor

from .reference import grouped_bc, selective_scan_reference

#: Device type the kernel runs on; tests that stand a fake mamba-ssm in for the real one on a
#: CPU-only machine set this to "cpu".
_DEVICE_TYPE = "cuda"
_INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_STATE = 256


@cache
def _kernel() -> Any | None:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a CUDA/ABI error raised while loading the package
        return None
    return selective_scan_fn


@cache
def probe() -> str | None:
    """None when mamba-ssm's kernel runs and agrees with the reference here, else the reason.

    One call on tensors of 1x2x4x8 on the current device: it catches a package installed
    without its extension, an extension built for other GPUs or another torch, and a kernel that
    returns garbage. Cached: the answer does not change within a process.
    """
    fn = _kernel()
    if fn is None:
        return "mamba-ssm is not installed (or fails to import)"
    if _DEVICE_TYPE == "cuda" and not torch.cuda.is_available():
        return "no CUDA device"
    try:
        g = torch.Generator().manual_seed(0)
        u, delta = torch.randn(1, 2, 8, generator=g), torch.rand(1, 2, 8, generator=g)
        A = -torch.rand(2, 4, generator=g) - 0.5
        B, C = torch.randn(1, 4, 8, generator=g), torch.randn(1, 4, 8, generator=g)
        want = selective_scan_reference(u, delta, A, B, C, delta_softplus=True)
        with torch.no_grad():
            got = selective_scan_cuda(*(t.to(_DEVICE_TYPE) for t in (u, delta, A, B, C)), delta_softplus=True)
        got = got.cpu()
    except Exception as exc:  # RuntimeError from the missing extension, a CUDA error, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"mamba-ssm's kernel failed a test call: {first}"
    if not torch.allclose(got, want, atol=1e-4, rtol=1e-3):
        return "mamba-ssm's kernel gave wrong results on a test call"
    return None


def available() -> bool:
    return probe() is None


def _check_devices(tensors: dict[str, Tensor | None]) -> None:
    u = tensors["u"]
    assert u is not None
    for name, t in tensors.items():
        if t is None:
            continue
        if t.device.type != _DEVICE_TYPE:
            raise ValueError(
                f"the cuda scan backend (mamba-ssm) needs CUDA tensors, but {name} is on {t.device}; "
                "move every input to the GPU, or use backend='auto'"
            )
        if t.device != u.device:
            raise ValueError(f"scan inputs on different devices: u is on {u.device}, {name} on {t.device}")


def _input_dtype(tensors: dict[str, Tensor | None]) -> torch.dtype:
    """The storage type for u, delta, B, C, z: the widest of theirs, so nothing is rounded down."""
    dtype = tensors["u"].dtype  # type: ignore[union-attr]
    for t in tensors.values():
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    if dtype not in _INPUT_DTYPES:
        raise ValueError(
            f"mamba-ssm's scan kernel runs float32, float16 and bfloat16, not {dtype}; "
            "use backend='triton' or 'torch' for other types"
        )
    return dtype


def selective_scan_cuda(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
    delta_softplus: bool = False, return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's ``selective_scan_fn`` with every argument cast and laid out as its kernel checks.

    y comes back in u's dtype and the last state in float32, as from the other backends.
    """
    fn = _kernel()
    if fn is None:
        raise RuntimeError("mamba-ssm is not installed: see the README's GPU section")
    _check_devices({"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias})
    in_dtype = u.dtype
    io = _input_dtype({"u": u, "delta": delta, "B": B, "C": C, "z": z})
    Bg, Cg, _ = grouped_bc(u, A, B, C)
    n = A.shape[1]
    if n > _MAX_STATE:
        raise ValueError(f"mamba-ssm's scan kernel supports d_state up to {_MAX_STATE}, got {n}")

    def prep(t: Tensor, dtype: torch.dtype) -> Tensor:
        return t.to(dtype).contiguous()

    out = fn(
        prep(u, io), prep(delta, io), prep(A, torch.float32), prep(Bg, io), prep(Cg, io),
        None if D is None else prep(D, torch.float32), None if z is None else prep(z, io),
        None if delta_bias is None else prep(delta_bias, torch.float32), delta_softplus, return_last_state,
    )
    if not return_last_state:
        return out.to(in_dtype)
    y, last = out
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        # The kernel's backward drops dL/d(last state): take the state from a scan that keeps it.
        last = _differentiable_last_state(u, delta, A, B, C, delta_bias, delta_softplus)
    return y.to(in_dtype), last.float()


def _differentiable_last_state(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                               delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    from . import triton_scan

    if triton_scan.available():
        _, last = triton_scan.selective_scan_triton(u, delta, A, B, C, None, None, delta_bias, delta_softplus, True)
    else:
        from .torch_scan import selective_scan_torch

        _, last = selective_scan_torch(u, delta, A, B, C, None, None, delta_bias, delta_softplus, True)
    return last


__all__ = ["available", "probe", "selective_scan_cuda"]
