"""Graph segments keep their float vectors only in an int8 HNSW graph (rotated, scaled per vector)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsearch.encode import lsh
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef, Segment, quantise, random_rotation
from imgsearch.store import LocalStore

ROWS, DIM = 400, 64


def clustered(count: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around a few centres: neighbours are close, like image embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, DIM))
    x = centres[rng.integers(0, 8, count)] + 0.35 * rng.standard_normal((count, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def segment(float_dtype: str = "i8") -> tuple[Segment, np.ndarray]:
    encoder = lsh(dim_in=DIM, bits=64)
    raw = clustered(ROWS)
    refs = [ObjectRef(bucket="b", key=f"{i:04d}.jpg", sequencer="1") for i in range(ROWS)]
    built = Segment.build(refs=refs, raw=raw, encoder=encoder, hnsw_min=100, float_dtype=float_dtype)
    return built, encoder.floats(raw).astype(np.float32)


def test_a_rotation_is_orthogonal_and_keeps_cosines() -> None:
    rotation = random_rotation(DIM, seed=3)
    x = clustered(20)
    assert np.allclose(rotation @ rotation.T, np.eye(DIM), atol=1e-5)
    assert np.allclose((x @ rotation) @ (x @ rotation).T, x @ x.T, atol=1e-5)


def test_quantised_vectors_use_the_whole_int8_range_and_keep_their_direction() -> None:
    rotation = random_rotation(DIM, seed=3)
    x = clustered(50)
    q = quantise(x, rotation)
    assert q.dtype == np.int8 and (np.abs(q).max(axis=1) == 127).all()
    back = q.astype(np.float32) @ rotation.T
    back /= np.linalg.norm(back, axis=1, keepdims=True)
    assert (np.sum(back * x, axis=1) > 0.995).all()


def test_an_int8_graph_segment_stores_no_separate_floats_and_recovers_them() -> None:
    built, floats = segment()
    assert built.floats is None and built.rotation is not None and built.has_hnsw
    again = Segment.from_bytes(built.to_bytes())
    assert again.floats is None and np.array_equal(again.rotation, built.rotation)
    rows = np.array([0, 7, 399, 7])
    recovered = again.vectors(rows)
    assert recovered.shape == (4, floats.shape[1])
    assert (np.sum(recovered * floats[rows], axis=1) > 0.995).all()


@pytest.mark.parametrize("exact", [False, True])
def test_int8_graph_scores_are_close_to_float_cosine_and_rank_a_row_first_for_itself(exact: bool) -> None:
    built, floats = segment()
    rows, scores = built.search_floats(floats[:20], 10, exact=exact)
    assert (rows[:, 0] == np.arange(20)).all() and (scores[:, 0] > 0.99).all()
    truth = np.take_along_axis(floats[:20] @ floats.T, rows, axis=1)
    assert np.abs(scores - truth).max() < 0.02
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_exact_search_on_an_int8_graph_finds_the_float_top_ten() -> None:
    built, floats = segment()
    query = clustered(5, seed=9) @ np.eye(DIM, floats.shape[1], dtype=np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    rows, _ = built.search_floats(query, 10, exact=True)
    truth = np.argsort(-(query @ floats.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows.tolist(), truth.tolist(), strict=True)])
    assert recall >= 0.9


def test_a_float16_graph_segment_of_the_earlier_layout_still_loads_and_searches(tmp_path: Path) -> None:
    built, floats = segment("f16")
    assert built.floats is not None and built.rotation is None
    path = tmp_path / "query.npz"
    path.write_bytes(built.to_bytes())
    for loaded in (Segment.from_file(path), Segment.from_bytes(path.read_bytes())):
        rows, scores = loaded.search_floats(floats[:3], 5)
        assert (rows[:, 0] == np.arange(3)).all() and (scores[:, 0] > 0.999).all()
        assert np.allclose(loaded.vectors(np.array([1])), floats[1], atol=2e-3)


@pytest.mark.parametrize("metric", ["hybrid", "cosine", "hamming"])
def test_more_like_this_and_a_prefix_filter_work_on_an_int8_graph_index(
    tmp_path: Path, spec: ModelSpec, metric: str
) -> None:
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec)
    raw = clustered(ROWS)
    refs = [ObjectRef(bucket="b", key=f"{'a' if i % 4 == 0 else 'z'}/{i:04d}.jpg", sequencer="1") for i in range(ROWS)]
    index.append(refs, raw)
    index.compact(hnsw_min=100, min_segments=1)
    searcher = Searcher(index)
    searcher.refresh(force=True)
    assert all(live.segment.floats is None for live in searcher.live.segments)
    hits = searcher.search_key("a/0008.jpg", k=5, metric=metric)
    assert hits[0].key == "a/0008.jpg"
    filtered = searcher.search(raw[8], k=20, metric=metric, prefix="a/")[0]
    assert len(filtered) == 20 and all(h.key.startswith("a/") for h in filtered)
    assert filtered[0].key == "a/0008.jpg"


def test_a_segment_read_whole_is_views_into_its_bytes_not_copies() -> None:
    built, floats = segment()
    data = built.to_bytes()
    loaded = Segment.from_bytes(data)
    assert not loaded.codes.flags.owndata and not loaded.table.ids.flags.owndata  # views, not copies
    assert np.shares_memory(np.frombuffer(data, np.uint8), loaded.codes)
    rows, _ = loaded.search_floats(floats[:3], 5)
    assert (rows[:, 0] == np.arange(3)).all()


def test_a_compressed_query_object_is_still_read(tmp_path: Path) -> None:
    import io
    import zipfile

    built, floats = segment("f16")
    plain = zipfile.ZipFile(io.BytesIO(built.to_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as packed:
        for name in plain.namelist():
            packed.writestr(name, plain.read(name))
    loaded = Segment.from_bytes(out.getvalue())
    rows, _ = loaded.search_floats(floats[:3], 5)
    assert (rows[:, 0] == np.arange(3)).all() and loaded.refs == built.refs


def _without(data: bytes, member: str) -> bytes:
    """The query object with one member left out (as a segment written before that member existed)."""
    import io
    import zipfile

    plain = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as kept:
        for name in plain.namelist():
            if name != f"{member}.npy":
                kept.writestr(name, plain.read(name))
    return out.getvalue()


def test_an_int8_graph_built_on_threads_reads_rows_by_its_slot_map_without_key_lookups(tmp_path: Path) -> None:
    encoder = lsh(dim_in=DIM, bits=64)
    raw = clustered(3000, seed=4)
    refs = [ObjectRef(bucket="b", key=f"{i:05d}.jpg", sequencer="1") for i in range(len(raw))]
    built = Segment.build(refs=refs, raw=raw, encoder=encoder, hnsw_min=100, threads=2)
    assert built.float_index is not None
    rows = np.arange(len(raw))
    truth = built.vectors(rows)  # through USearch's key lookups (the graph as built)
    data = built.to_bytes()
    path = tmp_path / "query.npz"
    path.write_bytes(data)
    for loaded in (Segment.from_bytes(data), Segment.from_file(path)):
        assert loaded.float_slots is not None and loaded.float_rows is not None
        assert sorted(loaded.float_slots.tolist()) == rows.tolist()  # a permutation of the slots
        assert not np.array_equal(loaded.float_slots, rows)  # threads put rows out of order: the map matters
        stored = np.stack([built.float_index.get(int(r)) for r in rows[:50]])  # int8, by key
        assert np.array_equal(loaded.float_rows[loaded.float_slots[rows[:50]]], stored)
        assert np.allclose(loaded.vectors(rows), truth, atol=1e-6)
        assert loaded.float_index is not None and loaded.float_index.get(0) is None  # no key lookup table
        found, _ = loaded.search_floats(truth[:5], 1)
        assert found[:, 0].tolist() == list(range(5))


def test_an_int8_segment_written_without_a_slot_map_still_reads_rows_by_key() -> None:
    built, floats = segment()
    loaded = Segment.from_bytes(_without(built.to_bytes(), "float_slots"))
    assert loaded.float_slots is None and loaded.float_rows is None
    rows = np.array([3, 0, 399])
    assert np.allclose(loaded.vectors(rows), built.vectors(rows), atol=1e-6)
    assert (np.sum(loaded.vectors(rows) * floats[rows], axis=1) > 0.995).all()


def test_no_slot_map_is_stored_when_the_saved_graph_is_laid_out_otherwise() -> None:
    from imgsearch import graphrows

    built, _ = segment()
    assert built.float_index is not None
    saved = bytearray(built.float_index.save() or b"")
    assert graphrows.slots(built.float_index, bytes(saved)) is not None
    saved[0:4] = (ROWS + 1).to_bytes(4, "little")  # not the rows × width header this module reads
    assert graphrows.slots(built.float_index, bytes(saved)) is None
    assert graphrows.matrix(bytes(saved), ROWS, built.float_index.ndim) is None


def test_a_large_graph_adds_its_rows_grouped_by_nearest_sampled_row_and_keeps_every_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from imgsearch import layout

    monkeypatch.setattr(layout, "CENTRES", 8)
    monkeypatch.setattr(layout, "MIN_ROWS", 64)
    raw = clustered(ROWS, seed=5)
    added = layout.order(raw)
    assert sorted(added.tolist()) == list(range(ROWS))  # every row once
    # grouped: each row's nearest sampled row changes at most 8 - 1 times along the order
    centres = raw[np.sort(np.random.default_rng(0).choice(ROWS, 8, replace=False))]
    nearest = np.argmax(raw[added] @ centres.T, axis=1)
    assert int((np.diff(nearest) != 0).sum()) <= 7
    assert (np.diff(nearest) >= 0).all()
    built, floats = segment()  # the graph's keys are still the row numbers, in whatever slots
    rows = np.arange(ROWS)
    assert np.allclose(built.vectors(rows), floats, atol=0.02)
    found, _ = built.search_floats(floats[:50], 1)
    # rows find themselves (keys as slots would find almost none); an approximate int8 graph built on
    # several threads may return a near-identical row instead, now and then
    assert (found[:, 0] == rows[:50]).mean() >= 0.9


def test_a_small_graph_adds_its_rows_in_row_order() -> None:
    from imgsearch import layout

    assert (layout.order(clustered(layout.MIN_ROWS - 1)) == np.arange(layout.MIN_ROWS - 1)).all()
