"""Buffers for large segments read whole, backed by transparent huge pages where the kernel offers them.

An HNSW search visits a few hundred nodes scattered over a graph of hundreds of megabytes: with 4 KB
pages nearly every visit misses the TLB. A large object read whole (from S3, or a directory read the
way S3 is) therefore lands in an anonymous mapping advised `MADV_HUGEPAGE` (2 MB pages), not in a
bytearray. On the 800k-image base of the 1M benchmark one graph search fell from 1.80–1.85 to
1.47 ms at p50 (−20 %; `scripts/hugepages_ab.py`, alternating in one process). Linux honours the
advice when `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`; elsewhere (`never`,
macOS) the mapping keeps small pages and nothing else changes. Memory-mapped files (a directory index,
EFS) keep the page cache's small pages: ext4 and NFS have no huge pages for it.
"""

from __future__ import annotations

import contextlib
import mmap
import sys

HUGE_MIN = 8 * 2**20  # a buffer at least this large asks for huge pages (a smaller graph fits the TLB's reach)


def buffer(size: int) -> bytearray | mmap.mmap:
    """A writable, zeroed buffer of `size` bytes: an anonymous mapping advised for huge pages when it is
    large and the platform knows the advice, else a bytearray."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if size < HUGE_MIN or advice is None or not sys.platform.startswith("linux"):
        return bytearray(size)
    mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError):  # a kernel built without transparent huge pages: small pages
        mapping.madvise(advice)
    return mapping


def read_file(path: str, size: int) -> bytes | bytearray | mmap.mmap:
    """The whole file, into `buffer(size)` when it is large (else plain bytes)."""
    with open(path, "rb") as handle:
        if size < HUGE_MIN:
            return handle.read()
        out = buffer(size)
        view, done = memoryview(out), 0
        while done < size:
            got = handle.readinto(view[done:])
            if not got:
                raise OSError(f"{path}: ended after {done} of {size} bytes (changed while read?)")
            done += got
        view.release()
        return out
