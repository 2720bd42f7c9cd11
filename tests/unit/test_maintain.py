"""The maintenance policy: size-tiered merges, capped bases that are never rewritten for a few new images."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch import maintain
from imgsearch.index import ImageIndex
from imgsearch.maintain import Policy, Step, plan
from imgsearch.manifest import Manifest, SegmentInfo
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore

Vectors = Callable[..., np.ndarray]
POLICY = Policy(max_base=100, tier_unit=20, tier_factor=4, merge_at=3, fit_after=10**9)


def info(name: str, count: int, encoder: str = "e1") -> SegmentInfo:
    return SegmentInfo(name=name, encoder=encoder, count=count)


def manifest(*segments: SegmentInfo, encoder: str = "e1") -> Manifest:
    return Manifest(model={}, encoder=encoder, segments=segments)


def test_small_segments_merge_once_a_tier_holds_enough_of_them() -> None:
    two = manifest(info("a", 5), info("b", 5))
    three = manifest(info("a", 5), info("big", 60), info("b", 5), info("c", 5))

    assert plan(two, encoder_kind="itq", policy=POLICY) is None
    assert plan(three, encoder_kind="itq", policy=POLICY) == Step("merge", ("a", "b", "c"), "3 segments of tier 0")


def test_no_merge_grows_past_the_cap_so_large_bases_stand_alone() -> None:
    bases = manifest(info("b1", 100), info("b2", 90), info("b3", 95), info("d1", 5))

    assert plan(bases, encoder_kind="itq", policy=POLICY) is None  # no two of them fit in 100


def test_segments_of_an_older_encoder_are_reencoded_first_cap_by_cap() -> None:
    stale = manifest(info("a", 60, "e0"), info("b", 60, "e0"), info("c", 5), encoder="e1")

    assert plan(stale, encoder_kind="itq", policy=POLICY) == Step("merge", ("a",), "re-encode 1 segment(s)")


def test_a_random_projection_index_is_fitted_once_large_enough() -> None:
    policy = Policy(fit_after=100)

    assert plan(manifest(info("a", 99)), encoder_kind="lsh", policy=policy) is None
    assert plan(manifest(info("a", 100)), encoder_kind="lsh", policy=policy).action == "fit"  # type: ignore[union-attr]
    assert plan(manifest(info("a", 100)), encoder_kind="itq", policy=policy) is None


def test_a_policy_refuses_thresholds_that_cannot_work() -> None:
    with pytest.raises(Exception, match="merge_at >= 2"):
        Policy(merge_at=1)


@pytest.fixture
def index(tmp_path: Path, spec: ModelSpec) -> ImageIndex:
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    return index


def refs(prefix: str, n: int, sequencer: str = "10") -> list[ObjectRef]:
    return [ObjectRef(bucket="b", key=f"{prefix}{i}", sequencer=sequencer) for i in range(n)]


def test_a_large_base_is_not_rewritten_to_absorb_new_images_or_deletes(index: ImageIndex, unit_vectors: Vectors) -> None:
    index.append(refs("base", 80), unit_vectors(80))
    index.compact(min_segments=1)  # one base of 80
    base = index.manifest().segments[0]
    for i in range(3):  # three deltas: two of new images, one of deletes against the base
        index.append(refs(f"new{i}-", 5, "20"), unit_vectors(5, seed=i + 1))
    index.delete(refs("base", 4, "30"))

    steps = maintain.run(index, policy=POLICY)

    segments = index.manifest().segments
    assert [s.action for s in steps] == ["merge"] and steps[0].segments == 4  # the three deltas and the deletes
    assert segments[0] == base  # the base object is untouched
    assert sum(s.tombstones for s in segments[1:]) == 4  # its deletes are recorded beside it
    searcher = Searcher(index)
    searcher.refresh(force=True)
    live = searcher.live_refs()
    assert len(live) == 80 - 4 + 15
    assert not any(f"base{i}" in live for i in range(4))


def test_run_stops_at_its_deadline_after_one_step(index: ImageIndex, unit_vectors: Vectors) -> None:
    for i in range(9):
        index.append(refs(f"d{i}-", 2), unit_vectors(2, seed=i))
    policy = Policy(max_base=4, tier_unit=100, merge_at=2, fit_after=10**9)

    steps = maintain.run(index, policy=policy, deadline=time.monotonic() - 1)

    assert len(steps) == 1 and len(index.manifest().segments) == 8
    assert len(maintain.run(index, policy=policy)) == 3  # the rest, pair by pair, up to the cap
    assert [s.count for s in index.manifest().segments] == [4, 4, 4, 4, 2]
