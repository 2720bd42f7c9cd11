"""End to end on the local stack with the S3 Vectors index backend (`--index-backend s3vectors`):
S3 upload → notification → SQS → ingest handler → S3 Vectors (moto) → query handler → HTTP API.

The stack runs as `imgsearch local up --index-backend s3vectors` (tests/localstack.py's launch), in a
process group of its own that stops by itself if this test run dies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from .conftest import Stack, free_port, launch, sample_images, stop

pytestmark = pytest.mark.slow

COUNT = 6
BUCKET = "e2e-vectors"
READY_SECONDS = 120

def launch_s3vectors(*, log: Path, bucket: str) -> Stack:
    """`imgsearch local up --index-backend s3vectors` on free ports; returns once GET /health answers."""
    return launch(log=log, bucket=bucket, extra=["--index-backend", "s3vectors"], ready_seconds=READY_SECONDS)


@pytest.fixture(scope="module")
def vectors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = launch_s3vectors(log=tmp_path_factory.mktemp("local-s3vectors") / "stack.log", bucket=BUCKET)
    try:
        running.images = sample_images(COUNT, prefix="vec")
        s3 = running.s3()
        for key, data in running.images.items():
            s3.put_object(Bucket=running.bucket, Key=key, Body=data, ContentType="image/jpeg")
        for key, data in running.images.items():  # no count on S3 Vectors: wait until each finds itself
            running.wait_for(
                lambda key=key, data=data: any(h["key"] == key for h in running.search_image(data, k="3")),
                f"{key} to be searchable",
            )
        yield running
    finally:
        stop(running.process)


def test_health_names_the_vector_index_and_has_no_counts(vectors: Stack) -> None:
    health = vectors.health()
    assert (health["status"], health["backend"], health["count"], health["rejected"]) == (
        "ok",
        "s3vectors",
        None,
        None,
    )
    assert health["vector_index"] == f"s3vectors://{BUCKET}-vectors/images"
    assert health["dimension"] == health["model"]["dim"]
    assert "(S3 Vectors in moto)" in vectors.log.read_text()  # the banner's index line


def test_uploads_are_found_by_image(vectors: Stack) -> None:
    for key, data in vectors.images.items():
        hits = vectors.search_image(data)
        assert hits[0]["key"] == key and hits[0]["score"] > 0.99, hits[:2]
        assert len(hits) == 5 and hits[0]["url"].startswith(vectors.s3_endpoint)
        # thumbnails in a bucket of their own, as the CDK stack gives an index off S3
        assert all(f"/{BUCKET}-thumbnails/thumbs/" in h["thumb_url"] for h in hits), hits[:2]


def test_search_by_key_and_more_like_this(vectors: Stack) -> None:
    key = next(iter(vectors.images))
    status, body = vectors.call(
        "POST", "/search?k=3", body=json.dumps({"key": key}).encode(), content_type="application/json"
    )
    assert status == 200, body
    assert body["results"][0]["key"] == key and len(body["results"]) == 3 and body["index_version"] == 0
    status, body = vectors.call("GET", f"/similar/{quote(key)}?k=4&prefix=vec/")
    assert status == 200, body
    assert body["results"][0]["key"] == key and len(body["results"]) == 4


def test_what_s3vectors_cannot_do_is_a_400_that_says_so(vectors: Stack) -> None:
    data = next(iter(vectors.images.values()))
    status, body = vectors.call("POST", "/search?metric=hamming", body=data, content_type="image/jpeg")
    assert (status, body["error"]["code"]) == (400, "bad_parameter")
    assert "keeps no binary codes" in body["error"]["message"]
    status, body = vectors.call("POST", "/search?k=50&offset=60", body=data, content_type="image/jpeg")
    assert (status, body["error"]["code"]) == (400, "bad_parameter")
    assert "offset + k <= 100" in body["error"]["message"]


def test_a_deleted_object_is_gone(vectors: Stack) -> None:
    key, data = list(vectors.images.items())[1]
    vectors.s3().delete_object(Bucket=vectors.bucket, Key=key)
    vectors.wait_for(
        lambda: key not in {h["key"] for h in vectors.search_image(data, k="10")},
        f"{key} to leave the results",
    )
    status, body = vectors.call("GET", f"/similar/{quote(key)}")
    assert (status, body["error"]["code"]) == (404, "key_not_indexed")
    remaining = {h["key"] for h in vectors.search_image(data, k="10")}
    assert remaining == set(vectors.images) - {key}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": Path("unused")}, "moto keeps S3 Vectors in memory"),
        ({"index_backend": "faiss"}, "--index-backend: index backend 'faiss' is not one of segments, s3vectors"),
    ],
)
def test_options_s3vectors_cannot_take_are_refused_before_anything_starts(changes: dict, message: str) -> None:
    from imgsearch.local.stack import LocalStack, LocalStackError, Options

    options = Options(s3_port=free_port(), api_port=free_port(), **{"index_backend": "s3vectors", **changes})
    with pytest.raises(LocalStackError, match=message):
        LocalStack(options).start()
