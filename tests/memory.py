"""Peak memory of one piece of work, in one process: reset the kernel's peak RSS, work, read it back."""

from __future__ import annotations

import ctypes
import gc


def status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak() -> None:
    """Return freed heap to the system (glibc malloc_trim), then reset the kernel's peak RSS (VmHWM)
    to the current RSS, so the next peak counts only what the next input holds."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc only
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def peak_mb_since(before_kb: int) -> float:
    """MB the process's peak RSS rose above `before_kb` (VmRSS read right after reset_peak)."""
    return (status_kb("VmHWM") - before_kb) / 1024
