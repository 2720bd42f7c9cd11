"""S3VectorsBackend against moto's S3 Vectors (with imgsearch's QueryVectors) over HTTP: writes under the
ordering rule, queries with prefix filters, paging and scores, the race the rule cannot rule out, and
the same vectors giving the same top-10 through the segment backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgsearch.backend import Batch, IndexBackend, SegmentBackend, open_backend
from imgsearch.errors import BadParameter, IndexNotFound, KeyNotIndexed, ModelMismatch
from imgsearch.index import ImageIndex
from imgsearch.local import s3vectors_query
from imgsearch.modelspec import ModelSpec
from imgsearch.options import SearchOptions
from imgsearch.s3vectors import (
    FILTERABLE_BUDGET,
    MAX_TOP_K,
    NON_FILTERABLE,
    S3VectorsBackend,
    VectorIndexRef,
    key_prefixes,
    metadata,
)
from imgsearch.segment import ObjectRef

BUCKET = "photos"


@pytest.fixture
def client(moto_endpoint: str, aws_env: None) -> Any:
    import boto3

    s3vectors_query.install()
    return boto3.client("s3vectors", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def make_backend(client: Any, spec: ModelSpec) -> Callable[..., S3VectorsBackend]:
    """make_backend(where=None): a backend on a new index (or a second client on the same one)."""

    def make(where: VectorIndexRef | None = None) -> S3VectorsBackend:
        fresh = where is None
        where = where or VectorIndexRef(f"vb-{uuid.uuid4().hex[:12]}", "images")
        backend = S3VectorsBackend(where, client=client, bucket=BUCKET)
        if fresh:
            backend.create(dimension=spec.output_dim)
        backend.ensure(spec)
        return backend

    return make


@pytest.fixture
def backend(make_backend: Callable[..., S3VectorsBackend]) -> S3VectorsBackend:
    return make_backend()


def ref(key: str, sequencer: str = "1", etag: str = "e1", size: int = 100) -> ObjectRef:
    return ObjectRef(bucket=BUCKET, key=key, etag=etag, size=size, sequencer=sequencer, time=1.0)


def adds(refs: list[ObjectRef], raw: np.ndarray) -> Batch:
    batch = Batch()
    batch.add(refs, raw)
    return batch


def cosine(k: int = 10, **options: Any) -> SearchOptions:
    """Cosine options, without expansion unless asked (the segment backend's default is on, S3 Vectors' off)."""
    return SearchOptions(k=k, metric="cosine", **{"expand": 0, **options})


def stored_etag(backend: S3VectorsBackend, key: str) -> str | None:
    held = backend.stored([key]).get(key)
    return held.etag if held else None


# --- writes ---------------------------------------------------------------------------------------------


def test_adds_are_searchable_with_their_object_facts(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    x = unit_vectors(20)
    refs = [ref(f"img/{i:02d}.jpg", etag=f"etag{i}", size=1000 + i) for i in range(20)]
    written = backend.write(adds(refs, x * 3.0))  # any length: stored L2-normalised
    assert (written.indexed, written.deleted, written.rejected, written.skipped) == (20, 0, 0, 0)
    assert backend.scan_count() == 20
    (hits,) = backend.search(x[7:8], cosine(k=3))
    assert hits[0].key == "img/07.jpg"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert (hits[0].bucket, hits[0].etag, hits[0].size) == (BUCKET, "etag7", 1007)
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_more_puts_than_one_call_takes_are_split(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    x = unit_vectors(620, seed=3)
    written = backend.write(
        adds([ref(f"many/{i}.jpg") for i in range(620)], x)
    )  # > 500 per PutVectors, > 100 per GetVectors
    assert written.indexed == 620
    assert backend.scan_count() == 620


def test_an_overwrite_replaces_the_vector_and_facts(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    old, new = unit_vectors(2, seed=1)
    backend.write(adds([ref("cat.jpg", "0A", "old")], old[None]))
    written = backend.write(adds([ref("cat.jpg", "0B", "new")], new[None]))
    assert written.indexed == 1 and written.skipped == 0
    (hits,) = backend.search(new[None], cosine(k=1))
    assert (hits[0].key, hits[0].etag) == ("cat.jpg", "new")
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert backend.scan_count() == 1


def test_a_delete_removes_the_vector(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    x = unit_vectors(3)
    backend.write(adds([ref(f"d/{i}.jpg", "10") for i in range(3)], x))
    batch = Batch()
    batch.delete(ref("d/1.jpg", "11"))
    written = backend.write(batch)
    assert written.deleted == 1
    assert sorted(backend.keys()) == ["d/0.jpg", "d/2.jpg"]
    with pytest.raises(KeyNotIndexed):
        backend.search_key("d/1.jpg", BUCKET, cosine())


def test_stale_events_are_ignored(backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]) -> None:
    """An older upload or delete never undoes a newer upload; the same event again writes nothing."""
    x = unit_vectors(2, seed=5)
    backend.write(adds([ref("k.jpg", "0000B0", "newer")], x[:1]))
    older = backend.write(adds([ref("k.jpg", "A0", "older")], x[1:]))  # shorter sequencer: compared padded
    assert (older.indexed, older.skipped) == (0, 1)
    stale_delete = Batch()
    stale_delete.delete(ref("k.jpg", "AF"))
    assert backend.write(stale_delete).skipped == 1
    again = backend.write(adds([ref("k.jpg", "B0", "newer")], x[:1]))  # redelivered
    assert (again.indexed, again.skipped) == (0, 1)
    assert stored_etag(backend, "k.jpg") == "newer"


def test_within_one_batch_the_newest_change_wins_and_a_delete_wins_a_tie(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    x = unit_vectors(3, seed=6)
    batch = Batch()
    batch.add([ref("a.jpg", "2", "second"), ref("a.jpg", "1", "first"), ref("b.jpg", "5")], x)
    batch.delete(ref("b.jpg", "5"))
    written = backend.write(batch)
    assert stored_etag(backend, "a.jpg") == "second"
    assert stored_etag(backend, "b.jpg") is None
    assert (written.indexed, written.deleted) == (1, 1)


def test_keys_and_vectors_it_cannot_store_are_rejections(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    x = unit_vectors(3)
    x[1] = 0.0
    batch = adds([ref("ok.jpg"), ref("zero.jpg"), ref("d/" * 520 + "long.jpg")], x)
    batch.reject(ref("broken.jpg"), code="not_an_image", reason="corrupt")
    written = backend.write(batch)
    assert (written.indexed, written.rejected) == (1, 3)
    assert sorted(r.code for r in written.refused) == ["bad_vector", "key_too_long"]
    assert list(backend.keys()) == ["ok.jpg"]


def test_an_object_of_another_bucket_is_refused(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    other = ObjectRef(bucket="elsewhere", key="x.jpg", sequencer="1")
    with pytest.raises(BadParameter, match="one index per images bucket"):
        backend.write(adds([other], unit_vectors(1)))


def test_metadata_keeps_prefixes_within_the_filterable_budget() -> None:
    meta = metadata(ref("a/b/c.jpg", "1F"), content_type="image/jpeg", model="abc")
    assert meta["prefixes"] == ["a/", "a/b/"] and "deep" not in meta
    assert (meta["bucket"], meta["content_type"], meta["sequencer"]) == (
        BUCKET,
        "image/jpeg",
        "1F".rjust(32, "0"),
    )
    assert set(NON_FILTERABLE) <= set(meta)
    deep_key = "/".join(f"folder-{i:03d}" for i in range(60)) + "/x.jpg"
    deep = metadata(ref(deep_key))
    filterable = {k: v for k, v in deep.items() if k not in NON_FILTERABLE}
    assert deep["deep"] is True
    assert 0 < len(deep["prefixes"]) < len(key_prefixes(deep_key))
    assert deep["prefixes"] == key_prefixes(deep_key)[: len(deep["prefixes"])]  # the shallowest are kept
    import json

    assert len(json.dumps(filterable, separators=(",", ":")).encode()) <= FILTERABLE_BUDGET


# --- queries --------------------------------------------------------------------------------------------


@pytest.fixture
def tree(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> tuple[S3VectorsBackend, np.ndarray, list[str]]:
    keys = (
        [f"a/x/{i}.jpg" for i in range(10)]
        + [f"a/y/{i}.jpg" for i in range(10)]
        + [f"b{i}.jpg" for i in range(10)]
    )
    keys.append("/".join(f"folder-{i:03d}" for i in range(60)) + "/deep.jpg")
    x = unit_vectors(len(keys), seed=9)
    backend.write(adds([ref(k) for k in keys], x))
    return backend, x, keys


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("a/", "a/"),  # a directory: the filter alone is exact
        ("a/x/", "a/x/"),
        ("a/x/1", "a/x/1"),  # part of a name: the directory filter, then the rest checked on the keys
        ("b", "b"),  # no directory at all: the nearest MAX_TOP_K, checked on the keys
        ("folder-000/folder-001/", "folder-000/"),
    ],
)
def test_a_prefix_filter_returns_only_keys_under_it(
    tree: tuple[S3VectorsBackend, np.ndarray, list[str]], prefix: str, expected: str
) -> None:
    backend, x, keys = tree
    under = [k for k in keys if k.startswith(prefix)]
    (hits,) = backend.search(x[-1:], cosine(k=10, prefix=prefix))
    assert hits and all(h.key.startswith(expected) and h.key.startswith(prefix) for h in hits)
    assert len(hits) == min(10, len(under))


def test_a_prefix_deeper_than_the_kept_prefixes_still_finds_the_key(
    tree: tuple[S3VectorsBackend, np.ndarray, list[str]],
) -> None:
    backend, x, keys = tree
    deep = keys[-1]
    (hits,) = backend.search(x[:1], cosine(k=5, prefix=deep.rsplit("/", 1)[0] + "/"))
    assert [h.key for h in hits] == [deep]


def test_pages_are_slices_of_one_ranking(tree: tuple[S3VectorsBackend, np.ndarray, list[str]]) -> None:
    backend, x, _ = tree
    (top,) = backend.search(x[:1], cosine(k=20))
    pages = [backend.search(x[:1], cosine(k=5, offset=offset))[0] for offset in (0, 5, 10, 15)]
    assert [h.key for page in pages for h in page] == [h.key for h in top]


def test_offset_plus_k_beyond_the_top_k_limit_is_a_bad_parameter(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    with pytest.raises(BadParameter, match=f"at most {MAX_TOP_K}"):
        backend.search(unit_vectors(1), cosine(k=10, offset=MAX_TOP_K - 9))
    backend.search(unit_vectors(1), cosine(k=10, offset=MAX_TOP_K - 10))  # the last page allowed


def test_min_score_drops_lower_scores(tree: tuple[S3VectorsBackend, np.ndarray, list[str]]) -> None:
    backend, x, _ = tree
    (everything,) = backend.search(x[:1], cosine(k=30))
    threshold = everything[5].score
    (kept,) = backend.search(x[:1], cosine(k=30, min_score=threshold))
    assert kept == [h for h in everything if h.score >= threshold]
    assert 6 <= len(kept) < 30


def test_hamming_is_refused_and_hybrid_ranks_by_cosine(
    tree: tuple[S3VectorsBackend, np.ndarray, list[str]],
) -> None:
    backend, x, _ = tree
    with pytest.raises(BadParameter, match="keeps no binary codes"):
        backend.search(x[:1], SearchOptions(k=5, metric="hamming"))
    with pytest.raises(BadParameter, match="keeps no binary codes"):
        backend.search_key("b1.jpg", BUCKET, SearchOptions(k=5, metric="hamming"))
    assert backend.search(x[:1], SearchOptions(k=5, metric="hybrid")) == backend.search(x[:1], cosine(k=5))


def test_more_like_this_searches_with_the_stored_vector(
    tree: tuple[S3VectorsBackend, np.ndarray, list[str]],
) -> None:
    backend, x, keys = tree
    hits = backend.search_key("a/y/3.jpg", BUCKET, cosine(k=5))
    assert hits[0].key == "a/y/3.jpg" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits == backend.search(x[keys.index("a/y/3.jpg")][None], cosine(k=5))[0]
    assert [h.key for h in backend.search_key("a/y/3.jpg", None, cosine(k=3, prefix="a/x/"))] == [
        h.key for h in backend.search(x[keys.index("a/y/3.jpg")][None], cosine(k=3, prefix="a/x/"))[0]
    ]
    with pytest.raises(KeyNotIndexed):
        backend.search_key("a/y/3.jpg", "another-bucket", cosine())
    with pytest.raises(KeyNotIndexed):
        backend.search_key("nothing.jpg", BUCKET, cosine())


# --- the index itself -----------------------------------------------------------------------------------


def test_ensure_checks_the_dimension_and_health_reports_the_index(
    backend: S3VectorsBackend, spec: ModelSpec, client: Any
) -> None:
    wrong = ModelSpec(**{**spec.__dict__, "output_dim": spec.output_dim + 1})
    with pytest.raises(ModelMismatch, match="dimension"):
        backend.ensure(wrong)
    health = backend.health()
    assert (health["status"], health["backend"], health["dimension"], health["count"]) == (
        "ok",
        "s3vectors",
        spec.output_dim,
        None,
    )
    assert backend.count() is None
    missing = S3VectorsBackend(VectorIndexRef("vb-not-created", "images"), client=client)
    assert missing.health()["status"] == "missing"
    with pytest.raises(IndexNotFound, match="indexBackend=s3vectors"):
        missing.ensure(spec)


def test_the_index_is_created_with_cosine_float32_and_the_non_filterable_keys(
    backend: S3VectorsBackend, spec: ModelSpec
) -> None:
    info = backend.info(fresh=True)
    assert (info["dimension"], info["distanceMetric"], info["dataType"]) == (
        spec.output_dim,
        "cosine",
        "float32",
    )
    assert info["metadataConfiguration"]["nonFilterableMetadataKeys"] == list(NON_FILTERABLE)


def test_open_backend_chooses_by_location(tmp_path: Path, moto_endpoint: str, aws_env: None) -> None:
    assert isinstance(open_backend(str(tmp_path / "idx")), SegmentBackend)
    vectors = open_backend("s3vectors://my-vectors/images", endpoint_url=moto_endpoint, bucket=BUCKET)
    assert isinstance(vectors, S3VectorsBackend) and vectors.where.params == {
        "vectorBucketName": "my-vectors",
        "indexName": "images",
    }
    arn = "arn:aws:s3vectors:eu-west-1:123456789012:bucket/my-vectors/index/images"
    by_arn = open_backend(arn, endpoint_url=moto_endpoint)
    assert isinstance(by_arn, S3VectorsBackend) and by_arn.where.params == {"indexArn": arn}
    assert by_arn.where.region == "eu-west-1"
    assert isinstance(vectors, IndexBackend) and isinstance(open_backend(str(tmp_path / "i2")), IndexBackend)
    with pytest.raises(BadParameter, match="s3vectors://VECTOR-BUCKET/INDEX"):
        VectorIndexRef.parse("s3vectors://My_Bucket")


# --- the race the ordering rule cannot rule out ---------------------------------------------------------


def race(
    make_backend: Callable[..., S3VectorsBackend], x: np.ndarray
) -> tuple[S3VectorsBackend, S3VectorsBackend, Batch, Batch]:
    """Two writers of one key: A carries the older event (sequencer 1), B the newer (sequencer 2)."""
    a = make_backend()
    b = make_backend(a.where)
    return a, b, adds([ref("race.jpg", "1", "older")], x[:1]), adds([ref("race.jpg", "2", "newer")], x[1:2])


def test_race_an_older_write_landing_before_the_newer_writers_check_is_repaired(
    make_backend: Callable[..., S3VectorsBackend], unit_vectors: Callable[..., np.ndarray]
) -> None:
    """GIVEN both writers read the key before either writes (both see nothing)
    WHEN B writes, then A writes its older version over it, then B verifies, then A verifies
    THEN B's verify sees the older sequencer and puts its version again: the newer one stays."""
    a, b, older, newer = race(make_backend, unit_vectors(2, seed=11))
    plan_a, plan_b = a.plan(older), b.plan(newer)
    assert plan_a.puts and plan_b.puts  # neither saw the other: no conditional write stops them
    b.apply(plan_b)
    a.apply(plan_a)
    assert stored_etag(a, "race.jpg") == "older"  # for a moment the older version is held
    assert b.verify(plan_b) == 1  # repaired
    assert a.verify(plan_a) == 0  # A sees a newer version: nothing to do
    assert stored_etag(a, "race.jpg") == "newer"


