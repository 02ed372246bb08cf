"""The selective scan every model runs on, behind one dispatch function.

Backends (``backend=`` or the process-wide default from :func:`set_backend` /
``DEBLUR_SCAN_BACKEND``):

- ``reference``: sequential loop; the ground truth for tests.
- ``torch``: chunked pure PyTorch; runs anywhere, differentiable.
- ``numba``: compiled CPU kernel with its own backward; the CPU default when numba imports.
- ``triton``: our Triton kernel for CUDA GPUs without mamba-ssm.
- ``cuda``: mamba-ssm's fused kernel (installed separately), picked on GPUs when a test call of
  it succeeds (a mamba-ssm installed without its compiled extension still imports).

``auto`` picks the fastest one that can run the given tensors.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .notice import set_notice
from .reference import selective_scan_reference
from .torch_scan import selective_scan_torch

BACKENDS: tuple[str, ...] = ("reference", "torch", "numba", "triton", "cuda")

# backend -> (module, function name); imported lazily so an optional dependency that is missing or
# broken only removes that backend.
_LAZY = {
    "numba": ("deblurcli.ssm.numba_scan", "selective_scan_numba"),
    "triton": ("deblurcli.ssm.triton_scan", "selective_scan_triton"),
    "cuda": ("deblurcli.ssm.cuda", "selective_scan_cuda"),
}
_default = os.environ.get("DEBLUR_SCAN_BACKEND", "auto")
_cache: dict[str, Callable[..., Any] | None] = {}


def _load(name: str) -> Callable[..., Any] | None:
    if name == "reference":
        return selective_scan_reference
    if name == "torch":
        return selective_scan_torch
    if name not in _cache:
        modname, fn = _LAZY[name]
        try:
            mod = importlib.import_module(modname)
            _cache[name] = getattr(mod, fn) if mod.available() else None
        except Exception:
            _cache[name] = None
    return _cache[name]


def available_backends() -> list[str]:
    """The backends that can run in this process (on some device)."""
    return [name for name in BACKENDS if _load(name) is not None]


def set_backend(name: str) -> None:
    """Set the process-wide default backend (``auto`` restores automatic choice)."""
    global _default
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown scan backend {name!r}: choose auto, {', '.join(BACKENDS)}")
    _default = name


def get_backend() -> str:
    return _default


def resolve_backend(backend: str, u: Tensor) -> str:
    """The concrete backend ``backend`` means for tensors like ``u``."""
    if backend == "auto":
        backend = _default
    if backend != "auto":
        if backend not in BACKENDS:
            raise ValueError(f"unknown scan backend {backend!r}: choose auto, {', '.join(BACKENDS)}")
        if _load(backend) is None:
            raise RuntimeError(f"scan backend {backend!r} is not available in this environment")
        return backend
    if u.is_cuda:
        # mamba-ssm's kernel has no float64; triton and torch compute it.
        for name in ("cuda", "triton") if u.dtype != torch.float64 else ("triton",):
            if _load(name) is not None:
                return name
        return "torch"
    if u.device.type == "cpu" and _load("numba") is not None:
        return "numba"
    return "torch"


def preload_in_background(backend: str = "auto", dtype: torch.dtype = torch.float32) -> threading.Thread | None:
    """Start getting the CPU scan kernel ready on another thread; returns that thread, or None.

    Importing numba and loading its compiled kernel from the cache costs about a second of CPU,
    almost all of it single-threaded Python. Run in line it adds to every single photo; started when
    a model is being set up for the CPU, it overlaps with loading the weights, decoding the photo
    and the network's first convolutions (whose C++ code releases the GIL), and the first scan call
    waits only for what is left (`numba_scan.preload` takes a lock). It does nothing when
    ``backend`` (``auto`` meaning the process default) would not run the numba kernel on CPU
    tensors. Errors are left for the real call to report.
    """
    if backend not in ("auto", "numba") or (backend == "auto" and _default not in ("auto", "numba")):
        return None

    def work() -> None:
        try:
            if resolve_backend(backend, torch.empty(0, dtype=dtype)) == "numba":
                importlib.import_module("deblurcli.ssm.numba_scan").preload(dtype)
        except Exception:  # the scan call itself says what is wrong, with its context
            pass

    thread = threading.Thread(target=work, name="deblurcli-scan-preload", daemon=True)
    thread.start()
    return thread


def selective_scan(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
    D: Tensor | None = None, z: Tensor | None = None, delta_bias: Tensor | None = None,
    delta_softplus: bool = False, return_last_state: bool = False, backend: str = "auto",
) -> Tensor | tuple[Tensor, Tensor]:
    """mamba-ssm's ``selective_scan_fn``: same arguments, shapes and results.

    u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l) or grouped (b, g, n, l); D, delta_bias: (d,).
    Returns y (b, d, l) in u's dtype, and the last state (b, d, n) when asked.
    """
    fn = _load(resolve_backend(backend, u))
    assert fn is not None
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


__all__ = [
    "BACKENDS", "available_backends", "get_backend", "preload_in_background", "resolve_backend", "selective_scan",
    "selective_scan_reference", "selective_scan_torch", "set_backend", "set_notice",
]
