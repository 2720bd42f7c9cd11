"""Searcher: metrics, ranking, filters, paging, merging across segments, refresh.

Tests of the index's own ranking pass expand=0 (no re-ranking); re-ranking, the default, is tested in
test_text_ranking.py and test_rerank.py, and the tests that pass no expand run it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch.errors import BadParameter, KeyNotIndexed
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore, S3Store, Store

METRICS = ["cosine", "hamming", "hybrid"]
SEGMENTS, PER_SEGMENT = 3, 60

Vectors = Callable[..., np.ndarray]


def ref(key: str, sequencer: str = "1", etag: str = "") -> ObjectRef:
    return ObjectRef(bucket="bkt", key=key, sequencer=sequencer, etag=etag)


def noisy(base: np.ndarray, scale: float, seed: int) -> np.ndarray:
    x = base + scale * np.random.default_rng(seed).standard_normal(base.shape).astype(np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def index(tmp_path: Path, spec: ModelSpec) -> ImageIndex:
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    return index


@pytest.fixture
def filled(index: ImageIndex, unit_vectors: Vectors) -> tuple[ImageIndex, np.ndarray, list[str]]:
    """Three delta segments of 60 random vectors; keys `s<segment>/<row>`."""
    vectors = unit_vectors(SEGMENTS * PER_SEGMENT, seed=5)
    keys = [f"s{s}/{i:02d}" for s in range(SEGMENTS) for i in range(PER_SEGMENT)]
    for s in range(SEGMENTS):
        rows = slice(s * PER_SEGMENT, (s + 1) * PER_SEGMENT)
        index.append([ref(k) for k in keys[rows]], vectors[rows])
    return index, vectors, keys


def searcher_of(index: ImageIndex) -> Searcher:
    searcher = Searcher(index)
    searcher.refresh(force=True)
    return searcher


# --- metrics and ranking --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_each_metric_ranks_the_query_vector_itself_first_with_score_one(filled, metric: str) -> None:
    index, vectors, keys = filled
    rows = [0, 61, 125, 179]

    results = searcher_of(index).search(vectors[rows], k=5, metric=metric)

    assert [hits[0].key for hits in results] == [keys[r] for r in rows]
    for hits in results:
        assert hits[0].score == pytest.approx(1.0, abs=2e-3)
        assert hits[1].score < hits[0].score


@pytest.mark.parametrize("metric", METRICS)
def test_scores_are_sorted_best_first_and_within_minus_one_and_one(
    filled, unit_vectors: Vectors, metric: str
) -> None:
    index, vectors, _ = filled
    queries = np.concatenate([unit_vectors(3, seed=99), -vectors[:2]])

    results = searcher_of(index).search(queries, k=50, metric=metric, expand=0)

    assert len(results) == len(queries)
    for hits in results:
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(-1.0 <= s <= 1.0 for s in scores)


def test_cosine_scores_are_the_cosine_similarity(filled, unit_vectors: Vectors) -> None:
    index, vectors, keys = filled
    query = unit_vectors(1, seed=42)[0]

    hits = searcher_of(index).search(query, k=10, metric="cosine", expand=0)[0]

    truth = vectors @ query
    expected = [keys[i] for i in np.argsort(-truth)[:10]]
    assert [h.key for h in hits] == expected
    for hit in hits:
        assert hit.score == pytest.approx(float(truth[keys.index(hit.key)]), abs=2e-3)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("k", [1, 7, 1000])
def test_k_is_respected(filled, metric: str, k: int) -> None:
    index, vectors, _ = filled

    hits = searcher_of(index).search(vectors[3], k=k, metric=metric)[0]

    assert len(hits) == min(k, SEGMENTS * PER_SEGMENT)
    assert len({h.key for h in hits}) == len(hits)


@pytest.mark.parametrize("metric", METRICS)
def test_min_score_drops_lower_hits_and_keeps_a_hit_scoring_exactly_min_score(filled, metric: str) -> None:
    index, vectors, _ = filled
    searcher = searcher_of(index)
    query = noisy(vectors[10], 0.1, seed=1)
    everything = searcher.search(query, k=40, metric=metric, expand=0)[0]
    threshold = everything[5].score

    hits = searcher.search(query, k=40, metric=metric, min_score=threshold, expand=0)[0]

    assert hits == [h for h in everything if h.score >= threshold]
    assert 1 <= len(hits) < len(everything)


# --- prefix filter and paging ------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_a_prefix_filter_returns_only_matching_keys_even_outside_the_unfiltered_top_k(
    index: ImageIndex, unit_vectors: Vectors, metric: str
) -> None:
    query = unit_vectors(1, seed=1)[0]
    dogs = noisy(np.tile(query, (40, 1)), 0.05, seed=2)  # all close to the query
    cats = unit_vectors(20, seed=3)  # random: far from it
    index.append([ref(f"dogs/{i}") for i in range(20)], dogs[:20])
    index.append([ref(f"cats/{i}") for i in range(20)], cats)
    index.append([ref(f"dogs/{i}") for i in range(20, 40)], dogs[20:])
    searcher = searcher_of(index)
    assert all(h.key.startswith("dogs/") for h in searcher.search(query, k=10, metric=metric, expand=0)[0])

    hits = searcher.search(query, k=5, metric=metric, prefix="cats/", expand=0)[0]

    assert len(hits) == 5
    assert all(h.key.startswith("cats/") for h in hits)
    if metric != "hamming":
        best = [f"cats/{i}" for i in np.argsort(-(cats @ query))[:5]]
        assert [h.key for h in hits] == best
    assert searcher.search(query, k=5, metric=metric, prefix="birds/", expand=0)[0] == []


@pytest.mark.parametrize("metric", METRICS)
def test_offset_pages_without_overlap(filled, unit_vectors: Vectors, metric: str) -> None:
    index, _, _ = filled
    searcher = searcher_of(index)

    for seed in range(10):
        query = unit_vectors(1, seed=100 + seed)[0]
        top = searcher.search(query, k=16, metric=metric, expand=0)[0]
        page1 = searcher.search(query, k=8, metric=metric, offset=0, expand=0)[0]
        page2 = searcher.search(query, k=8, metric=metric, offset=8, expand=0)[0]

        assert [h.key for h in page1 + page2] == [h.key for h in top]
        assert not {h.key for h in page1} & {h.key for h in page2}


@pytest.mark.parametrize("metric", METRICS)
def test_consecutive_pages_of_a_large_index_are_disjoint_slices_of_one_ranking(
    index: ImageIndex, unit_vectors: Vectors, metric: str
) -> None:
    # GIVEN segments larger than hybrid's candidate pool, and 64-bit codes (many Hamming ties)
    vectors = unit_vectors(1200, seed=6)
    for s in range(3):
        index.append([ref(f"s{s}/{i}") for i in range(400)], vectors[s * 400 : (s + 1) * 400])
    searcher = searcher_of(index)
    k = 10

    for seed in range(20):
        query = unit_vectors(1, seed=200 + seed)[0]
        # WHEN a client pages through the results with one k
        pages = [searcher.search(query, k=k, offset=o, metric=metric, expand=0)[0] for o in (0, k, 2 * k)]

        # THEN no result is shown twice, none is skipped, and the order continues across pages
        keys = [h.key for page in pages for h in page]
        scores = [h.score for page in pages for h in page]
        assert len(keys) == 3 * k
        assert len(set(keys)) == len(keys), f"a result shows on two pages (query {seed})"
        assert scores == sorted(scores, reverse=True)
        if metric != "hybrid":  # exact rankings: the pages are the top 3k
            assert keys == [h.key for h in searcher.search(query, k=3 * k, metric=metric, expand=0)[0]]


# --- merging across segments, deletes, superseded entries --------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_results_are_merged_across_segments(index: ImageIndex, unit_vectors: Vectors, metric: str) -> None:
    query = unit_vectors(1, seed=8)[0]
    near = [noisy(query, scale, seed=i) for i, scale in enumerate((0.02, 0.04, 0.06))]
    filler = unit_vectors(90, seed=9)
    for s in range(3):
        keys = [f"near-{s}"] + [f"far-{s}-{i}" for i in range(30)]
        index.append([ref(k) for k in keys], np.vstack([near[s], filler[s * 30 : (s + 1) * 30]]))

    hits = searcher_of(index).search(query, k=3, metric=metric)[0]

    if metric == "hamming":  # close codes may tie
        assert {h.key for h in hits} == {"near-0", "near-1", "near-2"}
    else:
        by_cosine = sorted(range(3), key=lambda s: -float(near[s] @ query))
        assert [h.key for h in hits] == [f"near-{s}" for s in by_cosine]


@pytest.mark.parametrize("metric", METRICS)
def test_tombstoned_and_superseded_entries_are_never_returned(
    index: ImageIndex, unit_vectors: Vectors, metric: str
) -> None:
    v_old, v_new, v_gone, *rest = unit_vectors(40, seed=4)
    index.append(
        [ref("changed", "1", "old"), ref("gone", "1")] + [ref(f"k{i}") for i in range(37)],
        np.vstack([v_old, v_gone, *rest]),
    )
    index.append([ref("changed", "2", "new")], v_new[None])
    index.delete([ref("gone", "2")])
    searcher = searcher_of(index)

    for query in (v_old, v_gone, v_new):
        hits = searcher.search(query, k=1000, metric=metric)[0]
        keys = [h.key for h in hits]
        assert "gone" not in keys
        assert keys.count("changed") == 1
        assert len(keys) == 38
        assert [h.etag for h in hits if h.key == "changed"] == ["new"]
    changed = next(h for h in searcher.search(v_old, k=1000, metric="cosine")[0] if h.key == "changed")
    assert changed.score == pytest.approx(float(v_old @ v_new), abs=2e-3)


@pytest.mark.parametrize("hnsw", [False, True])
@pytest.mark.parametrize("metric", METRICS)
def test_a_search_with_no_query_vectors_returns_no_result_lists(filled, metric: str, hnsw: bool) -> None:
    # e.g. the CLI or the API when every query image was unreadable
    index, vectors, _ = filled
    if hnsw:
        index.compact(hnsw_min=100, threads=1)
    assert index.load_segment(index.manifest().segments[0]).has_hnsw is hnsw
    searcher = searcher_of(index)

    assert searcher.search(np.zeros((0, vectors.shape[1]), np.float32), k=5, metric=metric) == []


# --- search by key ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_search_key_finds_the_object_itself_first(filled, metric: str) -> None:
    index, _, keys = filled
    searcher = searcher_of(index)

    for key in (keys[0], keys[100], keys[-1]):
        hits = searcher.search_key(key, k=5, metric=metric)
        assert hits[0].key == key
        assert hits[0].score == pytest.approx(1.0, abs=2e-3)
        assert searcher.search_key(key, bucket="bkt", k=1, metric=metric)[0].key == key


def test_search_key_after_fit_reencodes_from_the_raw_embedding(filled) -> None:
    index, _, keys = filled
    index.fit(bits=16, dims=16, min_count=50)

    hits = searcher_of(index).search_key(keys[42], k=3, metric="cosine")

    assert hits[0].key == keys[42]


def test_search_key_of_an_unknown_key_raises_key_not_indexed(filled) -> None:
    index, _, keys = filled
    searcher = searcher_of(index)

    with pytest.raises(KeyNotIndexed, match=r"nope\.jpg"):
        searcher.search_key("nope.jpg")
    with pytest.raises(KeyNotIndexed):
        searcher.search_key(keys[0], bucket="another-bucket")


# --- parameters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metric": "euclid"}, "hybrid, cosine, hamming"),
        ({"k": 0}, "k must be a whole number from 1 to 1000"),
        ({"k": 1001}, "k must be a whole number from 1 to 1000"),
        ({"offset": -1}, "offset must be a whole number from 0 to 10000"),
        ({"offset": 10**20}, "offset must be a whole number from 0 to 10000"),
        ({"min_score": float("nan")}, "min_score must be a number from -1 to 1"),
    ],
)
def test_bad_parameters_raise_bad_parameter(filled, options: dict, message: str) -> None:
    index, vectors, keys = filled
    searcher = searcher_of(index)

    with pytest.raises(BadParameter, match=message):
        searcher.search(vectors[0], **options)
    with pytest.raises(BadParameter, match=message):
        searcher.search_key(keys[0], **options)


# --- refresh -----------------------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "index")
    return S3Store(
        request.getfixturevalue("s3_bucket"), "ix", endpoint_url=request.getfixturevalue("moto_endpoint")
    )


def test_refresh_picks_up_a_new_segment_and_loads_only_that_one(
    store: Store, spec: ModelSpec, unit_vectors: Vectors
) -> None:
    writer = ImageIndex(store)
    writer.ensure(spec, bits=64)
    v = unit_vectors(31)
    for s in range(3):
        writer.append([ref(f"s{s}/{i}") for i in range(10)], v[s * 10 : (s + 1) * 10])
    searcher = Searcher(ImageIndex(store), refresh_seconds=3600)
    assert searcher.refresh(force=True)
    assert (searcher.segments_loaded, searcher.count) == (3, 30)

    writer.append([ref("late")], v[30:])

    assert searcher.search(v[30], k=1, metric="cosine")[0][0].key != "late", "refresh is throttled"
    assert searcher.refresh(force=True) is True
    assert (searcher.segments_loaded, searcher.count) == (4, 31)
    assert searcher.search(v[30], k=1, metric="cosine")[0][0].key == "late"
    assert searcher.refresh(force=True) is False, "unchanged manifest: conditional GET"
    assert searcher.segments_loaded == 4


def test_refresh_after_compaction_drops_folded_segments(filled) -> None:
    index, vectors, keys = filled
    searcher = searcher_of(index)

    index.compact()
    searcher.refresh(force=True)

    assert searcher.segments_loaded == SEGMENTS + 1
    assert searcher.count == len(keys)
    assert searcher.search(vectors[7], k=1, metric="cosine")[0][0].key == keys[7]


def test_a_direction_query_finds_the_vector_along_it_first(filled) -> None:
    """search_direction: a direction (a text query's) is not shifted by the encoder's mean."""
    index, vectors, keys = filled
    searcher = searcher_of(index)
    for i in (0, 17, 42):
        hits = searcher.search_direction(vectors[i], k=5, metric="cosine")[0]
        assert hits[0].key == keys[i] and hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_a_direction_query_ignores_the_fitted_encoders_mean(filled) -> None:
    index, vectors, keys = filled
    index.fit(bits=16, dims=16, min_count=50)
    searcher = searcher_of(index)
    mean = index.encoder(index.manifest().encoder).mean
    hits = searcher.search_direction(vectors[9] - mean, k=3, metric="cosine")[0]
    assert hits[0].key == keys[9] and hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_a_refresh_that_meets_a_segment_retired_by_a_compaction_reads_the_manifest_again(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    """A local (or EFS) store moves retired segments out at once: a reader that read the manifest just
    before a compaction committed finds a listed segment gone, and must take the newer manifest."""
    vectors = unit_vectors(60)
    for part in range(3):
        index.append([ref(f"k{i}") for i in range(part * 20, (part + 1) * 20)], vectors[part * 20 : (part + 1) * 20])
    stale = index.store.read_manifest()
    assert stale is not None
    index.compact()  # commits one segment and retires the three
    real = index.store.read_manifest
    reads: list[str | None] = []

    def first_stale(if_none_match: str | None = None) -> tuple[bytes, str] | None:
        reads.append(if_none_match)
        return stale if len(reads) == 1 else real(if_none_match=if_none_match)

    index.store.read_manifest = first_stale  # type: ignore[method-assign]
    searcher = Searcher(index)
    assert searcher.refresh(force=True)
    assert searcher.count == 60 and len(searcher.manifest.segments) == 1  # type: ignore[union-attr]
    assert len(reads) == 2  # the stale manifest, then the one the compaction wrote
