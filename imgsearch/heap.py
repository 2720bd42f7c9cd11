"""Give freed heap memory back to the operating system after a large load (glibc's `malloc_trim`).

Loading a large segment allocates and frees tens of megabytes of scratch arrays (sorting ids,
concatenating columns). glibc keeps memory freed in the middle of its heap for reuse, so a query
function's resident memory stays that much above what it holds until something reuses it. One
`malloc_trim(0)` after such a load returns those pages; it costs a few milliseconds, so the searcher
calls it only when a refresh loaded at least `TRIM_AFTER_BYTES`. Elsewhere (macOS, musl) it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

TRIM_AFTER_BYTES = 64 * 2**20  # a refresh that read at least this much trims the heap afterwards


@functools.cache
def _malloc_trim() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def trim() -> bool:
    """Return freed heap pages to the OS; True if the C library could (glibc)."""
    function = _malloc_trim()
    if function is None:
        return False
    function(0)
    return True