def test_race_a_delete_undone_by_an_older_upload_is_deleted_again(
    make_backend: Callable[..., S3VectorsBackend], unit_vectors: Callable[..., np.ndarray]
) -> None:
    a, b, older, _ = race(make_backend, unit_vectors(2, seed=12))
    delete = Batch()
    delete.delete(ref("race.jpg", "2"))
    plan_a, plan_b = a.plan(older), b.plan(delete)
    b.apply(plan_b)
    a.apply(plan_a)
    assert b.verify(plan_b) == 1
    assert stored_etag(a, "race.jpg") is None


def test_race_the_window_left_when_the_older_write_lands_after_the_newer_writers_check(
    make_backend: Callable[..., S3VectorsBackend], unit_vectors: Callable[..., np.ndarray]
) -> None:
    """The documented window: A reads, B reads, writes and verifies, and only then A writes. Nothing
    re-reads after that, so the older version stays until the key's next change (a newer event, or a
    re-export) puts the right one. In ingest the window is the milliseconds between A's GetVectors and
    its PutVectors (embedding happens before both), and A's If-Match GET has already skipped any event
    whose object was overwritten before it was fetched."""
    x = unit_vectors(3, seed=13)
    a, b, older, newer = race(make_backend, x)
    plan_a = a.plan(older)
    b.write(newer)  # plan, apply, verify: all before A writes
    a.apply(plan_a)
    assert a.verify(plan_a) == 0
    assert stored_etag(a, "race.jpg") == "older"  # the stale version won the window
    assert b.write(adds([ref("race.jpg", "3", "latest")], x[2:])).indexed == 1  # the next change converges
    assert stored_etag(a, "race.jpg") == "latest"


