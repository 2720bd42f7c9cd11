"""Which rows of the loaded segments are live, kept up to date at the cost of what changed.

A reader holds the segments of the manifest in order. `LiveSet.rebuild` resolves them all at once
(resolve.live_masks, vectorised); `LiveSet.append` absorbs one new segment (an ingest batch) by
looking up only the objects that segment names, so a refresh after a small append costs the size of
the append (plus a memory move of the sorted id array), not a pass over the index.
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


class LiveSet:
    """Segments in manifest order, their live rows, and every live object by id (sorted arrays)."""

    def __init__(self) -> None:
        self.segments: list[Live] = []
        self.ids = np.zeros(0, np.uint64)  # sorted ids of the live objects
        self.where = np.zeros((0, 2), np.int64)  # (segment position, row) of each
        self.dead_ids = np.zeros(0, np.uint64)  # sorted ids of deleted objects
        self.dead_orders = np.zeros(0, "S32")  # newest delete sequencer of each

    def __len__(self) -> int:
        return len(self.ids)

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
        self.ids, self.where = ids[order], where[order]
        self.dead_ids, self.dead_orders = tombstone_table(KeyTable.concat([s.dead for s in segments]))

    def append(self, segment: Segment) -> None:
        """Absorb a segment listed after every loaded one (it wins ties: it is later in the manifest)."""
        pos = len(self.segments)
        (alive,) = live_masks([segment])  # within the segment: duplicates, its own deletes
        rows = np.flatnonzero(alive)
        ids, orders = segment.ids[rows], segment.orders[rows]
        slots = np.searchsorted(self.ids, ids)
        present = slots < len(self.ids)
        present[present] = self.ids[slots[present]] == ids[present]
        # Objects already live: the newer version wins (this segment on equal sequencers).
        if present.any():
            older = self._orders(self.where[slots[present]])
            wins = orders[present] >= older
            self._kill(self.where[slots[present][wins]])
            self.where[slots[present][wins]] = np.stack([np.full(int(wins.sum()), pos), rows[present][wins]], 1)
            alive[rows[present][~wins]] = False
        # New objects: live unless an earlier delete is at least as new.
        new = ~present
        hidden = self._deleted(ids[new], orders[new])
        alive[rows[new][hidden]] = False
        fresh = rows[new][~hidden]
        order = np.argsort(segment.ids[fresh], kind="stable")  # equal insertion points stay in id order
        at = np.searchsorted(self.ids, segment.ids[fresh])
        self.ids = np.insert(self.ids, at[order], segment.ids[fresh][order])
        self.where = np.insert(self.where, at[order], np.stack([np.full(len(fresh), pos), fresh], 1)[order], axis=0)
        self.segments.append(Live(segment, alive, int((~alive).sum())))
        self._apply_tombstones(segment.dead)

    def _apply_tombstones(self, dead: KeyTable) -> None:
        if not len(dead):
            return
        rows = newest_per_id(dead)
        ids, orders = dead.ids[rows], dead.orders[rows]
        slots = np.searchsorted(self.ids, ids)
        present = slots < len(self.ids)
        present[present] = self.ids[slots[present]] == ids[present]
        if present.any():
            hit = slots[present]
            gone = orders[present] >= self._orders(self.where[hit])
            self._kill(self.where[hit[gone]])
            keep = np.ones(len(self.ids), bool)
            keep[hit[gone]] = False
            self.ids, self.where = self.ids[keep], self.where[keep]
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
        slot = int(np.searchsorted(self.ids, np.uint64(object_id)))
        if slot < len(self.ids) and int(self.ids[slot]) == object_id:
            pos, row = self.where[slot]
            return int(pos), int(row)
        return None
