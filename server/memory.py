"""Keeps large freed blocks in the heap, so the next request reuses warm pages instead of faulting new ones.

glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh ``mmap`` pages and
unmaps them on free: every 16 MiB tensor, request buffer or reply then costs thousands of page
faults (measured here: about as long as the loss itself). Raising the threshold and the trim
threshold keeps such blocks for reuse. One arena for all threads lets a block freed by the event
loop serve the compute threads (per-thread arenas each kept their own copy: peak RSS for one
16 MiB request fell from 4.0x to 3.0-3.5x of the request). The price, RSS staying near its
high-water mark, is paid only while busy: once the server has been idle a moment, the free memory is
trimmed back (:func:`trim_heap`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("lossd.server")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def retain_heap(max_block_bytes: int) -> bool:
    """Serve blocks up to ``max_block_bytes`` from the heap and keep freed memory; False off glibc."""
    name = ctypes.util.find_library("c")
    if not name or max_block_bytes <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): leave the allocator alone
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    limit = min(max_block_bytes, 2**31 - 1)
    ok = all(mallopt(option, value) for option, value in (
        (_M_MMAP_THRESHOLD, limit), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_ARENA_MAX, 1)))
    if not ok:
        log.warning("could not tune malloc; large requests will fault fresh pages")
    return ok


def trim_heap() -> bool:
    """Give the heap's free memory back to the system (glibc malloc_trim); False off glibc."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True