# --- the same vectors through both backends -------------------------------------------------------------


def test_segment_and_s3vectors_backends_give_the_same_top_10(
    backend: S3VectorsBackend, spec: ModelSpec, tmp_path: Path, unit_vectors: Callable[..., np.ndarray]
) -> None:
    """Both rank by cosine over the raw embeddings (the segment index's LSH encoder keeps them as its
    floats). The segment index stores them as float16, S3 Vectors as float32: scores agree to about
    1e-3, so only neighbours closer than that could swap places (none are, in this data); moto's
    QueryVectors is exact, where the service is approximate (a real index can miss a neighbour)."""
    x = unit_vectors(300, seed=21)
    refs = [ref(f"same/{'ab'[i % 2]}/{i:03d}.jpg", etag=f"e{i}", size=i) for i in range(300)]
    segments = SegmentBackend(ImageIndex.open(str(tmp_path / "idx")), refresh_seconds=0.0)
    segments.ensure(spec)
    for target in (segments, backend):
        target.write(adds(refs, x))
    queries = x[:5] + 0.3 * unit_vectors(5, seed=22)
    for options in (
        cosine(k=10),
        cosine(k=10, prefix="same/b/"),
        cosine(k=5, offset=5),
        cosine(k=10, min_score=0.2),
    ):
        for ours, theirs in zip(
            segments.search(queries, options), backend.search(queries, options), strict=True
        ):
            assert [h.key for h in ours] == [h.key for h in theirs]
            assert [h.score for h in ours] == pytest.approx([h.score for h in theirs], abs=2e-3)
            assert [(h.bucket, h.etag, h.size) for h in ours] == [(h.bucket, h.etag, h.size) for h in theirs]
    for key in ("same/b/007.jpg", "same/a/124.jpg"):
        ours_key = [h.key for h in segments.search_key(key, BUCKET, cosine(k=10))]
        assert ours_key == [h.key for h in backend.search_key(key, BUCKET, cosine(k=10))]


