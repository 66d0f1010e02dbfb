"""Hand freed heap memory back to the OS (glibc ``malloc_trim``), so the resident size tracks what is in use.

Training and eval allocate and free tensors of many sizes every step. glibc keeps freed blocks in its
arenas for reuse, and as its mmap threshold adapts upwards most large tensors come from those arenas: the
resident size then grows with fragmentation long after the memory is free (docs/training.md, "Memory").
``malloc_trim(0)`` returns the free pages of every arena; it takes milliseconds, so it runs once per
optimiser step and after each eval generation call, not per token.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

DISABLE_ENV = "SRL_RLVR_NO_MALLOC_TRIM"  # set to 1 to measure without it


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "malloc_trim") else None  # musl and macOS have none
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return free heap pages to the OS; False where the C library has no ``malloc_trim`` (or it is disabled)."""
    if os.environ.get(DISABLE_ENV) == "1":
        return False
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
