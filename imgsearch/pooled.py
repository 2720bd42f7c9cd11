"""Small segments searched as one: their vectors and codes side by side, so a query pays one call.

Every ingest batch is a segment of its own until compaction folds it in, so a searcher may hold dozens
of segments of a few hundred rows. Searched one by one each costs a fixed ~0.1 ms of calls; pooled,
they cost one exhaustive search over their rows together (rows map back to their own segment).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .keytable import KeyTable
from .segment import Segment

POOL_ROWS = 10_000  # exhaustively searched segments up to this size are pooled (one float32 copy)


@dataclass(frozen=True, eq=False)
class Pooled:
    """Members (position among the searcher's segments, segment) and one segment of all their rows."""

    members: tuple[tuple[int, Segment], ...]
    segment: Segment  # floats and codes of the members one after another; no keys
    positions: np.ndarray  # int64 per row: its member's position
    rows: np.ndarray  # int64 per row: its row within its member

    @functools.cached_property
    def key(self) -> tuple[tuple[int, str], ...]:
        return tuple((pos, s.name) for pos, s in self.members)


def poolable(segment: Segment) -> bool:
    return not segment.has_hnsw and segment.floats is not None and len(segment) <= POOL_ROWS


def pool(members: Sequence[tuple[int, Segment]]) -> Pooled:
    """One exhaustive segment of several small ones (all of one encoder version)."""
    segments = [s for _, s in members]
    if len({s.encoder for s in segments}) != 1:
        raise ValueError("only segments of one encoder version can be pooled")
    sizes = [len(s) for s in segments]
    return Pooled(
        members=tuple(members),
        segment=Segment(
            name="pooled:" + ",".join(s.name for s in segments),
            encoder=segments[0].encoder,
            table=KeyTable.empty(),
            floats=np.concatenate([s.floats for s in segments]).astype(np.float32),  # all ranked in one einsum pass
            codes=np.concatenate([s.codes for s in segments]),
        ),
        positions=np.repeat(np.array([pos for pos, _ in members], dtype=np.int64), sizes),
        rows=np.concatenate([np.arange(n, dtype=np.int64) for n in sizes]),
    )
