"""Index semantics on synthetic embeddings: de-duplication, ordering, deletes, compaction, fitting."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch import manifest as manifests
from imgsearch.errors import BadParameter, ConflictError, IndexNotFound, ModelMismatch, ObjectNotFound
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef, normalise_sequencer, query_object
from imgsearch.store import LocalStore

Vectors = Callable[..., np.ndarray]


@pytest.fixture
def index(tmp_path: Path, spec: ModelSpec) -> ImageIndex:
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    return index


def ref(key: str, sequencer: str, etag: str = "") -> ObjectRef:
    return ObjectRef(bucket="bkt", key=key, sequencer=sequencer, etag=etag)


def live(index: ImageIndex) -> dict[str, ObjectRef]:
    searcher = Searcher(index)
    searcher.refresh(force=True)
    return searcher.live_refs()


def searcher_for(index: ImageIndex) -> Searcher:
    searcher = Searcher(ImageIndex(index.store))
    searcher.refresh(force=True)
    return searcher


# --- duplicates and ordering by sequencer -----------------------------------------------------------


def test_given_the_same_event_twice_then_one_live_entry(index: ImageIndex, unit_vectors: Vectors) -> None:
    v = unit_vectors(2)
    index.append([ref("a", "05", "e1"), ref("b", "05")], v)
    index.append([ref("a", "05", "e1")], v[:1])

    searcher = searcher_for(index)
    assert searcher.count == 2
    assert sorted(searcher.live_refs()) == ["a", "b"]
    hits = searcher.search(v[0], k=10, metric="cosine")[0]
    assert [h.key for h in hits].count("a") == 1

    index.compact(min_segments=1)
    assert index.manifest().count == 2


def test_given_the_same_object_twice_in_one_batch_then_one_live_entry(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    index.append([ref("a", "7"), ref("a", "7")], unit_vectors(2))

    assert list(live(index)) == ["a"]


@pytest.mark.parametrize("arrival", ["newer-first", "older-first"])
@pytest.mark.parametrize("layout", ["one-batch", "two-segments", "compaction-between"])
def test_an_older_sequencer_never_replaces_a_newer_one(
    index: ImageIndex, unit_vectors: Vectors, arrival: str, layout: str
) -> None:
    v_old, v_new, v_other = unit_vectors(3, seed=7)
    old = (ref("photo.jpg", "00A1", "old"), v_old)
    new = (ref("photo.jpg", "00B2", "new"), v_new)
    first, second = (new, old) if arrival == "newer-first" else (old, new)
    other = (ref("other.jpg", "1"), v_other)

    if layout == "one-batch":
        index.append([first[0], second[0], other[0]], np.stack([first[1], second[1], other[1]]))
    else:
        index.append([first[0], other[0]], np.stack([first[1], other[1]]))
        if layout == "compaction-between":
            index.compact(min_segments=1)
        index.append([second[0]], second[1][None])

    searcher = searcher_for(index)
    assert searcher.live_refs()["photo.jpg"].etag == "new"
    assert searcher.count == 2
    top = searcher.search(v_new, k=1, metric="cosine")[0][0]
    assert (top.key, top.etag) == ("photo.jpg", "new")
    stale = searcher.search(v_old, k=2, metric="cosine")[0]
    assert [h.etag for h in stale if h.key == "photo.jpg"] == ["new"]

    index.compact(min_segments=1)
    assert live(index)["photo.jpg"].etag == "new"
    assert index.manifest().count == 2


@pytest.mark.parametrize(
    ("older", "newer"),
    [("9", "0A"), ("ff", "100"), ("0000FFFF", "10000"), ("0055", "56")],
)
def test_sequencers_of_different_lengths_compare_after_left_padding(
    index: ImageIndex, unit_vectors: Vectors, older: str, newer: str
) -> None:
    assert int(older, 16) < int(newer, 16)
    v = unit_vectors(2)

    # Newer first: a plain string comparison would let the (longer or "larger") older one win.
    index.append([ref("k", newer, "new")], v[:1])
    index.append([ref("k", older, "old")], v[1:])

    assert live(index)["k"].etag == "new"
    assert normalise_sequencer(older) < normalise_sequencer(newer)


# --- deletes and tombstones -------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "hamming", "hybrid"])
def test_a_delete_hides_the_entry_at_once(index: ImageIndex, unit_vectors: Vectors, metric: str) -> None:
    v = unit_vectors(3)
    index.append([ref("a", "1"), ref("b", "1"), ref("c", "1")], v)
    searcher = Searcher(index, refresh_seconds=0)
    searcher.refresh(force=True)
    assert searcher.search(v[0], k=1, metric=metric)[0][0].key == "a"

    index.delete([ref("a", "2")])

    for query in v:
        keys = [h.key for h in searcher.search(query, k=10, metric=metric)[0]]
        assert "a" not in keys
        assert sorted(keys) == ["b", "c"]
    assert searcher.count == 2


def test_compaction_removes_deleted_vectors_but_keeps_the_tombstone(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    v = unit_vectors(3)
    index.append([ref("a", "1"), ref("b", "1"), ref("c", "1")], v)
    index.delete([ref("a", "2")])

    result = index.compact()

    manifest = index.manifest()
    assert len(manifest.segments) == 1
    base = manifest.segments[0]
    assert (base.kind, base.count, base.tombstones) == ("base", 2, 1)
    assert (result.entries, result.dropped, result.tombstones) == (2, 1, 1)
    segment = index.load_segment(base)
    assert sorted(r.key for r in segment.refs) == ["b", "c"]
    assert [t.key for t in segment.tombstones] == ["a"]


def test_a_stale_upload_event_after_compaction_does_not_resurrect_a_deleted_object(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    v = unit_vectors(3)
    index.append([ref("a", "1"), ref("b", "1"), ref("c", "1")], v)
    index.delete([ref("a", "2")])
    index.compact()

    index.append([ref("a", "1")], v[:1])  # the old upload event, delivered again

    searcher = searcher_for(index)
    assert sorted(searcher.live_refs()) == ["b", "c"]
    assert "a" not in [h.key for h in searcher.search(v[0], k=10, metric="cosine")[0]]
    index.compact()
    assert sorted(live(index)) == ["b", "c"]
    assert [t.key for t in index.load_segment(index.manifest().segments[0]).tombstones] == ["a"]


@pytest.mark.parametrize("compact_first", [False, True])
def test_a_newer_upload_after_a_delete_resurrects_the_object(
    index: ImageIndex, unit_vectors: Vectors, compact_first: bool
) -> None:
    v = unit_vectors(3)
    index.append([ref("a", "1", "v1"), ref("b", "1")], v[:2])
    index.delete([ref("a", "2")])
    if compact_first:
        index.compact()

    index.append([ref("a", "3", "v3")], v[2:])

    searcher = searcher_for(index)
    assert searcher.live_refs()["a"].etag == "v3"
    top = searcher.search(v[2], k=1, metric="cosine")[0][0]
    assert (top.key, top.etag) == ("a", "v3")
    index.compact()
    assert live(index)["a"].etag == "v3"
    assert index.load_segment(index.manifest().segments[0]).tombstones == []


# --- compaction ---------------------------------------------------------------------------------------


def test_compaction_folds_n_segments_into_one_base(index: ImageIndex, unit_vectors: Vectors) -> None:
    v = unit_vectors(50)
    for s in range(5):
        index.append([ref(f"s{s}/{i}", "1") for i in range(10)], v[s * 10 : (s + 1) * 10])
    before = index.manifest()
    assert [s.kind for s in before.segments] == ["delta"] * 5

    result = index.compact()

    after = index.manifest()
    assert (result.before, result.entries, result.dropped) == (5, 50, 0)
    assert [(s.kind, s.count, s.name) for s in after.segments] == [("base", 50, result.base)]
    assert after.generation == before.generation + 1
    for info in before.segments:
        with pytest.raises(ObjectNotFound):
            index.store.read(query_object(info.name))
    searcher = searcher_for(index)
    assert searcher.count == 50
    for row in (0, 17, 49):
        assert searcher.search(v[row], k=1, metric="cosine")[0][0].key == f"s{row // 10}/{row % 10}"


def test_a_compaction_whose_final_cas_fails_leaves_the_manifest_exactly_as_it_was(
    index: ImageIndex, unit_vectors: Vectors, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = unit_vectors(30)
    for s in range(3):
        index.append([ref(f"k{s}-{i}", "1") for i in range(10)], v[s * 10 : (s + 1) * 10])
    data_before, etag_before = index.store.read_manifest()  # type: ignore[misc]
    segments_before = index.manifest().segments
    calls = []

    def always_lose(data: bytes, *, expected: str | None) -> str:
        calls.append(expected)
        raise ConflictError("simulated: another writer got there first")

    monkeypatch.setattr(index.store, "write_manifest", always_lose)
    monkeypatch.setattr(
        manifests, "time", types.SimpleNamespace(sleep=lambda _: None, time=manifests.time.time)
    )

    with pytest.raises(ConflictError):
        index.compact()

    assert len(calls) > 1, "the CAS was retried"
    monkeypatch.undo()
    assert index.store.read_manifest() == (data_before, etag_before)
    for info in segments_before:
        index.store.read(query_object(info.name))  # not retired
    assert searcher_for(index).count == 30


# --- encoders -----------------------------------------------------------------------------------------


def test_fit_switches_from_lsh_to_itq_and_reencodes_without_losing_entries(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    v = unit_vectors(120, seed=3)
    for s in range(3):
        index.append([ref(f"k{s}-{i}", "1") for i in range(40)], v[s * 40 : (s + 1) * 40])
    index.delete([ref("k0-0", "2")])
    lsh_version = index.manifest().encoder
    assert index.encoder(lsh_version).kind == "lsh"

    encoder, result = index.fit(bits=16, dims=16, min_count=50)

    manifest = index.manifest()
    assert encoder.kind == "itq"
    assert manifest.encoder == encoder.version != lsh_version
    assert {s.encoder for s in manifest.segments} == {encoder.version}
    assert result.entries == 119
    fresh = ImageIndex(index.store)
    assert fresh.encoder(manifest.encoder).kind == "itq"
    searcher = searcher_for(index)
    assert searcher.count == 119
    assert "k0-0" not in searcher.live_refs()
    floats = fresh.load_segment(manifest.segments[0]).floats
    assert floats.shape == (119, 16)
    for row in (1, 60, 119):
        assert searcher.search(v[row], k=1, metric="cosine")[0][0].key == f"k{row // 40}-{row % 40}"


def test_fit_refuses_fewer_entries_than_the_minimum(index: ImageIndex, unit_vectors: Vectors) -> None:
    index.append([ref(f"k{i}", "1") for i in range(20)], unit_vectors(20))
    before = index.store.read_manifest()

    with pytest.raises(BadParameter, match="holds 20 images"):
        index.fit(bits=16, dims=16, min_count=50)

    assert index.store.read_manifest() == before


def test_ensure_with_a_model_of_another_checksum_raises_model_mismatch(
    index: ImageIndex, spec: ModelSpec
) -> None:
    generation = index.manifest().generation
    assert index.ensure(spec, bits=64).generation == generation  # same model: nothing written

    other = dataclasses.replace(spec, name="other-model", sha256="0" * 64)
    with pytest.raises(ModelMismatch, match="other-model"):
        index.ensure(other, bits=64)
    assert index.manifest().generation == generation


def test_the_same_model_file_at_another_input_size_raises_model_mismatch(
    index: ImageIndex, spec: ModelSpec
) -> None:
    resized = dataclasses.replace(spec, input_size=spec.input_size * 2)
    with pytest.raises(ModelMismatch, match=rf"input {spec.input_size} px.*input {spec.input_size * 2} px"):
        index.ensure(resized, bits=64)


def test_an_empty_location_raises_index_not_found_with_a_hint(tmp_path: Path) -> None:
    index = ImageIndex.open(str(tmp_path / "nothing-here"))

    with pytest.raises(IndexNotFound, match=r"no index at .*nothing-here.*imgsearch index"):
        index.manifest()
    with pytest.raises(IndexNotFound):
        Searcher(index).refresh()


# --- HNSW graphs ----------------------------------------------------------------------------------------


def test_a_large_compacted_segment_gets_hnsw_graphs_that_find_each_vector_itself(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    v = unit_vectors(500, seed=11)
    index.append([ref(f"a{i}", "1") for i in range(250)], v[:250])
    index.append([ref(f"b{i}", "1") for i in range(250)], v[250:])
    assert not index.load_segment(index.manifest().segments[0]).has_hnsw

    index.compact(hnsw_min=100, threads=1)

    fresh = ImageIndex(index.store)
    (info,) = fresh.manifest().segments
    assert fresh.load_segment(info).has_hnsw
    searcher = Searcher(fresh)
    searcher.refresh(force=True)
    keys = [f"a{i}" for i in range(250)] + [f"b{i}" for i in range(250)]
    rows = list(range(0, 500, 25))
    for metric in ("cosine", "hybrid", "hamming"):
        results = searcher.search(v[rows], k=3, metric=metric)
        assert [r[0].key for r in results] == [keys[row] for row in rows], metric
        assert all(r[0].score > 0.99 for r in results), metric


# --- rejections -----------------------------------------------------------------------------------


def test_rejections_are_recorded_counted_and_survive_compaction(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    from imgsearch.segment import Rejection

    index.append(
        [],
        unit_vectors(0),
        rejections=[
            Rejection(bucket="bkt", key="notes.txt", code="not_an_image", reason="not a recognised image")
        ],
    )
    index.append(
        [ref("a", "01")],
        unit_vectors(1),
        rejections=[Rejection(bucket="bkt", key="empty.png", code="empty", reason="empty file")],
    )
    assert index.manifest().rejected == 2
    assert [r.key for r in searcher_for(index).rejections()] == ["notes.txt", "empty.png"]

    index.compact(min_segments=1)

    assert len(index.manifest().segments) == 1
    assert index.manifest().rejected == 2
    assert {r.code for r in searcher_for(index).rejections()} == {"not_an_image", "empty"}
    assert searcher_for(index).count == 1
