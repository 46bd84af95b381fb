"""Handing the C heap's free memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).

After a large allocation is freed (an arena that grew for a burst, a large request body), glibc keeps the free
pages in the process: its resident memory stays up, though nothing uses it. :func:`trim_heap` returns them.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

__all__ = ["trim_heap"]


def trim_heap() -> None:
    """Return the C heap's free memory to the system, where the C library can (glibc); else nothing."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):
        return None
