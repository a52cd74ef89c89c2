"""glibc's memory allocator, tuned for a long-running studio (no-ops elsewhere than glibc).

- :func:`limit_malloc_arenas`: busy threads get malloc arenas of their own (up to 8 per core); under
  many server threads they fragment, and the studio's memory grew 26% over 104 generations against
  10% with two arenas (``benchmarks/bench_load.py``).
- :func:`trim_free_memory`: glibc keeps the pages of freed small objects for reuse; ``malloc_trim``
  hands them back, so the resident size follows what the studio really holds (its bounded runs and
  sessions) rather than its past peaks.
"""
from __future__ import annotations

import ctypes
import math
import os
import threading
import time

_libc = None
_trim_lock = threading.Lock()
_last_trim = -math.inf


def _glibc():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim  # noqa: B018  (glibc has it; musl's libc.so.6 does not exist)
        except (OSError, AttributeError):
            _libc = False
    return _libc


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (what ``MALLOC_ARENA_MAX=2`` does, set from inside the process). Must
    run before the server's threads start. An explicit ``MALLOC_ARENA_MAX`` wins. Returns whether the
    cap was set."""
    libc = _glibc()
    if "MALLOC_ARENA_MAX" in os.environ or not libc:
        return False
    return libc.mallopt(-8, arenas) == 1   # -8: M_ARENA_MAX (malloc.h)


def trim_free_memory(min_interval: float = 5.0) -> bool:
    """Give freed heap memory back to the system (glibc's ``malloc_trim(0)``), at most once every
    ``min_interval`` seconds (a trim walks the heap: about a millisecond per 100 MB). Returns whether
    it ran."""
    global _last_trim
    libc = _glibc()
    if not libc:
        return False
    with _trim_lock:
        now = time.monotonic()
        if now - _last_trim < min_interval:
            return False
        _last_trim = now
    libc.malloc_trim(0)
    return True