def test_a_partial_name_prefix_gives_the_head_of_the_exact_ranking(
    backend: S3VectorsBackend, spec: ModelSpec, tmp_path: Path, unit_vectors: Callable[..., np.ndarray]
) -> None:
    """The one difference: a prefix that is not a directory ("same/01") cannot be a filter; S3 Vectors
    returns those of the MAX_TOP_K nearest under its directory that match, so fewer than k may come
    back, but those that do are the exact best ones, in order."""
    x = unit_vectors(300, seed=21)
    refs = [ref(f"same/{i:03d}.jpg") for i in range(300)]
    segments = SegmentBackend(ImageIndex.open(str(tmp_path / "idx")), refresh_seconds=0.0)
    segments.ensure(spec)
    for target in (segments, backend):
        target.write(adds(refs, x))
    queries = x[:5] + 0.3 * unit_vectors(5, seed=22)
    options = cosine(k=10, prefix="same/01")
    shorter = 0
    for ours, theirs in zip(segments.search(queries, options), backend.search(queries, options), strict=True):
        assert len(ours) == 10 and [h.key for h in theirs] == [h.key for h in ours[: len(theirs)]]
        shorter += len(theirs) < len(ours)
    assert shorter  # this data shows it: some queries get fewer than k


class RecordingClient:
    """A stand-in S3 Vectors client: a 1280-d index holding nothing; records each call's JSON size."""

    def __init__(self) -> None:
        self.puts: list[tuple[int, int]] = []  # (vectors, payload bytes)

    def get_index(self, **_: Any) -> dict[str, Any]:
        return {"index": {"dimension": 1280, "distanceMetric": "cosine"}}

    def get_vectors(self, **args: Any) -> dict[str, Any]:
        assert len(args["keys"]) <= 100
        return {"vectors": []}

    def put_vectors(self, **args: Any) -> dict[str, Any]:
        import json

        self.puts.append((len(args["vectors"]), len(json.dumps(args).encode())))
        return {}


