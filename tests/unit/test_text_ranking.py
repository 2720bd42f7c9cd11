"""Searcher.search_text: words alone (candidates along the words' direction re-ranked by the chosen
fusion of stored concepts and concept logits), and an image or a key with words (one vector)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from imgsearch.concepts import (
    TEXT_WEIGHTS,
    Concept,
    ConceptHead,
    ConceptQuery,
    TopConcepts,
    Vocabulary,
    concept_scores,
    fuse_scores,
    image_text_vector,
)
from imgsearch.encode import fit_itq, hamming, lsh
from imgsearch.errors import BadParameter, KeyNotIndexed
from imgsearch.index import ImageIndex
from imgsearch.modelspec import ModelSpec
from imgsearch.search import Searcher
from imgsearch.segment import ObjectRef
from imgsearch.store import LocalStore
from imgsearch.text import TextQuery
from imgsearch.writer import BatchWriter

Vectors = Callable[..., np.ndarray]
N, CLASSES = 120, 4
VOCABULARY = Vocabulary([Concept(i, f"n{i:08d}", (f"class{i}",), "") for i in range(CLASSES)])


def refs(n: int) -> list[ObjectRef]:
    return [ObjectRef(bucket="b", key=f"{i:03d}.jpg", sequencer="1") for i in range(n)]


def stored_concepts(n: int, rng: np.random.Generator) -> TopConcepts:
    ids = np.stack([rng.permutation(CLASSES)[:2] for _ in range(n)]).astype(np.uint16)
    return TopConcepts(ids, rng.integers(0, 256, (n, 2)).astype(np.uint8))


@pytest.fixture
def world(tmp_path: Path, spec: ModelSpec, unit_vectors: Vectors) -> tuple[ImageIndex, np.ndarray, TopConcepts, ConceptHead]:
    rng = np.random.default_rng(5)
    raw = unit_vectors(N)
    concepts = stored_concepts(N, rng)
    index = ImageIndex(LocalStore(tmp_path / "index"))
    index.ensure(spec, bits=64)
    writer = BatchWriter(index)
    writer.add(refs(N), raw, concepts=concepts)
    writer.commit()
    head = ConceptHead(rng.standard_normal((CLASSES, raw.shape[1])).astype(np.float32), rng.standard_normal(CLASSES).astype(np.float32))
    return index, raw, concepts, head


def words(head: ConceptHead, ids: list[int], weights: list[float]) -> TextQuery:
    concepts = ConceptQuery.of(ids, weights, text="test")
    return TextQuery(text="test", direction=head.direction(concepts), concepts=concepts, head=head)


def test_words_alone_rank_every_candidate_by_the_fusion_of_stored_concepts_and_logits(world) -> None:
    index, raw, stored, head = world
    query = words(head, [1, 3], [1.0, 0.5])
    searcher = Searcher(index, vocabulary=VOCABULARY)

    hits = searcher.search_text(query, k=20, metric="cosine", exact=True)

    # fewer rows than TEXT_CANDIDATES: every row is a candidate, ranked by the documented fusion
    expected = fuse_scores(
        [concept_scores(stored, query.concepts), head.scores(index.encoder(searcher.manifest.encoder).floats(raw), query.concepts)],
        list(TEXT_WEIGHTS),
    ) / sum(TEXT_WEIGHTS)
    order = np.argsort(-expected, kind="stable")[:20]
    assert [h.key for h in hits] == [f"{i:03d}.jpg" for i in order]
    assert [h.score for h in hits] == pytest.approx(expected[order].tolist(), abs=1e-3)  # floats stored as f16
    assert 0.0 <= hits[-1].score <= hits[0].score <= 1.0


def test_words_alone_pages_are_slices_of_one_ranking(world) -> None:
    index, _, _, head = world
    searcher = Searcher(index, vocabulary=VOCABULARY)
    query = words(head, [0], [1.0])
    whole = [h.key for h in searcher.search_text(query, k=30)]
    pages = [h.key for offset in (0, 10, 20) for h in searcher.search_text(query, k=10, offset=offset)]
    assert pages == whole and len(set(whole)) == 30


def test_words_alone_on_a_fitted_index_use_the_head_projected_into_its_float_space(
    tmp_path: Path, spec: ModelSpec, unit_vectors: Vectors
) -> None:
    rng = np.random.default_rng(9)
    raw = unit_vectors(N)
    index = ImageIndex(LocalStore(tmp_path / "fitted"))
    index.ensure(spec, bits=64)
    writer = BatchWriter(index)
    writer.add(refs(N), raw)  # no stored concepts: the logits alone rank
    writer.commit()
    index.fit(bits=16, dims=16, min_count=50)
    head = ConceptHead(rng.standard_normal((CLASSES, raw.shape[1])).astype(np.float32), np.zeros(CLASSES, np.float32))
    query = words(head, [2], [1.0])
    searcher = Searcher(index, vocabulary=VOCABULARY)

    hits = searcher.search_text(query, k=10, metric="cosine", exact=True)

    encoder = index.encoder(searcher.manifest.encoder)
    assert encoder.projection is not None
    projected = head.projected(encoder.mean, encoder.back)
    scores = projected.scores(encoder.floats(raw), query.concepts)
    assert [h.key for h in hits] == [f"{i:03d}.jpg" for i in np.argsort(-scores, kind="stable")[:10]]


def test_an_image_with_words_is_searched_as_one_vector_image_plus_four_times_the_direction(world) -> None:
    index, raw, _, head = world
    searcher = Searcher(index, vocabulary=VOCABULARY)
    query = words(head, [1], [1.0])

    hits = searcher.search_text(query, image=raw[7], k=5, metric="cosine", exact=True)

    encoder = index.encoder(searcher.manifest.encoder)
    floats = encoder.floats(raw)
    combined = image_text_vector(floats[7], encoder.direction(query.direction[None])[0])
    expected = np.argsort(-(floats @ combined), kind="stable")[:5]
    assert [h.key for h in hits] == [f"{i:03d}.jpg" for i in expected]
    # by key: the stored vector is the origin, so the same answer
    assert [h.key for h in searcher.search_text(query, key="007.jpg", k=5, metric="cosine", exact=True)] == [h.key for h in hits]


def test_a_key_with_words_must_be_indexed_and_not_come_with_an_image(world) -> None:
    index, raw, _, head = world
    searcher = Searcher(index, vocabulary=VOCABULARY)
    query = words(head, [1], [1.0])
    with pytest.raises(KeyNotIndexed):
        searcher.search_text(query, key="nope.jpg")
    with pytest.raises(BadParameter, match="not both"):
        searcher.search_text(query, key="007.jpg", image=raw[0])


@pytest.mark.parametrize("kind", ["lsh", "itq"])
def test_embedding_of_gives_back_the_floats_and_the_codes(unit_vectors: Vectors, kind: str) -> None:
    raw = unit_vectors(300)
    encoder = lsh(dim_in=raw.shape[1], bits=64) if kind == "lsh" else fit_itq(raw, bits=32, dims=32)
    floats = encoder.floats(raw)
    again = encoder.embedding_of(floats)
    assert np.allclose(encoder.floats(again), floats, atol=1e-5)
    if kind == "itq":  # the codes' signs depend only on the float part (bits = dims: the same PCA)
        assert np.array_equal(encoder.codes(again), encoder.codes(raw))


# --- α-query expansion (an option of every image and key query) --------------------------------------


def _expanded_ranking(floats: np.ndarray, q: np.ndarray, *, k: int, expand: int) -> tuple[np.ndarray, np.ndarray]:
    """What expansion should give, by hand: the first min(k × RERANK_WIDTH, MAX_K) by cosine, ordered
    EXPAND_ROUNDS times by the query moved toward the first `expand` of the order so far, then by diffusion
    over them (tests/unit/test_rerank.py); (rows, the query's own cosine to them)."""
    from imgsearch.options import MAX_K
    from imgsearch.rerank import diffused
    from imgsearch.search import EXPAND_ALPHA, EXPAND_ROUNDS, RERANK_WIDTH

    order = np.argsort(-(floats @ q), kind="stable")[: min(k * RERANK_WIDTH, MAX_K)]
    scores = floats[order] @ q
    for _ in range(EXPAND_ROUNDS):
        first, weights = order[:expand], np.maximum(scores[:expand], 0) ** EXPAND_ALPHA
        moved = q + (weights[:, None] * floats[first]).sum(axis=0)
        moved /= np.linalg.norm(moved)
        again = floats[order] @ moved
        order, scores = order[np.argsort(-again, kind="stable")], np.sort(again)[::-1]
    order = order[np.argsort(-diffused(floats[order], scores), kind="stable")]
    return order, floats[order] @ q


def _query_floats(index: ImageIndex, searcher: Searcher, raw: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    searcher.refresh()
    encoder = index.encoder(searcher.manifest.encoder)  # type: ignore[union-attr]
    q = encoder.floats(query[None])[0]
    return encoder.floats(raw), q / np.linalg.norm(q)


def test_expansion_reranks_the_first_hits_by_the_query_moved_toward_its_first_few(world) -> None:
    index, raw, _, _ = world
    searcher = Searcher(index, vocabulary=VOCABULARY)
    query = raw[3] + 0.3 * raw[50]
    hits = searcher.search(query[None], k=8, metric="cosine", exact=True, expand=5)[0]

    floats, q = _query_floats(index, searcher, raw, query)
    order, own = _expanded_ranking(floats, q, k=8, expand=5)
    plain = np.argsort(-(floats @ q), kind="stable")[:8]
    assert [h.key for h in hits] == [f"{i:03d}.jpg" for i in order[:8]] != [f"{i:03d}.jpg" for i in plain]
    # the scores stay the query's own cosine (what min_score filters on), in the re-ranked order
    assert [h.score for h in hits] == pytest.approx(own[:8].tolist(), abs=2e-3)
    # off with expand=0
    assert [h.key for h in searcher.search(query[None], k=8, metric="cosine", exact=True, expand=0)[0]] == [
        f"{i:03d}.jpg" for i in plain
    ]
    # pages of one k are slices of one re-ranked list
    pages = [h.key for o in (0, 4) for h in searcher.search(query[None], k=4, offset=o, metric="cosine", exact=True, expand=5)[0]]
    assert pages == [f"{i:03d}.jpg" for i in _expanded_ranking(floats, q, k=4, expand=5)[0][:8]]


def test_expansion_is_on_by_default_over_default_expand_hits(world) -> None:
    from imgsearch.options import DEFAULT_EXPAND

    index, raw, _, _ = world
    searcher = Searcher(index, vocabulary=VOCABULARY)
    query = (raw[3] + 0.3 * raw[50])[None]
    default = searcher.search(query, k=8, metric="cosine", exact=True)[0]
    assert default == searcher.search(query, k=8, metric="cosine", exact=True, expand=DEFAULT_EXPAND)[0]
    assert default != searcher.search(query, k=8, metric="cosine", exact=True, expand=0)[0]


def test_min_score_keeps_a_hit_above_it_that_the_reranking_moved_past_the_page(world) -> None:
    index, raw, _, _ = world
    searcher = Searcher(index, vocabulary=VOCABULARY)
    query = raw[3] + 0.3 * raw[50]
    floats, q = _query_floats(index, searcher, raw, query)
    order, own = _expanded_ranking(floats, q, k=4, expand=5)
    threshold = float(own[4:].max()) - 1e-4  # the best cosine the re-ranking moved past a page of four …
    assert own[:4].min() < threshold  # … above one it kept on that page
    hits = searcher.search(query[None], k=4, metric="cosine", exact=True, expand=5, min_score=threshold)[0]
    assert [h.key for h in hits] == [f"{i:03d}.jpg" for i in order[own >= threshold][:4]]
    assert f"{order[4 + int(np.argmax(own[4:]))]:03d}.jpg" in [h.key for h in hits]
    assert all(h.score >= threshold for h in hits)


def test_hamming_expansion_reranks_by_the_moved_querys_codes(world) -> None:
    from imgsearch.search import EXPAND_ALPHA, EXPAND_ROUNDS

    index, raw, _, _ = world
    searcher = Searcher(index, vocabulary=VOCABULARY)
    query = raw[3] + 0.3 * raw[50]
    hits = searcher.search(query[None], k=6, metric="hamming", exact=True, expand=5)[0]
    encoder = index.encoder(searcher.manifest.encoder)  # type: ignore[union-attr]
    codes, bits = encoder.codes(raw), encoder.bits
    own = 1.0 - hamming(codes, encoder.codes(query[None])[0]) / bits
    order = np.argsort(-own, kind="stable")[:60]
    scores = own[order]
    floats, q = _query_floats(index, searcher, raw, query)
    for _ in range(EXPAND_ROUNDS):  # each move weighs the first five by their scores in the last order
        moved = q + ((np.maximum(scores[:5], 0) ** EXPAND_ALPHA)[:, None] * floats[order[:5]]).sum(axis=0)
        moved_code = encoder.codes(encoder.embedding_of((moved / np.linalg.norm(moved))[None]))[0]
        again = 1.0 - hamming(codes[order], moved_code) / bits
        order, scores = order[np.argsort(-again, kind="stable")], np.sort(again)[::-1]
    assert [h.key for h in hits] == [f"{i:03d}.jpg" for i in order[:6]]
    assert [h.score for h in hits] == pytest.approx(own[order[:6]].tolist(), abs=1e-6)


def test_expansion_is_bounded_and_applies_to_more_like_this(world) -> None:
    index, _, _, _ = world
    searcher = Searcher(index, vocabulary=VOCABULARY)
    with pytest.raises(BadParameter, match="expand must be a whole number from 0 to 50"):
        searcher.search_key("007.jpg", expand=51)
    plain = searcher.search_key("007.jpg", k=5, metric="cosine", exact=True, expand=0)
    expanded = searcher.search_key("007.jpg", k=5, metric="cosine", exact=True, expand=3)
    assert plain[0].key == expanded[0].key == "007.jpg"
    assert expanded[0].score == plain[0].score == pytest.approx(1.0, abs=2e-3)  # the image itself, still 1


# --- thumbnails from the model's decode ---------------------------------------------------------------


def test_embed_all_makes_one_small_jpeg_per_image_from_the_same_decode() -> None:
    import io

    from PIL import Image

    from imgsearch.embed import Embedder
    from tests.imagegen import synthetic_image

    embedder = Embedder.load()
    images = [synthetic_image(i) for i in range(3)] + [b"not an image"]
    done = embedder.embed_all(lambda i: images[i], len(images), thumbnails=True)
    assert done.indices == [0, 1, 2] and done.thumbnails is not None and len(done.thumbnails) == 3
    for data in done.thumbnails:
        thumb = Image.open(io.BytesIO(data))
        assert thumb.format == "JPEG" and max(thumb.size) <= 160
    assert embedder.embed_all(lambda i: images[i], len(images)).thumbnails is None  # only when asked
