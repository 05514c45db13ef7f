"""Keep freed host memory for reuse: a CPU training step allocates and frees the same large buffers
every step, and glibc's default of returning them to the kernel turns every step's first touch of
them into page faults (measured: 1D pack of 64 seeds, 75 → 120 GFLOP/s on 2 cores).
"""

from __future__ import annotations

import ctypes
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache
def keep_freed_memory() -> bool:
    """Process-wide: serve large allocations from the heap and never trim it. True if applied (glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