def test_full_size_batches_stay_within_the_call_limits() -> None:
    """1280-d vectors as the default model gives them: 500 a call, each call under the 20 MiB payload."""
    client = RecordingClient()
    backend = S3VectorsBackend(VectorIndexRef("vb-local", "images"), client=client, bucket=BUCKET)
    x = np.random.default_rng(0).standard_normal((1200, 1280)).astype(np.float32)
    written = backend.write(adds([ref(f"big/{'d' * 200}/{i}.jpg") for i in range(1200)], x))
    assert written.indexed == 1200
    assert [n for n, _ in client.puts] == [500, 500, 200]
    assert max(size for _, size in client.puts) < 20 * 1024 * 1024


# --- tags: stored as filterable concept ids, shown on hits, filtered on -------------------------------

NAMES = ["tabby", "golden retriever", "crane", "crane", "beach"]


def tagged_backend(backend: S3VectorsBackend) -> S3VectorsBackend:
    from imgsearch.concepts import Concept, Vocabulary
    from imgsearch.tagging import TagNames

    backend.tagging = TagNames(vocabulary=Vocabulary([Concept(i, f"n{i:08d}", (n,), "") for i, n in enumerate(NAMES)]))
    return backend


def test_tags_are_stored_shown_on_hits_and_filtered_on(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    from imgsearch.concepts import TAG_MIN_SCORE, TopConcepts

    backend = tagged_backend(backend)
    raw = unit_vectors(6)
    # even rows: tabby 0.71 + beach 0.10; odd rows: golden retriever 0.90 (+ tabby just below the tag threshold);
    # row 4: the second "crane" class
    ids = np.array([[0, 4], [1, 0], [0, 4], [1, 0], [3, 0], [1, 0]], np.uint16)
    scores = np.array([[181, 26], [230, TAG_MIN_SCORE - 1], [181, 26], [230, TAG_MIN_SCORE - 1], [200, 0], [230, 0]], np.uint8)
    batch = Batch()
    batch.add([ref(f"{i}.jpg") for i in range(6)], raw, concepts=TopConcepts(ids, scores))
    backend.write(batch)

    stored = backend.client.get_vectors(**backend.where.params, keys=["0.jpg", "1.jpg"], returnMetadata=True)["vectors"]
    meta = {v["key"]: v["metadata"] for v in stored}
    assert (meta["0.jpg"]["tags"], meta["0.jpg"]["tag_scores"]) == ([0, 4], [181, 26])
    assert (meta["1.jpg"]["tags"], meta["1.jpg"]["tag_scores"]) == ([1], [230])  # below TAG_MIN: not a tag

    hits = backend.search(raw[:1], cosine(k=6))[0]
    assert dict((h.key, h.tags) for h in hits)["0.jpg"] == (("tabby", 0.71), ("beach", 0.102))
    tabby = backend.search(raw[:1], cosine(k=6, tag="Tabby"))[0]
    assert sorted(h.key for h in tabby) == ["0.jpg", "2.jpg"]  # 1.jpg's tabby is under the threshold
    assert [h.key for h in backend.search(raw[:1], cosine(k=6, tag="crane"))[0]] == ["4.jpg"]  # either class
    both = backend.search(raw[:1], cosine(k=6, tag="golden_retriever", prefix="3"))[0]
    assert [h.key for h in both] == ["3.jpg"]
    with pytest.raises(BadParameter, match="unknown tag 'unicorn'"):
        backend.search(raw[:1], cosine(tag="unicorn"))


def test_export_carries_each_images_tags(
    tmp_path: Path, spec: ModelSpec, backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    from imgsearch.concepts import TopConcepts
    from imgsearch.export import export_index
    from imgsearch.writer import BatchWriter

    index = ImageIndex.open(str(tmp_path / "index"))
    index.ensure(spec, bits=64)
    writer = BatchWriter(index)
    ids = np.array([[1, 0], [0, 4]], np.uint16)
    writer.add([ref("a.jpg"), ref("b.jpg")], unit_vectors(2), concepts=TopConcepts(ids, np.array([[230, 3], [181, 26]], np.uint8)))
    writer.commit()
    export_index(index, tagged_backend(backend), bucket=BUCKET, state=tmp_path / "state.json")

    found = backend.client.get_vectors(**backend.where.params, keys=["a.jpg", "b.jpg"], returnMetadata=True)["vectors"]
    assert {v["key"]: v["metadata"]["tags"] for v in found} == {"a.jpg": [1], "b.jpg": [0, 4]}


def test_query_expansion_searches_again_from_the_moved_vector(
    backend: S3VectorsBackend, unit_vectors: Callable[..., np.ndarray]
) -> None:
    from imgsearch.search import EXPAND_ALPHA

    raw = unit_vectors(30)
    backend.write(adds([ref(f"{i}.jpg") for i in range(30)], raw))
    query = raw[:1] + 0.5 * raw[1:2]
    first = backend.search(query, cosine(k=3))[0]
    moved = query[0] / np.linalg.norm(query[0])
    moved = moved + sum(max(h.score, 0) ** EXPAND_ALPHA * raw[int(h.key.split(".")[0])] for h in first)

    expanded = backend.search(query, cosine(k=6, expand=3))[0]
    assert [h.key for h in expanded] == [h.key for h in backend.search(moved[None], cosine(k=6))[0]]
