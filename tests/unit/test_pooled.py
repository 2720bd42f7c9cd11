"""Small segments searched as one pool rank exactly as when each is searched on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.pooled import POOL_ROWS, pool, poolable
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore


@pytest.fixture
def many_small(tmp_path: Path, spec: ModelSpec, unit_vectors) -> tuple[ImageIndex, np.ndarray]:
    """Twelve small segments, with deletes and overwrites across them."""
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec)
    vectors = unit_vectors(12 * 40, seed=5)
    for s in range(12):
        refs = [ObjectRef(bucket="b", key=f"{'a' if i % 3 else 'z'}/{i:04d}.jpg", sequencer=f"{s + 1:x}")
                for i in range(s * 40, s * 40 + 40)]
        index.append(refs, vectors[s * 40 : s * 40 + 40])
    # overwrite 10 keys of the first segment with new vectors, delete 10 of the second
    index.append([ObjectRef(bucket="b", key=f"{'a' if i % 3 else 'z'}/{i:04d}.jpg", sequencer="ff") for i in range(10)],
                 unit_vectors(10, seed=6))
    index.delete([ObjectRef(bucket="b", key=f"{'a' if i % 3 else 'z'}/{i:04d}.jpg", sequencer="ff") for i in range(40, 50)])
    return index, vectors


def searchers(index: ImageIndex) -> tuple[Searcher, Searcher]:
    pooled, single = Searcher(index), Searcher(index, pooling=False)
    pooled.refresh(force=True)
    single.refresh(force=True)
    return pooled, single


@pytest.mark.parametrize("metric", ["cosine", "hamming"])
@pytest.mark.parametrize("prefix", [None, "a/"])
def test_a_pool_ranks_like_its_segments_searched_one_by_one(many_small, metric: str, prefix: str | None) -> None:
    index, vectors = many_small
    pooled, single = searchers(index)
    assert pooled._pools([(p, live) for p, live in enumerate(pooled.live.segments)])  # they are pooled
    for q in vectors[::37]:
        for offset in (0, 10):
            a = pooled.search(q, k=10, metric=metric, prefix=prefix, offset=offset, expand=0)[0]
            b = single.search(q, k=10, metric=metric, prefix=prefix, offset=offset, expand=0)[0]
            assert [(h.key, h.score) for h in a] == [(h.key, h.score) for h in b]


def test_hybrid_on_a_pool_finds_each_row_first_and_never_a_dead_one(many_small) -> None:
    index, vectors = many_small
    pooled, _ = searchers(index)
    deleted = {f"{'a' if i % 3 else 'z'}/{i:04d}.jpg" for i in range(40, 50)}
    for i in range(60, 480, 29):
        hits = pooled.search(vectors[i], k=20, metric="hybrid", expand=0)[0]
        assert hits[0].key == f"{'a' if i % 3 else 'z'}/{i:04d}.jpg"
        assert not deleted & {h.key for h in hits}
        assert len({h.key for h in hits}) == len(hits)  # one hit per object, overwrites included


def test_only_small_exhaustive_segments_of_one_encoder_are_pooled(many_small) -> None:
    index, _ = many_small
    searcher, _ = searchers(index)
    segments = [live.segment for live in searcher.live.segments]
    assert all(poolable(s) for s in segments) and all(len(s) <= POOL_ROWS for s in segments)
    joined = pool(list(enumerate(segments[:3])))
    assert len(joined.segment) == sum(len(s) for s in segments[:3])
    assert joined.positions.tolist() == [0] * len(segments[0]) + [1] * len(segments[1]) + [2] * len(segments[2])
    other = segments[3]
    other.encoder = "another-version"
    with pytest.raises(ValueError, match="one encoder version"):
        pool([(0, segments[0]), (3, other)])


def test_a_refresh_that_loads_much_gives_freed_heap_back_and_a_small_one_does_not(many_small, monkeypatch) -> None:
    from imgsearch import heap

    index, vectors = many_small
    calls: list[int] = []
    monkeypatch.setattr(heap, "trim", lambda: calls.append(1) or True)
    total = sum(info.bytes for info in index.manifest().segments)
    monkeypatch.setattr(heap, "TRIM_AFTER_BYTES", total)  # the first load reads exactly this much
    searcher = Searcher(index)
    searcher.refresh(force=True)
    assert calls == [1]
    index.append([ObjectRef(bucket="b", key="new/0001.jpg", sequencer="fff")], vectors[:1])
    assert searcher.refresh(force=True)  # one small segment: below the threshold
    assert calls == [1]


def test_heap_trim_returns_freed_memory_on_glibc() -> None:
    import platform

    from imgsearch import heap

    assert heap.trim() is (platform.libc_ver()[0] == "glibc")
