"""Facts about this machine's processor that choose how a model runs.

Why one module: training picks bf16 autocast from them (`train.loop`), ``deblur doctor`` reports
them with the advice they imply, and a later default (say, inference precision) must read the same
answer, not a second guess.
"""

from __future__ import annotations

import torch

__all__ = ["cpu_has_native_bf16"]


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPUs where bf16 is faster than float32, not slower (emulated)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)  # private torch probes: absent in some versions
        try:
            if fn is not None and fn():
                return True
        except Exception:
            continue
    return False
