"""Near-duplicates: images whose binary codes lie within a Hamming radius of each other.

`find_pairs(searcher, radius=...)` lists the pairs of live images whose codes are within the radius:
each image's nearest neighbours by cosine (`CANDIDATES` of them, through the float graphs) are its
candidates, and a candidate within `radius` of it is a near-copy. `find_duplicates` turns the pairs
into groups around the images with most near-copies (not transitively). Search results can be collapsed the same way
(`collapse=true`: the Searcher keeps the best of each set of near-copies).

The default radius was measured on Corel-1k with re-encoded, resized and cropped copies
(scripts/duplicates_bench.py, docs/BENCHMARKS.md "Duplicates").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .encode import hamming, radius_bits
from .options import DUPLICATE_RADIUS
from .search import Searcher

CANDIDATES = 16  # nearest neighbours by cosine checked per image
BATCH = 256  # images searched at once


@dataclass(frozen=True)
class Pair:
    """Two images whose codes differ by `bits` (at most the radius); a < b."""

    a: str
    b: str
    bits: int


@dataclass(frozen=True)
class Group:
    """Near-copies: the image that started the group, then the others (sorted), and the largest distance,
    in bits, from the first to another."""

    keys: tuple[str, ...]
    max_bits: int


def _live_rows(searcher: Searcher, prefix: str | None) -> Iterator[tuple[int, np.ndarray]]:
    """Batches of each segment's live rows (whose key starts with `prefix`): (segment position, rows)."""
    for pos, live in enumerate(searcher.live.segments):
        wanted = live.alive & live.segment.table.keys.startswith(prefix) if prefix else live.alive
        rows = np.flatnonzero(wanted)
        for start in range(0, len(rows), BATCH):
            yield pos, rows[start : start + BATCH]


def find_pairs(
    searcher: Searcher,
    *,
    radius: float = DUPLICATE_RADIUS,
    prefix: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Pair]:
    """Every pair of live images whose codes are within `radius` (each pair once, closest first)."""
    searcher.refresh(force=True)
    found: dict[tuple[str, str], int] = {}
    for pos, rows in _live_rows(searcher, prefix):
        segment = searcher.live.segments[pos].segment
        limit = radius_bits(radius, segment.codes.shape[1] * 8)
        codes = segment.codes[rows]
        ranked = searcher.ranked_stored(
            segment.encoder, segment.vectors(rows), codes, k=CANDIDATES + 1, metric="cosine", prefix=prefix
        )
        for q, (row, (_, positions, others)) in enumerate(zip(rows.tolist(), ranked, strict=True)):
            key = segment.table.keys[row]
            for other_pos, other_row in zip(positions.tolist(), others.tolist(), strict=True):
                other = searcher.live.segments[other_pos].segment
                if (other_pos, other_row) == (pos, row) or other.encoder != segment.encoder:
                    continue
                bits = int(hamming(codes[q], other.codes[other_row]))
                if bits <= limit:
                    pair = tuple(sorted((key, other.table.keys[other_row])))
                    found[pair] = min(found.get(pair, bits), bits)
        if progress:
            progress(len(rows))
    return sorted((Pair(a, b, bits) for (a, b), bits in found.items()), key=lambda p: (p.bits, p.a, p.b))


def find_duplicates(
    searcher: Searcher,
    *,
    radius: float = DUPLICATE_RADIUS,
    prefix: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Group]:
    """Groups of near-copies, largest first. Not transitive (a chain of small differences can join two
    unlike images): the image with most near-copies not yet grouped starts a group of itself and those
    of its near-copies not yet grouped, and so on."""
    pairs = find_pairs(searcher, radius=radius, prefix=prefix, progress=progress)
    near: dict[str, dict[str, int]] = {}
    for pair in pairs:
        near.setdefault(pair.a, {})[pair.b] = pair.bits
        near.setdefault(pair.b, {})[pair.a] = pair.bits
    grouped: set[str] = set()
    groups = []
    for seed in sorted(near, key=lambda k: (-len(near[k]), k)):
        if seed in grouped:
            continue
        members = [other for other in near[seed] if other not in grouped]
        if not members:
            continue
        grouped.update([seed, *members])
        groups.append(Group(keys=(seed, *sorted(members)), max_bits=max(near[seed][m] for m in members)))
    groups.sort(key=lambda g: (-len(g.keys), g.keys))
    return groups
