"""Which entries are live: the newest version of each object wins, unless a newer delete hides it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .segment import SEQUENCER_WIDTH, ObjectRef, Segment


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

    dead_ids, dead_orders = tombstone_table([t for s in segments for t in s.tombstones])
    if len(dead_ids):
        slot = np.searchsorted(dead_ids, ids[winners])
        slot = np.minimum(slot, len(dead_ids) - 1)
        hidden = (dead_ids[slot] == ids[winners]) & (dead_orders[slot] >= orders[winners])
        winners = winners[~hidden]

    offsets = np.cumsum([0, *sizes])
    segment_of = np.searchsorted(offsets, winners, side="right") - 1
    for seg, row in zip(segment_of, winners - offsets[segment_of], strict=True):
        masks[seg][row] = True
    return masks


def tombstone_table(tombstones: Sequence[ObjectRef]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique ids of deleted objects with the newest delete sequencer of each."""
    if not tombstones:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=f"<U{SEQUENCER_WIDTH}")
    ids = np.array([t.id for t in tombstones], dtype=np.uint64)
    orders = np.array([t.order for t in tombstones], dtype=f"<U{SEQUENCER_WIDTH}")
    order = np.lexsort((orders, ids))
    keep = np.ones(len(order), dtype=bool)
    keep[:-1] = ids[order][1:] != ids[order][:-1]
    return ids[order][keep], orders[order][keep]


def surviving_tombstones(segments: Sequence[Segment], masks: Sequence[np.ndarray]) -> list[ObjectRef]:
    """Tombstones a compacted base must keep: the newest delete of each object not live any more.

    They guard against a stale upload event for a deleted object arriving after compaction.
    """
    newest: dict[int, ObjectRef] = {}
    for segment in segments:
        for tomb in segment.tombstones:
            kept = newest.get(tomb.id)
            if kept is None or tomb.order > kept.order:
                newest[tomb.id] = tomb
    live_ids = {int(i) for s, m in zip(segments, masks, strict=True) for i in s.ids[m]}
    return [t for i, t in newest.items() if i not in live_ids]
