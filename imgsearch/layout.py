"""The order in which a segment's rows are added to its graph: similar rows next to each other in memory.

USearch lays a graph's nodes out in the order they are added. Rows arrive in upload order, so the
neighbours of a node sit anywhere in hundreds of megabytes and each step of a search misses the caches.
Added grouped by their nearest of `CENTRES` rows sampled from the segment, a node's neighbours mostly sit
near it. On the 1M benchmark's 800k base (int8, 99 dimensions, `expansion_search` 229) one search fell from
1.25 to 0.90 ms at p50 warm and from 1.77 to 1.12 ms with the caches flushed before each query (as the
other bases' searches leave them), recall@10 against exact search went from 0.9815 to 0.9825, and the
graph built in 32 s instead of 50 (`scripts/layout_ab.py`, docs/BENCHMARKS.md). Keys stay the row
numbers: only the slots change, which the segment's slot map records (graphrows.py).
"""

from __future__ import annotations

import numpy as np

CENTRES = 512  # sampled rows the others are grouped by (4,096 was 7 % faster again, but recall fell 0.011)
MIN_ROWS = 8 * CENTRES  # a smaller graph fits the caches whatever its order
CHUNK = 65_536  # rows compared with the centres at a time (bounds the float32 copy)


def order(floats: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """The rows of `floats` (n × d, unit rows, any float dtype) grouped by their nearest of CENTRES rows
    sampled from them, each group in row order; the identity for fewer than MIN_ROWS rows."""
    n = len(floats)
    if n < MIN_ROWS:
        return np.arange(n, dtype=np.int64)
    picked = np.sort(np.random.default_rng(seed).choice(n, CENTRES, replace=False))
    centres = np.asarray(floats[picked], dtype=np.float32)
    nearest = np.empty(n, dtype=np.int32)
    for start in range(0, n, CHUNK):
        part = np.asarray(floats[start : start + CHUNK], dtype=np.float32)
        nearest[start : start + CHUNK] = np.argmax(part @ centres.T, axis=1)
    return np.argsort(nearest, kind="stable").astype(np.int64)
