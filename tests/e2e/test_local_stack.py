"""End to end on the local stack: S3 upload → S3 notification → SQS → ingest handler → index → HTTP API.

The scenarios run in order on one stack (each builds on the index the previous ones left).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from .conftest import Stack, sample_images, synthetic_image

pytestmark = pytest.mark.slow

COUNT = 12


@pytest.fixture(scope="module")
def uploaded(stack: Stack) -> Stack:
    stack.images = sample_images(COUNT, prefix="e2e")
    stack.baseline = stack.health()["count"]
    s3 = stack.s3()
    for key, data in stack.images.items():
        s3.put_object(Bucket=stack.bucket, Key=key, Body=data, ContentType="image/jpeg")
    stack.wait_for(
        lambda: stack.health()["count"] == stack.baseline + COUNT, f"/health to count {COUNT} more images"
    )
    return stack


def test_the_page_is_public_and_the_api_needs_the_key(stack: Stack) -> None:
    status, page = stack.call("GET", "/", api_key=None)
    assert status == 200 and page.lstrip().lower().startswith("<!doctype html>")
    for key in (None, "wrong-key"):
        status, body = stack.call("GET", "/health", api_key=key)
        assert status == 403 and body["error"]["code"] == "forbidden"
    status, body = stack.call("GET", "/no-such-route")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = stack.call("GET", "/ping", api_key=None)  # a load balancer's check needs no key
    assert status == 200 and set(body) == {"status", "ready"}


def test_uploads_become_searchable_by_raw_image_body(uploaded: Stack) -> None:
    health = uploaded.health()
    assert health["status"] == "ok" and health["model"]["dim"] > 0
    for key, data in list(uploaded.images.items())[:4]:
        hits = uploaded.search_image(data)
        assert hits[0]["key"] == key and hits[0]["score"] > 0.99, hits[:2]
        assert len(hits) == 5 and hits[0]["url"].startswith(uploaded.s3_endpoint)


def test_search_by_key_and_more_like_this(uploaded: Stack) -> None:
    key = next(iter(uploaded.images))
    status, body = uploaded.call(
        "POST",
        "/search?k=3&metric=cosine",
        body=json.dumps({"key": key}).encode(),
        content_type="application/json",
    )
    assert status == 200, body
    assert body["results"][0]["key"] == key and body["metric"] == "cosine" and len(body["results"]) == 3
    status, body = uploaded.call("GET", f"/similar/{quote(key)}?k=4")
    assert status == 200, body
    assert body["results"][0]["key"] == key and len(body["results"]) == 4


def test_words_over_http_answer_tagged_hits_and_what_the_words_matched(uploaded: Stack) -> None:
    status, body = uploaded.call("GET", "/search?q=a%20golden%20retriever&k=3")
    assert status == 200, body
    assert len(body["results"]) == 3 and body["text"]["matched"][0][0] == "golden retriever"
    tagged = [hit for hit in body["results"] if hit["tags"]]
    assert tagged, "hits carry the tags stored at ingest"
    name = tagged[0]["tags"][0][0]
    status, filtered = uploaded.call("GET", f"/search?q=dog&k=5&tag={quote(name)}")
    assert status == 200 and filtered["results"]
    assert all(name in [t[0] for t in hit["tags"]] for hit in filtered["results"])
    key = next(iter(uploaded.images))
    status, both = uploaded.call(
        "POST", "/search?k=3", body=json.dumps({"key": key, "text": "beach"}).encode(), content_type="application/json"
    )
    assert status == 200 and both["text"]["query"] == "beach" and len(both["results"]) == 3
    status, missing = uploaded.call("GET", "/search?k=3")
    assert status == 400 and "needs the words" in missing["error"]["message"]
    status, unknown = uploaded.call("GET", "/search?q=xyzzy")
    assert (status, unknown["error"]["code"]) == (400, "no_concept_match")


def test_presigned_result_urls_serve_the_image(uploaded: Stack) -> None:
    import urllib.request

    data = next(iter(uploaded.images.values()))
    url = uploaded.search_image(data, k="1")[0]["url"]
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data


def test_a_deleted_object_disappears_and_can_come_back(uploaded: Stack) -> None:
    s3 = uploaded.s3()
    key, data = list(uploaded.images.items())[1]
    s3.delete_object(Bucket=uploaded.bucket, Key=key)
    uploaded.wait_for(
        lambda: key not in {h["key"] for h in uploaded.search_image(data, k="20")},
        f"{key} to leave the results",
    )
    assert uploaded.health()["count"] == uploaded.baseline + COUNT - 1
    s3.put_object(Bucket=uploaded.bucket, Key=key, Body=data, ContentType="image/jpeg")
    uploaded.wait_for(lambda: uploaded.search_image(data, k="1")[0]["key"] == key, f"{key} to come back")
    assert uploaded.health()["count"] == uploaded.baseline + COUNT


def test_an_overwritten_object_is_found_by_its_new_content(uploaded: Stack) -> None:
    s3 = uploaded.s3()
    key, old = list(uploaded.images.items())[2]
    new = synthetic_image(424242)
    s3.put_object(Bucket=uploaded.bucket, Key=key, Body=new, ContentType="image/jpeg")
    uploaded.wait_for(
        lambda: (hit := uploaded.search_image(new, k="1")[0])["key"] == key and hit["score"] > 0.99,
        f"{key} to be found by its new content",
    )
    top = uploaded.search_image(old, k="1")[0]
    assert not (top["key"] == key and top["score"] > 0.99), top  # the old content is gone
    assert uploaded.health()["count"] == uploaded.baseline + COUNT  # replaced, not added


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"just some text", "text/plain", 415, "unsupported_media_type"),
        (b"\x89PNG but not really an image", "image/png", 400, "not_an_image"),
        (b"", "image/jpeg", 400, "empty"),
        (b"{not json", "application/json", 400, "bad_parameter"),
    ],
)
def test_a_non_image_query_is_a_4xx_with_a_clear_message(
    uploaded: Stack, body: bytes, content_type: str, status: int, code: str
) -> None:
    got, answer = uploaded.call("POST", "/search", body=body, content_type=content_type)
    assert got == status, answer
    assert answer["error"]["code"] == code and len(answer["error"]["message"]) > 10


def test_an_uploaded_non_image_is_rejected_not_indexed(uploaded: Stack) -> None:
    s3 = uploaded.s3()
    s3.put_object(
        Bucket=uploaded.bucket, Key="notes/readme.txt", Body=b"not an image", ContentType="text/plain"
    )
    marker_key, marker = "late/marker.jpg", synthetic_image(777)
    s3.put_object(Bucket=uploaded.bucket, Key=marker_key, Body=marker, ContentType="image/jpeg")
    uploaded.wait_for(
        lambda: uploaded.search_image(marker, k="1")[0]["key"] == marker_key, "the marker image"
    )
    assert uploaded.health()["count"] == uploaded.baseline + COUNT + 1  # the marker, not the text file
    status, body = uploaded.call("GET", "/similar/notes/readme.txt")
    assert status == 404 and body["error"]["code"] == "key_not_indexed"
