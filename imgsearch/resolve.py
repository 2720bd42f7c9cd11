"""Which entries are live: the newest version of each object wins, unless a newer delete hides it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .keytable import KeyTable
from .segment import Segment


def live_masks(segments: Sequence[Segment]) -> list[np.ndarray]:
    """One boolean mask per segment (in manifest order): True where that row is the live entry.

    Per object id the entry with the greatest (sequencer, position) wins, so a duplicate event
    yields one entry and an older event never undoes a newer one; a tombstone whose sequencer is
    at least the winner's hides it.
    """
    masks = [np.zeros(len(s), dtype=bool) for s in segments]
    sizes = [len(s) for s in segments]
    if sum(sizes) == 0:
        return masks
    ids = np.concatenate([s.ids for s in segments])
    orders = np.concatenate([s.orders for s in segments])
    position = np.arange(len(ids))
    order = np.lexsort((position, orders, ids))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = ids[order][1:] != ids[order][:-1]
    winners = order[last]

    dead_ids, dead_orders = tombstone_table(KeyTable.concat([s.dead for s in segments]))
    if len(dead_ids):
        slot = np.searchsorted(dead_ids, ids[winners])
        slot = np.minimum(slot, len(dead_ids) - 1)
        hidden = (dead_ids[slot] == ids[winners]) & (dead_orders[slot] >= orders[winners])
        winners = winners[~hidden]

    alive = np.zeros(len(ids), dtype=bool)
    alive[winners] = True
    return np.split(alive, np.cumsum(sizes)[:-1])


def newest_per_id(table: KeyTable) -> np.ndarray:
    """Rows of `table` holding the newest (greatest sequencer) row of each id, in id order."""
    order = np.lexsort((table.orders, table.ids))
    keep = np.ones(len(order), dtype=bool)
    keep[:-1] = table.ids[order][1:] != table.ids[order][:-1]
    return order[keep]


def tombstone_table(tombstones: KeyTable) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids of deleted objects with the newest delete sequencer of each."""
    rows = newest_per_id(tombstones)
    return tombstones.ids[rows], tombstones.orders[rows]


def surviving_tombstones(segments: Sequence[Segment], masks: Sequence[np.ndarray]) -> KeyTable:
    """Tombstones a compacted base must keep: the newest delete of each object not live any more.

    They guard against a stale upload event for a deleted object arriving after compaction.
    """
    tombstones = KeyTable.concat([s.dead for s in segments])
    rows = newest_per_id(tombstones)
    live_ids = np.concatenate([s.ids[m] for s, m in zip(segments, masks, strict=True)] or [np.zeros(0, np.uint64)])
    return tombstones.take(rows[~np.isin(tombstones.ids[rows], live_ids)])
