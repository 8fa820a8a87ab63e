"""Giving freed heap memory back to the operating system.

glibc keeps memory that Python and the libraries free in its arenas, so a server's resident size
drifts up with every burst of traffic even when nothing leaks. ``malloc_trim(0)`` returns the
free pages of every arena; the service calls it from a background task every
``memory_trim_s`` seconds. Other C libraries (musl, macOS) have no such call and are left alone.
"""

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

import anyio.to_thread

logger = logging.getLogger("app.memory")


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc's
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


async def trim_periodically(every_s: float) -> None:
    """Run ``malloc_trim(0)`` every ``every_s`` seconds, off the event loop, until cancelled."""
    trim = _malloc_trim()
    if trim is None:
        logger.info("this C library has no malloc_trim; freed memory stays with the allocator")
        return
    while True:
        await asyncio.sleep(every_s)
        await anyio.to_thread.run_sync(trim)
