"""Buffers for large segments read whole, backed by transparent huge pages where the kernel offers them.

An HNSW search visits a few hundred nodes scattered over a graph of hundreds of megabytes: with 4 KB
pages nearly every visit misses the TLB. A large object read whole (from S3, or a directory read the
way S3 is) therefore lands in an anonymous mapping advised `MADV_HUGEPAGE` (2 MB pages), not in a
bytearray. On the 800k-image base of the 1M benchmark one graph search fell from 1.80–1.85 to
1.47 ms at p50 (−20 %; `scripts/hugepages_ab.py`, alternating in one process). Linux honours the
advice when `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`; elsewhere (`never`,
macOS) the mapping keeps small pages and nothing else changes. The page cache behind a memory-mapped
file (a directory index, EFS) has no huge pages (ext4, NFS), so where the kernel grants them a mapped
segment's graphs are read into such a buffer at load (`MappedNpz.resident`); its other arrays stay
mapped.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HUGE_MIN = 8 * 2**20  # a buffer at least this large asks for huge pages (a smaller graph fits the TLB's reach)
READ_PART = 16 * 2**20  # a large file is read in pieces this size, side by side (read_file)
THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def buffer(size: int) -> bytearray | mmap.mmap:
    """A writable, zeroed buffer of `size` bytes: an anonymous mapping advised for huge pages when it is
    large and the platform knows the advice, else a bytearray."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)  # Linux only
    if size < HUGE_MIN or advice is None:
        return bytearray(size)
    mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError):  # a kernel built without transparent huge pages: small pages
        mapping.madvise(advice)
    return mapping


@functools.cache
def granted() -> bool:
    """Whether the kernel gives huge pages to a mapping advised for them (transparent huge pages in
    `always` or `madvise` mode)."""
    try:
        mode = Path(THP_MODE).read_text()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


def read_file(
    path: str, size: int, *, offset: int = 0, threads: int | None = None
) -> bytes | bytearray | mmap.mmap:
    """`size` bytes of the file from `offset` (the whole file by default), into `buffer(size)` when they are
    many (else plain bytes).

    A large read is split into `READ_PART` pieces read side by side, one thread per core by default
    (`os.preadv` releases the GIL): the first touch of memory the kernel has not used lately costs a
    fault on the host under a virtual machine (Firecracker returns free memory to the host), and those
    faults run in parallel. The 1M benchmark's index read whole after a pause (cold memory) loaded in
    0.83–1.05 s on one thread and 0.51–0.57 s on two (`scripts/hugepages_ab.py`, docs/BENCHMARKS.md).
    """
    with open(path, "rb") as handle:
        if size < HUGE_MIN:
            handle.seek(offset)
            return handle.read(size)
        out = buffer(size)
        view = memoryview(out)
        starts = range(0, size, READ_PART)
        fd = handle.fileno()

        def part(start: int) -> None:
            end, done = min(size, start + READ_PART), start
            while done < end:
                got = os.preadv(fd, [view[done:end]], offset + done)
                if not got:
                    raise OSError(f"{path}: ended after {done} of {size} bytes (changed while read?)")
                done += got

        workers = max(1, min(len(starts), threads or os.cpu_count() or 1))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read-whole") as pool:
                list(pool.map(part, starts))  # re-raises the first failure
        finally:
            view.release()
        return out
