"""Tags: per-image top concepts stored in segments, carried by merges, shown on hits, filtered on."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imgsearch.cli import app
from imgsearch.concepts import TAG_MIN_SCORE, Concept, TopConcepts, Vocabulary
from imgsearch.encode import lsh
from imgsearch.errors import BadParameter
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec, default_model_dir
from imgsearch.npzmap import MappedNpz
from imgsearch.options import SearchOptions
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef, Segment
from imgsearch.store import LocalStore
from imgsearch.writer import BatchWriter
from tests.imagegen import synthetic_image

Vectors = Callable[..., np.ndarray]
NAMES = ["tabby", "golden retriever", "crane", "crane", "beach", "Siamese cat"]  # "crane" names two classes
VOCABULARY = Vocabulary([Concept(i, f"n{i:08d}", (name,), "") for i, name in enumerate(NAMES)])
TABBY, RETRIEVER, CRANE_BIRD, CRANE_MACHINE, BEACH, SIAMESE = range(len(NAMES))


def ref(key: str, sequencer: str = "1") -> ObjectRef:
    return ObjectRef(bucket="b", key=key, sequencer=sequencer)


def concepts(rows: list[list[tuple[int, int]]]) -> TopConcepts:
    """TopConcepts from rows of (class id, stored score 0..255), padded to 3 with zero scores."""
    ids = np.zeros((len(rows), 3), np.uint16)
    scores = np.zeros((len(rows), 3), np.uint8)
    for r, row in enumerate(rows):
        for c, (i, s) in enumerate(row):
            ids[r, c], scores[r, c] = i, s
    return TopConcepts(ids, scores)


def alternating(n: int) -> TopConcepts:
    """Even rows: tabby (0.71) then beach (0.10); odd rows: golden retriever (0.90), tabby below the threshold."""
    return concepts(
        [[(TABBY, 181), (BEACH, 26)] if i % 2 == 0 else [(RETRIEVER, 230), (TABBY, TAG_MIN_SCORE - 1)] for i in range(n)]
    )


@pytest.fixture
def index(tmp_path: Path, spec: ModelSpec) -> ImageIndex:
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    return index


def searcher_of(index: ImageIndex, vocabulary: Vocabulary | None = VOCABULARY, **kwargs: object) -> Searcher:
    searcher = Searcher(index, vocabulary=vocabulary, **kwargs)  # type: ignore[arg-type]
    searcher.refresh(force=True)
    return searcher


# --- storage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hnsw_min", [1 << 62, 50], ids=["exhaustive", "graph"])
def test_a_segment_round_trips_its_concepts_as_bytes_and_memory_mapped(
    tmp_path: Path, unit_vectors: Vectors, hnsw_min: int
) -> None:
    stored = alternating(80)
    built = Segment.build(
        refs=[ref(f"{i}.jpg") for i in range(80)],
        raw=unit_vectors(80),
        encoder=lsh(dim_in=64, bits=64),
        concepts=stored,
        hnsw_min=hnsw_min,
    )
    path = tmp_path / "query.npz"
    path.write_bytes(built.to_bytes())
    assert {"concept_ids", "concept_scores"} <= set(MappedNpz(path).files)
    for loaded in (Segment.from_bytes(path.read_bytes()), Segment.from_file(path)):
        assert loaded.concepts is not None
        assert loaded.concepts.ids.dtype == np.uint16 and loaded.concepts.scores.dtype == np.uint8
        assert np.array_equal(loaded.concepts.ids, stored.ids)
        assert np.array_equal(loaded.concepts.scores, stored.scores)
        assert not loaded.concepts.ids.flags.owndata  # a view into the bytes or the map, not a copy
        assert loaded.has_hnsw == (hnsw_min == 50)


def test_a_segment_without_concepts_stores_no_members_and_loads_with_no_tags(
    index: ImageIndex, unit_vectors: Vectors, tmp_path: Path
) -> None:
    built = Segment.build(refs=[ref("a.jpg")], raw=unit_vectors(1), encoder=lsh(dim_in=64, bits=64))
    path = tmp_path / "query.npz"
    path.write_bytes(built.to_bytes())
    assert not {"concept_ids", "concept_scores"} & set(MappedNpz(path).files)
    assert Segment.from_file(path).concepts is None

    index.append([ref("old.jpg")], unit_vectors(1, seed=3))  # as written before concepts existed
    (hit,) = searcher_of(index).search_key("old.jpg", k=1)
    assert hit.key == "old.jpg" and hit.tags == ()


def test_tombstone_and_rejection_only_segments_store_no_concepts(index: ImageIndex, unit_vectors: Vectors) -> None:
    batch = BatchWriter(index)
    batch.add([ref("a.jpg")], unit_vectors(1), concepts=alternating(1))
    batch.commit()
    batch.delete(ref("a.jpg", "2"))
    batch.reject(ref("bad.txt"), code="not_an_image", reason="text")
    written = batch.commit()
    assert written.segment is not None
    assert index.read_segment(written.segment.name).concepts is None


def test_batch_writer_aligns_concepts_with_refs_and_gives_rows_added_without_none(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    batch = BatchWriter(index)
    batch.add([ref("a.jpg"), ref("b.jpg")], unit_vectors(2), concepts=alternating(2))
    batch.add([ref("c.jpg")], unit_vectors(1, seed=1))  # no concepts for this one
    with pytest.raises(ValueError, match="concepts"):
        batch.add([ref("d.jpg")], unit_vectors(1, seed=2), concepts=alternating(2))
    written = batch.commit()
    assert written.segment is not None
    stored = index.read_segment(written.segment.name).concepts
    assert stored is not None
    assert stored.ids[:2].tolist() == alternating(2).ids.tolist()
    assert stored.scores[2].tolist() == [0, 0, 0]  # "none"


def test_a_merge_keeps_each_live_rows_concepts(index: ImageIndex, unit_vectors: Vectors) -> None:
    # GIVEN a segment with concepts, one without, and one replacing two images of the first with new ones
    index.append([ref(f"a{i}.jpg") for i in range(6)], unit_vectors(6), concepts=alternating(6))
    index.append([ref(f"n{i}.jpg") for i in range(3)], unit_vectors(3, seed=1))
    replaced = concepts([[(BEACH, 200)], [(SIAMESE, 100), (CRANE_BIRD, 90)]])
    index.append([ref("a0.jpg", "2"), ref("a3.jpg", "2")], unit_vectors(2, seed=2), concepts=replaced)
    index.delete([ref("a5.jpg", "3")])
    # WHEN they are merged
    result = index.compact(min_segments=1)
    assert result.entries == 8
    (info,) = index.manifest().segments
    merged = index.read_segment(info.name)
    # THEN each live row keeps the concepts of its own version; rows stored without get none
    assert merged.concepts is not None
    expected = {f"a{i}.jpg": alternating(6).take([i]) for i in (1, 2, 4)}
    expected |= {"a0.jpg": replaced.take([0]), "a3.jpg": replaced.take([1])}
    for row, key in enumerate(merged.table.keys.tolist()):
        if key.startswith("n"):
            assert not merged.concepts.scores[row].any()
        else:
            want = expected[key].widened(merged.concepts.ids.shape[1])
            assert merged.concepts.ids[row].tolist() == want.ids[0].tolist(), key
            assert merged.concepts.scores[row].tolist() == want.scores[0].tolist(), key


# --- tags on hits and the tag filter -----------------------------------------------------------------


def test_hits_carry_their_tags_above_the_threshold_most_probable_first(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    index.append([ref("even.jpg"), ref("odd.jpg")], unit_vectors(2), concepts=alternating(2))
    searcher = searcher_of(index)
    (even,) = searcher.search_key("even.jpg", k=1)
    (odd,) = searcher.search_key("odd.jpg", k=1)
    assert even.tags == (("tabby", 0.71), ("beach", 0.102))
    assert odd.tags == (("golden retriever", 0.902),)  # tabby at 12/255 is below 0.05


def test_hits_have_no_tags_when_the_model_folder_has_no_vocabulary(
    index: ImageIndex, unit_vectors: Vectors, tmp_path: Path
) -> None:
    index.append([ref("a.jpg")], unit_vectors(1), concepts=alternating(1))
    searcher = Searcher(index, model_dir=tmp_path / "no-model")
    (hit,) = searcher.search_key("a.jpg", k=1)
    assert hit.tags == ()
    with pytest.raises(BadParameter, match="vocabulary"):
        searcher.search_key("a.jpg", k=1, tag="tabby")


def filled(index: ImageIndex, unit_vectors: Vectors) -> np.ndarray:
    """Three segments of 40 (`s<segment>/<row>`, alternating tabby / golden retriever) and one without."""
    raw = unit_vectors(160, seed=7)
    for s in range(3):
        keys = [f"s{s}/{i:02d}.jpg" for i in range(40)]
        index.append([ref(k) for k in keys], raw[s * 40 : (s + 1) * 40], concepts=alternating(40))
    index.append([ref(f"plain/{i:02d}.jpg") for i in range(40)], raw[120:])
    return raw


@pytest.mark.parametrize("metric", ["hybrid", "cosine", "hamming"])
@pytest.mark.parametrize("pooling", [True, False])
def test_the_tag_filter_returns_only_tagged_images_and_combines_with_a_prefix(
    index: ImageIndex, unit_vectors: Vectors, metric: str, pooling: bool
) -> None:
    raw = filled(index, unit_vectors)
    searcher = searcher_of(index, pooling=pooling)
    tabby = searcher.search(raw[1], k=100, metric=metric, tag="tabby")[0]
    assert {h.key for h in tabby} == {f"s{s}/{i:02d}.jpg" for s in range(3) for i in range(0, 40, 2)}
    assert all(h.tags[0][0] == "tabby" for h in tabby)
    both = searcher.search(raw[1], k=100, metric=metric, tag="Golden_Retriever", prefix="s1/")[0]
    assert {h.key for h in both} == {f"s1/{i:02d}.jpg" for i in range(1, 40, 2)}
    assert searcher.search(raw[1], k=5, metric=metric, tag="Siamese cat")[0] == []  # nobody's tag


def test_the_tag_filter_works_on_a_graph_segment_and_in_more_like_this(
    index: ImageIndex, unit_vectors: Vectors
) -> None:
    raw = filled(index, unit_vectors)
    index.compact(hnsw_min=50, min_segments=1)
    searcher = searcher_of(index)
    assert all(live.segment.has_hnsw for live in searcher.live.segments)
    hits = searcher.search_key("s0/02.jpg", k=10, tag="tabby")
    assert hits[0].key == "s0/02.jpg" and len(hits) == 10
    assert all(h.tags[0][0] == "tabby" for h in hits)
    exact = searcher.search(raw[3], k=100, tag="golden retriever", prefix="s2/", exact=True)[0]
    assert {h.key for h in exact} == {f"s2/{i:02d}.jpg" for i in range(1, 40, 2)}
    assert searcher.search(raw[3], k=5, tag="golden retriever", prefix="plain/")[0] == []


def test_a_tag_naming_two_classes_matches_either(index: ImageIndex, unit_vectors: Vectors) -> None:
    stored = concepts([[(CRANE_BIRD, 100)], [(CRANE_MACHINE, 100)], [(TABBY, 100)]])
    index.append([ref("bird.jpg"), ref("machine.jpg"), ref("cat.jpg")], unit_vectors(3), concepts=stored)
    hits = searcher_of(index).search(unit_vectors(1, seed=9), k=10, tag="crane")[0]
    assert sorted(h.key for h in hits) == ["bird.jpg", "machine.jpg"]


def test_an_unknown_tag_is_a_bad_parameter_saying_what_tags_are(index: ImageIndex, unit_vectors: Vectors) -> None:
    index.append([ref("a.jpg")], unit_vectors(1), concepts=alternating(1))
    searcher = searcher_of(index)
    with pytest.raises(BadParameter, match="unknown tag 'unicorn': tags are ImageNet class names"):
        searcher.search(unit_vectors(1), tag="unicorn")
    with pytest.raises(BadParameter, match="tag must be a class name"):
        SearchOptions(tag="   ")
    assert SearchOptions(tag="tabby").search_kwargs()["tag"] == "tabby"


# --- the CLI, with the real model --------------------------------------------------------------------


def test_the_cli_stores_tags_shows_them_and_filters_by_them(tmp_path: Path) -> None:
    model_dir = default_model_dir()
    ModelSpec.load(model_dir)  # fails (not skips) with a clear message if the model is missing
    names = set(Vocabulary.load(model_dir, ModelSpec.load(model_dir)).names)
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(4):
        (photos / f"img_{seed}.png").write_bytes(synthetic_image(seed))
    index = str(tmp_path / "index")
    runner = CliRunner()
    assert runner.invoke(app, ["index", "--index", index, str(photos), "--threads", "2"]).exit_code == 0

    result = runner.invoke(app, ["search", "--index", index, "img_0.png", "--json", "--k", "4"])
    assert result.exit_code == 0, result.output
    (answer,) = [json.loads(line) for line in result.stdout.splitlines()]
    hits = answer["hits"]
    assert hits[0]["key"] == "img_0.png" and len(hits) == 4
    assert any(h["tags"] for h in hits)  # arbitrary for generated images, but present (a diffuse one may have none)
    for hit in hits:
        assert all(name in names and 0.05 <= p <= 1 for name, p in hit["tags"])
        assert [p for _, p in hit["tags"]] == sorted((p for _, p in hit["tags"]), reverse=True)

    key, tag = next((h["key"], h["tags"][0][0]) for h in hits if h["tags"])
    tagged = runner.invoke(app, ["search", "--index", index, key, "--json", "--tag", tag])
    assert tagged.exit_code == 0, tagged.output
    found = json.loads(tagged.stdout)["hits"]
    assert found[0]["key"] == key
    assert all(tag in [name for name, _ in h["tags"]] for h in found)
    untagged = {h["key"] for h in hits if tag not in [name for name, _ in h["tags"]]}
    assert not untagged & {h["key"] for h in found}

    human = runner.invoke(app, ["search", "--index", index, key, "--k", "1"])
    assert human.exit_code == 0 and f"{key}  [{tag} " in human.stdout

    unknown = runner.invoke(app, ["search", "--index", index, "img_0.png", "--tag", "unicorn"])
    assert unknown.exit_code == 2 and "unknown tag 'unicorn'" in unknown.output
