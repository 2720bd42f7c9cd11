"""A reader absorbing appended segments one by one ends in exactly the state a full resolution gives."""

from __future__ import annotations

import random

import numpy as np
import pytest

from imgsearch.encode import lsh
from imgsearch.live import LiveSet
from imgsearch.segment import ObjectRef, Segment

ENCODER = lsh(dim_in=8, bits=8)


def segment(entries: list[tuple[str, int]], deletes: list[tuple[str, int]]) -> Segment:
    refs = [ObjectRef(bucket="b", key=k, sequencer=f"{s:X}") for k, s in entries]
    raw = np.random.default_rng(len(entries)).standard_normal((len(refs), 8)).astype(np.float32)
    tombstones = [ObjectRef(bucket="b", key=k, sequencer=f"{s:X}") for k, s in deletes]
    return Segment.build(refs=refs, raw=raw, encoder=ENCODER, tombstones=tombstones)


def state(live: LiveSet) -> tuple[list[list[bool]], list[int], list[tuple[int, int]]]:
    return (
        [m.alive.tolist() for m in live.segments],
        live.ids.tolist(),
        [tuple(w) for w in live.where.tolist()],
    )


@pytest.mark.parametrize("merges", ["never", "often"])
@pytest.mark.parametrize("seed", range(12))
def test_appending_segment_by_segment_equals_resolving_everything(
    seed: int, merges: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether new ids sit in the recent table or were merged into the main one (with its holes)."""
    if merges == "often":
        monkeypatch.setattr("imgsearch.live.MERGE_MIN", 3)
        monkeypatch.setattr("imgsearch.live.MERGE_FRACTION", 0.2)
    pick = random.Random(seed)
    keys = [f"k{i}" for i in range(30)]  # few keys: many overwrites, duplicates, deletes, stale events
    incremental, segments = LiveSet(), []
    for step in range(25):
        entries = [(pick.choice(keys), pick.randint(1, 60)) for _ in range(pick.randint(0, 8))]
        deletes = [(pick.choice(keys), pick.randint(1, 60)) for _ in range(pick.randint(0, 3))]
        if step % 7 == 0 and entries:
            entries.append(entries[0])  # the same event twice in one batch
        segments.append(segment(entries, deletes))
        incremental.append(segments[-1])
        whole = LiveSet()
        whole.rebuild(segments)

        assert state(incremental) == state(whole), f"after append {step}"
        assert [m.dead for m in incremental.segments] == [m.dead for m in whole.segments]
        assert len(incremental) == len(whole)
        for key in keys:
            oid = ObjectRef(bucket="b", key=key).id
            assert incremental.locate(oid) == whole.locate(oid), f"{key} after append {step}"


def test_a_stale_upload_after_a_delete_stays_hidden_and_a_newer_one_comes_back() -> None:
    live = LiveSet()
    live.rebuild([segment([("a", 5)], [])])
    live.append(segment([], [("a", 7)]))
    assert len(live) == 0

    live.append(segment([("a", 6)], []))  # older than the delete: an event that arrived late
    assert len(live) == 0

    live.append(segment([("a", 8)], []))
    assert len(live) == 1 and live.locate(live.segments[-1].segment.ids[0]) == (3, 0)
