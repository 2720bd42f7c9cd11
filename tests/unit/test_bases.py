"""Several large bases (HNSW graphs) searched side by side: the merged top-k is the exact one, with deletes,
overwrites, filters and pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore

Vectors = Callable[..., np.ndarray]
PER_BASE = 300


@pytest.fixture
def bases(tmp_path: Path, spec: ModelSpec, unit_vectors: Vectors) -> tuple[ImageIndex, dict[str, np.ndarray]]:
    """Three graph bases of 300, then a delta that deletes 20 and overwrites 20 of their images."""
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    vectors = unit_vectors(3 * PER_BASE, seed=3)
    truth = {}
    for b in range(3):
        keys = [f"b{b}/{i:03d}" for i in range(PER_BASE)]
        index.append([ObjectRef(bucket="x", key=k, sequencer="10") for k in keys], vectors[b * PER_BASE : (b + 1) * PER_BASE])
        truth.update(zip(keys, vectors[b * PER_BASE : (b + 1) * PER_BASE], strict=True))
    index.compact(hnsw_min=100, max_base=PER_BASE, min_segments=1)  # three bases, each with its graph
    gone = [f"b{b}/{i:03d}" for b in range(3) for i in range(0, 40, 6)][:20]
    changed = [f"b{b}/{i:03d}" for b in range(3) for i in range(1, 40, 6)][:20]
    fresh = unit_vectors(20, seed=99)
    index.delete([ObjectRef(bucket="x", key=k, sequencer="20") for k in gone])
    index.append([ObjectRef(bucket="x", key=k, sequencer="20", etag="new") for k in changed], fresh)
    for key in gone:
        del truth[key]
    truth.update(zip(changed, fresh, strict=True))
    return index, truth


def exact_top(truth: dict[str, np.ndarray], encoder, query: np.ndarray, k: int, prefix: str = "") -> list[str]:
    keys = [key for key in truth if key.startswith(prefix)]
    floats = encoder.floats(np.stack([truth[key] for key in keys])).astype(np.float16).astype(np.float32)
    scores = floats @ encoder.floats(query[None, :])[0]
    return [keys[i] for i in np.argsort(-scores, kind="stable")[:k]]


def test_the_bases_are_graph_segments_searched_in_parallel(bases) -> None:
    index, _ = bases
    searcher = Searcher(index)
    searcher.refresh(force=True)
    assert sum(live.segment.has_hnsw for live in searcher.live.segments) == 3


@pytest.mark.parametrize("metric", ["hybrid", "cosine"])
def test_merged_top_k_over_several_bases_is_the_exact_one_with_deletes_and_overwrites(bases, metric: str) -> None:
    index, truth = bases
    searcher = Searcher(index)
    searcher.refresh(force=True)
    encoder = index.encoder(index.manifest().encoder)
    queries = list(truth)[::45]
    for key in queries:
        hits = searcher.search(truth[key], k=10, metric=metric, expand=0)[0]
        expected = exact_top(truth, encoder, truth[key], 10)
        assert len({h.key for h in hits}) == 10
        assert len(set(h.key for h in hits) & set(expected)) >= 9  # HNSW: approximate, but nearly exact here
        assert hits[0].key == key
        assert all(h.key in truth for h in hits)  # nothing deleted comes back
        assert all(h.etag == "new" for h in hits if h.key.endswith(("001", "007")))


def test_a_prefix_filter_and_pages_over_several_bases(bases) -> None:
    index, truth = bases
    searcher = Searcher(index)
    searcher.refresh(force=True)
    query = truth["b1/100"]

    filtered = searcher.search(query, k=10, metric="hybrid", prefix="b2/", expand=0)[0]
    pages = [searcher.search(query, k=10, metric="cosine", offset=o, exact=True, expand=0)[0] for o in (0, 10, 20)]
    whole = searcher.search(query, k=30, metric="cosine", exact=True, expand=0)[0]

    assert len(filtered) == 10 and all(h.key.startswith("b2/") for h in filtered)
    encoder = index.encoder(index.manifest().encoder)
    assert len({h.key for h in filtered} & set(exact_top(truth, encoder, query, 10, "b2/"))) >= 9
    assert [h.key for page in pages for h in page] == [h.key for h in whole]


def test_side_by_side_keeps_the_jobs_order_and_runs_the_costliest_on_the_calling_thread(monkeypatch) -> None:
    import os
    import threading

    from imgsearch import search

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    ran: dict[int, str] = {}

    def job(n: int) -> Callable[[], int]:
        def run() -> int:
            ran[n] = threading.current_thread().name
            return n * 10
        return run

    costs = [30.0, 800.0, 200.0, 100.0]  # lanes: [800] here, [200, 100, 30] on one worker
    assert search._side_by_side([job(n) for n in range(4)], costs) == [0, 10, 20, 30]
    here = threading.current_thread().name
    assert ran[1] == here
    assert {ran[0], ran[2], ran[3]} != {here} and len({ran[0], ran[2], ran[3]}) == 1
    assert search._side_by_side([job(7)], [1.0]) == [70] and ran[7] == here


def test_side_by_side_raises_a_lanes_failure_after_every_lane_has_finished(monkeypatch) -> None:
    import os
    import threading
    import time

    from imgsearch import search

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    finished = threading.Event()

    def fail() -> int:
        raise ValueError("a segment failed")

    def slow() -> int:
        time.sleep(0.2)
        finished.set()
        return 1

    with pytest.raises(ValueError, match="a segment failed"):
        search._side_by_side([fail, slow], [10.0, 1.0])  # the failure on this thread, the slow job on a worker
    assert finished.is_set()
