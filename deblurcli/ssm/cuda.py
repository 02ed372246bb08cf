"""Adapter to mamba-ssm's fused CUDA kernel, an optional extra (``deblurcli[cuda]``).

Importing mamba-ssm is attempted once and lazily: it only builds where CUDA is, and a broken
install must degrade to our own backends rather than break ``import deblurcli``.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _kernel() -> Any | None:
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a CUDA/ABI error raised while loading the extension
        return None
    return selective_scan_fn


def available() -> bool:
    return _kernel() is not None


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None,
                        delta_softplus=False, return_last_state=False):
    fn = _kernel()
    if fn is None:
        raise RuntimeError("mamba-ssm is not installed: pip install 'deblurcli[cuda]'")
    # The fused kernel wants contiguous inputs and float32 D / delta_bias.
    return fn(
        u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(), C.contiguous(),
        None if D is None else D.float(), None if z is None else z.contiguous(),
        None if delta_bias is None else delta_bias.float(), delta_softplus, return_last_state,
    )
