"""Keep freed memory in the process, so large CPU arrays are not faulted in afresh on every step.

glibc's malloc serves each allocation above its mmap threshold (128 kB to 32 MB, adjusted as it
goes) with a fresh ``mmap`` and returns it to the system on ``free``. The deconvolution engine
allocates full-photo spectra and images at every one of its steps, so on a 12 MP photo the kernel
zeroed and mapped 4.6 million pages: 22 of 64 CPU seconds were system time, and the whole
`restore_rgb` took 40.8 s on 2 threads. With large blocks kept on the heap and freed memory kept
for reuse, the same call took 29.3 s (2.8 s of system time, 0.35 million faults) for 140 MB more
peak memory (2.40 against 2.27 GB): the peak was reached anyway, only no longer handed back
between steps.

This is process-wide, so it is done where deblurcli owns the process's work (`Deblurrer`, the
benchmarks), never on import. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap; a larger one is a photo-sized buffer beyond any we make.
_MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap is given back only above this much (mallopt takes a C int).
_TRIM_THRESHOLD = (1 << 31) - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process; whether it was done."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
