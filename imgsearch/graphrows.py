"""An int8 graph's vectors read from its saved bytes by row, without USearch's key lookup table.

A segment's int8 HNSW graph holds the only copy of its float vectors. Restored as a view, USearch
builds a hash table from key (our row number) to slot for `get`: about 50 bytes an image in memory,
more than the codes and key table together. The saved graph starts with its vectors as one matrix in
slot order (two uint32, rows and bytes a row, then the rows), and the slot a row landed in depends on
the threads that built it, so a segment stores the map `slots[row]` (4 bytes an image) when it is
written. A reader restores the graph with `enable_key_lookups=False` and reads rows as
`matrix[slots[rows]]`: one vectorised gather, no lookups.

The map is found by matching each row's vector (from the in-memory graph, which still has its
lookups) with the saved matrix by a 64-bit hash of the bytes, then checked byte for byte; rows with
identical vectors may swap slots, which reads the same bytes. If the saved layout is not the one
described above (another USearch version) or the check fails, no map is stored and the segment is
read the old way.
"""

from __future__ import annotations

import numpy as np

import imgsearch._onnx_first  # noqa: F401  # isort: skip  # onnxruntime before usearch (it segfaults otherwise)
from usearch.index import Index

HEADER = np.dtype("<u4")  # the matrix's rows and bytes a row, before its data
CHUNK = 65_536  # rows fetched from the graph at a time while mapping


def matrix(buffer: bytes | memoryview, rows: int, width: int) -> np.ndarray | None:
    """The saved graph's vectors, (rows, width) int8 in slot order, as a view; None if laid out otherwise."""
    if len(buffer) < 2 * HEADER.itemsize + rows * width:
        return None
    head = np.frombuffer(buffer, HEADER, count=2)
    if (int(head[0]), int(head[1])) != (rows, width):
        return None
    return np.frombuffer(buffer, np.int8, count=rows * width, offset=2 * HEADER.itemsize).reshape(rows, width)


def _hashes(vectors: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes (vectorised; uint64 arithmetic wraps)."""
    width = vectors.shape[1]
    padded = np.zeros((len(vectors), -(-width // 8) * 8), np.uint8)
    padded[:, :width] = vectors.view(np.uint8)
    words = padded.view(np.uint64)
    mixers = np.random.default_rng(0x5EED).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
    h = (words * mixers).sum(axis=1, dtype=np.uint64)
    h ^= h >> np.uint64(31)
    return h * np.uint64(0x9E3779B97F4A7C15)


def _rows_of(graph: Index, rows: np.ndarray, width: int) -> np.ndarray:
    out = np.empty((len(rows), width), np.int8)
    for start in range(0, len(rows), CHUNK):
        part = rows[start : start + CHUNK].astype(np.uint64)
        found = graph._compiled.get_many(part, graph.dtype)
        data = [v.data for v in found if v is not None]
        if len(data) != len(part):
            raise IndexError("a row is missing from the graph")
        out[start : start + len(part)] = np.frombuffer(b"".join(data), np.int8).reshape(len(part), width)
    return out


def slots(graph: Index, saved: bytes | memoryview) -> np.ndarray | None:
    """`slots[row]`: where row's vector lies in the saved matrix (uint32), or None if it cannot be mapped."""
    count, width = len(graph), int(graph.ndim)
    saved_rows = matrix(saved, count, width)
    if saved_rows is None or count >= 2**32:
        return None
    try:
        ours = _rows_of(graph, np.arange(count), width)
    except IndexError:
        return None
    by_slot, by_row = np.argsort(_hashes(saved_rows), kind="stable"), np.argsort(_hashes(ours), kind="stable")
    found = np.empty(count, np.uint32)
    found[by_row] = by_slot
    for start in range(0, count, CHUNK):  # byte for byte: a hash collision would put a row in a wrong slot
        if not np.array_equal(saved_rows[found[start : start + CHUNK]], ours[start : start + CHUNK]):
            return None
    return found
