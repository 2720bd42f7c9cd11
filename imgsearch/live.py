"""Which rows of the loaded segments are live, kept up to date at the cost of what changed.

A reader holds the segments of the manifest in order. `LiveSet.rebuild` resolves them all at once
(resolve.live_masks, vectorised); `LiveSet.append` absorbs one new segment (an ingest batch) by
looking up only the objects that segment names, so a refresh after a small append costs the size of
the append, not a pass over the index.

Live objects are kept by id in two sorted tables, LSM-style: a main one, where a delete leaves a hole
(no array is shifted), and a small recent one that takes new objects. The recent table is merged into
the main one when it passes 1/16 of it, so the O(N) move is paid once per N/16 new objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .keytable import KeyTable
from .resolve import live_masks, newest_per_id, tombstone_table
from .segment import Segment


@dataclass
class Live:
    segment: Segment
    alive: np.ndarray  # bool per row (the reader's own copy)
    dead: int  # rows not alive


MERGE_FRACTION = 1 / 16  # the recent table is merged into the main one past this share of it
MERGE_MIN = 4096  # … and never below this many ids


class LiveSet:
    """Segments in manifest order, their live rows, and every live object by id (sorted arrays)."""

    def __init__(self) -> None:
        self.segments: list[Live] = []
        self._ids = np.zeros(0, np.uint64)  # main table: sorted unique ids
        self._where = np.zeros((0, 2), np.int64)  # (segment position, row) of each; (-1, -1) a hole
        self._holes = 0
        self._new_ids = np.zeros(0, np.uint64)  # recent table: sorted unique ids, no holes
        self._new_where = np.zeros((0, 2), np.int64)
        self.dead_ids = np.zeros(0, np.uint64)  # sorted ids of deleted objects
        self.dead_orders = np.zeros(0, "S32")  # newest delete sequencer of each

    def __len__(self) -> int:
        return len(self._ids) - self._holes + len(self._new_ids)

    @property
    def ids(self) -> np.ndarray:
        """Sorted ids of the live objects (a merged copy: for reports and tests, not the query path)."""
        return self._merged()[0]

    @property
    def where(self) -> np.ndarray:
        """(segment position, row) of each of `ids`."""
        return self._merged()[1]

    @property
    def nbytes(self) -> int:
        return int(self._ids.nbytes + self._where.nbytes + self._new_ids.nbytes + self._new_where.nbytes)

    def _merged(self) -> tuple[np.ndarray, np.ndarray]:
        keep = self._where[:, 0] >= 0
        ids = np.concatenate([self._ids[keep], self._new_ids])
        where = np.concatenate([self._where[keep], self._new_where])
        order = np.argsort(ids, kind="stable")
        return ids[order], where[order]

    def _merge(self) -> None:
        self._ids, self._where = self._merged()
        self._holes = 0
        self._new_ids, self._new_where = self._new_ids[:0], self._new_where[:0]

    def _find(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For each id: in the main table? its slot there; in the recent table? its slot there."""
        main = np.searchsorted(self._ids, ids)
        in_main = main < len(self._ids)
        in_main[in_main] = self._ids[main[in_main]] == ids[in_main]
        recent = np.searchsorted(self._new_ids, ids)
        in_recent = recent < len(self._new_ids)
        in_recent[in_recent] = self._new_ids[recent[in_recent]] == ids[in_recent]
        return in_main, main, in_recent, recent

    @property
    def names(self) -> list[str]:
        return [live.segment.name for live in self.segments]

    # --- building ---------------------------------------------------------------------------------

    def rebuild(self, segments: list[Segment]) -> None:
        masks = live_masks(segments)
        self.segments = [Live(s, m, int((~m).sum())) for s, m in zip(segments, masks, strict=True)]
        rows = [np.flatnonzero(m) for m in masks]
        ids = np.concatenate([s.ids[r] for s, r in zip(segments, rows, strict=True)] or [self.ids[:0]])
        where = np.concatenate(
            [np.stack([np.full(len(r), pos), r], axis=1) for pos, r in enumerate(rows)] or [self.where[:0]]
        )
        order = np.argsort(ids, kind="stable")
        self._ids, self._where, self._holes = ids[order], where[order], 0
        self._new_ids, self._new_where = self._ids[:0], self._where[:0]
        self.dead_ids, self.dead_orders = tombstone_table(KeyTable.concat([s.dead for s in segments]))

    def append(self, segment: Segment) -> None:
        """Absorb a segment listed after every loaded one (it wins ties: it is later in the manifest)."""
        pos = len(self.segments)
        (alive,) = live_masks([segment])  # within the segment: duplicates, its own deletes
        rows = np.flatnonzero(alive)
        ids, orders = segment.ids[rows], segment.orders[rows]
        in_main, main, in_recent, recent = self._find(ids)
        in_main_live = in_main.copy()
        in_main_live[in_main] = self._where[main[in_main], 0] >= 0
        # Objects already live: the newer version wins (this segment on equal sequencers).
        for present, table, slots in ((in_main_live, self._where, main), (in_recent, self._new_where, recent)):
            if present.any():
                older = self._orders(table[slots[present]])
                wins = orders[present] >= older
                self._kill(table[slots[present][wins]])
                table[slots[present][wins]] = np.stack([np.full(int(wins.sum()), pos), rows[present][wins]], 1)
                alive[rows[present][~wins]] = False
        # New objects (or ones whose entry was deleted): live unless an earlier delete is at least as new.
        new = ~(in_main_live | in_recent)
        hidden = self._deleted(ids[new], orders[new])
        alive[rows[new][hidden]] = False
        fresh = new.copy()
        fresh[new] = ~hidden
        revive = fresh & in_main  # a hole of the main table: filled in place
        self._where[main[revive]] = np.stack([np.full(int(revive.sum()), pos), rows[revive]], 1)
        self._holes -= int(revive.sum())
        added = fresh & ~in_main
        order = np.argsort(ids[added], kind="stable")
        at = np.searchsorted(self._new_ids, ids[added])
        self._new_ids = np.insert(self._new_ids, at[order], ids[added][order])
        placed = np.stack([np.full(int(added.sum()), pos), rows[added]], 1)[order]
        self._new_where = np.insert(self._new_where, at[order], placed, axis=0)
        self.segments.append(Live(segment, alive, int((~alive).sum())))
        self._apply_tombstones(segment.dead)
        if len(self._new_ids) > max(MERGE_MIN, len(self._ids) * MERGE_FRACTION):
            self._merge()

    def _apply_tombstones(self, dead: KeyTable) -> None:
        if not len(dead):
            return
        rows = newest_per_id(dead)
        ids, orders = dead.ids[rows], dead.orders[rows]
        in_main, main, in_recent, recent = self._find(ids)
        in_main[in_main] = self._where[main[in_main], 0] >= 0  # a hole is no live entry
        if in_main.any():
            hit = main[in_main]
            gone = hit[orders[in_main] >= self._orders(self._where[hit])]
            self._kill(self._where[gone])
            self._where[gone] = -1
            self._holes += len(gone)
        if in_recent.any():
            hit = recent[in_recent]
            gone = hit[orders[in_recent] >= self._orders(self._new_where[hit])]
            self._kill(self._new_where[gone])
            self._new_ids, self._new_where = np.delete(self._new_ids, gone), np.delete(self._new_where, gone, axis=0)
        # Remember the newest delete of each id (a stale upload arriving later must stay hidden).
        merged = np.concatenate([self.dead_ids, ids]), np.concatenate([self.dead_orders, orders])
        order = np.lexsort((merged[1], merged[0]))
        last = np.ones(len(order), bool)
        last[:-1] = merged[0][order][1:] != merged[0][order][:-1]
        self.dead_ids, self.dead_orders = merged[0][order][last], merged[1][order][last]

    # --- helpers ------------------------------------------------------------------------------------

    def _orders(self, where: np.ndarray) -> np.ndarray:
        out = np.empty(len(where), "S32")
        for pos in np.unique(where[:, 0]):
            pick = where[:, 0] == pos
            out[pick] = self.segments[int(pos)].segment.orders[where[pick, 1]]
        return out

    def _kill(self, where: np.ndarray) -> None:
        for pos in np.unique(where[:, 0]):
            live = self.segments[int(pos)]
            rows = where[where[:, 0] == pos, 1]
            live.alive[rows] = False
            live.dead += len(rows)

    def _deleted(self, ids: np.ndarray, orders: np.ndarray) -> np.ndarray:
        if not len(self.dead_ids):
            return np.zeros(len(ids), bool)
        slot = np.minimum(np.searchsorted(self.dead_ids, ids), len(self.dead_ids) - 1)
        return (self.dead_ids[slot] == ids) & (self.dead_orders[slot] >= orders)

    def locate(self, object_id: int) -> tuple[int, int] | None:
        """(segment position, row) of the live entry of an object, or None."""
        wanted = np.array([object_id], dtype=np.uint64)
        in_main, main, in_recent, recent = self._find(wanted)
        if in_recent[0]:
            pos, row = self._new_where[recent[0]]
        elif in_main[0] and self._where[main[0], 0] >= 0:
            pos, row = self._where[main[0]]
        else:
            return None
        return int(pos), int(row)
