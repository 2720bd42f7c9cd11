"""Ingest handler on real S3 → SQS notifications (moto server), searched through the query handler.

Each test runs on both index backends (segments, s3vectors) unless marked; S3 Vectors has no count in
GET /health (`aws.count()` lists the vectors instead), keeps no rejections and leaves no tombstones.
"""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest
from botocore.exceptions import ClientError

from .conftest import LocalAws, load_event, make_image, s3_event, s3vectors_only, segments_only


def top(aws: LocalAws, image: bytes, **query: str) -> list[dict]:
    status, body = aws.api("apigw_rest_search_binary.json", body=image, content_type="image/png", query=query)
    assert status == 200, body
    return list(body["results"])


def test_upload_then_ingest_makes_images_searchable_in_one_segment(aws: LocalAws) -> None:
    # GIVEN three distinct images uploaded to the images bucket (S3 notifies the queue)
    images = {f"cats/{i}.png": make_image(i) for i in range(3)}
    for key, data in images.items():
        aws.put(key, data)
    # WHEN the queued notifications reach the ingest handler as one batch
    response = aws.ingest_queue()
    # THEN no record failed, one write holds all three (one segment), and each image finds itself first
    assert response == {"batchItemFailures": []}
    status, health = aws.api("apigw_rest_health.json")
    assert (status, aws.count()) == (200, 3)
    assert health["segments"] == {"segments": 1, "s3vectors": 0}[aws.backend]
    for key, data in images.items():
        hits = top(aws, data, k="3")
        assert hits[0]["key"] == key
        assert hits[0]["score"] > 0.99
        assert hits[0]["size"] == len(data)


def test_s3_test_event_is_ignored(aws: LocalAws) -> None:
    response = aws.ingest_records(load_event("sqs_s3_test_event.json")["Records"])
    assert response == {"batchItemFailures": []}
    status, health = aws.api("apigw_rest_health.json")
    # a segment index is "empty" before its first write; an S3 Vectors index exists from the start
    empty = {"segments": "empty", "s3vectors": "ok"}[aws.backend]
    assert (status, health["status"], aws.count()) == (200, empty, 0)


def test_delete_removes_the_image_from_results(aws: LocalAws) -> None:
    aws.put("a.png", make_image(10))
    aws.put("b.png", make_image(11))
    aws.ingest_queue()
    aws.s3.delete_object(Bucket=aws.images_bucket, Key="a.png")
    assert aws.ingest_queue() == {"batchItemFailures": []}
    keys = [h["key"] for h in top(aws, make_image(10), k="5")]
    assert keys == ["b.png"]
    status, body = aws.api("apigw_rest_similar.json", path="/similar/a.png", key="a.png", query={})
    assert (status, body["error"]["code"]) == (404, "key_not_indexed")


def test_overwrite_the_new_version_wins(aws: LocalAws) -> None:
    old, new = make_image(20), make_image(21)
    aws.put("photo.png", old)
    aws.ingest_queue()
    etag = aws.put("photo.png", new)["ETag"].strip('"')
    aws.ingest_queue()
    hits = top(aws, new, k="5")
    assert [h["key"] for h in hits] == ["photo.png"]
    assert hits[0]["etag"] == etag and hits[0]["score"] > 0.99
    assert top(aws, old, k="5")[0]["score"] < 0.99  # the old version's vector is gone


def test_duplicated_and_reordered_events_leave_one_correct_entry(aws: LocalAws) -> None:
    # GIVEN an object overwritten once (v1 then v2), and events for it with S3's sequencers
    key = "trips/beach day é.png"
    aws.s3.put_object(Bucket=aws.images_bucket, Key=key, Body=make_image(30))
    v2 = make_image(31)
    etag2 = aws.put(key, v2)["ETag"].strip('"')
    aws.drain()  # moto's own notifications carry no sequencer; use the real samples instead
    bucket = aws.images_bucket
    newer = s3_event(
        "sqs_s3_object_created.json",
        bucket=bucket,
        key=key,
        sequencer="0062A1B2C3D4E5F600",
        etag=etag2,
        size=len(v2),
    )
    stale = s3_event(
        "sqs_s3_object_created.json",
        bucket=bucket,
        key=key,
        sequencer="0062A1B2C3D4E5F5FF",
        etag="0" * 32,
        size=123,
    )
    # WHEN the newer event comes twice, in two invocations, and the stale one after it
    assert aws.ingest_records([newer, dict(newer, messageId="dup-1")]) == {"batchItemFailures": []}
    assert aws.ingest_records([stale, dict(newer, messageId="dup-2")]) == {"batchItemFailures": []}
    # THEN there is exactly one live entry for the key, and it is v2
    assert aws.count() == 1
    hits = top(aws, v2, k="5")
    assert [(h["key"], h["etag"]) for h in hits] == [(key, etag2)]


@segments_only("no tombstones, see the s3vectors test below")
def test_delete_event_before_a_stale_create_keeps_the_object_deleted(aws: LocalAws) -> None:
    key = "gone.png"
    data = make_image(40)
    etag = aws.put(key, data)["ETag"].strip('"')
    aws.drain()
    bucket = aws.images_bucket
    created = s3_event(
        "sqs_s3_object_created.json",
        bucket=bucket,
        key=key,
        sequencer="00AA00000000000010",
        etag=etag,
        size=len(data),
    )
    removed = s3_event("sqs_s3_object_removed.json", bucket=bucket, key=key, sequencer="00AA00000000000020")
    aws.ingest_records([created])
    aws.ingest_records([removed])
    aws.ingest_records([created])  # redelivered late: must not resurrect the object
    _status, health = aws.api("apigw_rest_health.json")
    assert health["count"] == 0


@s3vectors_only
def test_a_stale_create_after_a_delete_is_skipped_by_the_if_match_get_on_s3vectors(aws: LocalAws) -> None:
    # GIVEN an object indexed, then deleted from the bucket and its delete event ingested (S3 Vectors
    # keeps no tombstone: the vector is simply gone)
    key = "gone.png"
    data = make_image(41)
    etag = aws.put(key, data)["ETag"].strip('"')
    aws.drain()
    bucket = aws.images_bucket
    created = s3_event(
        "sqs_s3_object_created.json",
        bucket=bucket,
        key=key,
        sequencer="00AA00000000000010",
        etag=etag,
        size=len(data),
    )
    removed = s3_event("sqs_s3_object_removed.json", bucket=bucket, key=key, sequencer="00AA00000000000020")
    aws.ingest_records([created])
    assert aws.count() == 1
    aws.s3.delete_object(Bucket=bucket, Key=key)
    aws.drain()
    aws.ingest_records([removed])
    # WHEN the create event is redelivered late
    assert aws.ingest_records([created]) == {"batchItemFailures": []}
    # THEN its If-Match GET finds the object gone: nothing is written (docs/S3VECTORS.md, ordering rule)
    assert aws.count() == 0
    status, body = aws.api("apigw_rest_similar.json", path=f"/similar/{key}", key=key, query={})
    assert (status, body["error"]["code"]) == (404, "key_not_indexed")


def test_non_images_are_rejections_not_batch_failures(aws: LocalAws, capsys) -> None:
    aws.put("notes.txt", b"this is not an image")
    aws.put("empty.png", b"")
    aws.put("broken.png", make_image(50)[:60])
    aws.put("good.png", make_image(51))
    response = aws.ingest_queue()
    assert response == {"batchItemFailures": []}
    _status, health = aws.api("apigw_rest_health.json")
    assert aws.count() == 1
    # recorded in the segment index, visible to operators; S3 Vectors keeps none (logs and metrics only)
    assert health["rejected"] == {"segments": 3, "s3vectors": None}[aws.backend]
    out = capsys.readouterr().out
    assert out.count('"ImagesRejected"') >= 3  # one metric per rejection, with its reason
    assert '"reason": "empty"' in out or '"reason":"empty"' in out


def test_transient_read_error_fails_only_that_record(aws: LocalAws, monkeypatch) -> None:
    aws.put("steady.png", make_image(60))
    aws.put("flaky.png", make_image(61))
    records = aws.drain()
    real_get = aws.ingest.s3.get_object

    def flaky_get(**kwargs):
        if kwargs["Key"] == "flaky.png":
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "GetObject"
            )
        return real_get(**kwargs)

    monkeypatch.setattr(aws.ingest.s3, "get_object", flaky_get)
    response = aws.ingest_records(records)
    flaky_id = next(r["messageId"] for r in records if "flaky.png" in r["body"])
    assert response == {"batchItemFailures": [{"itemIdentifier": flaky_id}]}
    monkeypatch.setattr(aws.ingest.s3, "get_object", real_get)
    assert aws.ingest_records([r for r in records if r["messageId"] == flaky_id]) == {"batchItemFailures": []}
    assert aws.count() == 2


def test_url_encoded_keys_with_spaces_and_unicode_are_decoded(aws: LocalAws) -> None:
    key = "holiday/red squareé.png"
    aws.put(key, make_image(70))
    aws.ingest_queue()
    status, body = aws.api("apigw_rest_search_json.json", query={"k": "1"})
    assert status == 200, body
    assert body["results"][0]["key"] == key


@s3vectors_only
def test_a_key_s3vectors_cannot_store_is_a_logged_and_counted_rejection(aws: LocalAws, capsys) -> None:
    # GIVEN an image under a key longer than S3 Vectors' 1024 characters (moto's S3 takes it; S3 would not)
    long_key = "deep/" + "x" * 1100 + ".png"
    aws.put(long_key, make_image(80))
    aws.put("short.png", make_image(81))
    # WHEN it is ingested
    assert aws.ingest_queue() == {"batchItemFailures": []}
    # THEN the other image is indexed, and this one is refused: logged and counted, never truncated
    assert aws.count() == 1
    out = capsys.readouterr().out
    assert '"ImagesRejected"' in out and "key_too_long" in out
    status, body = aws.api("apigw_rest_search_json.json", body='{"key": "short.png"}', query={"k": "5"})
    assert status == 200 and [h["key"] for h in body["results"]] == ["short.png"]


@s3vectors_only
def test_s3vectors_writes_never_request_compaction(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a compaction function and a threshold the segment backend would cross at the second write
    client = MagicMock(name="lambda_client")
    monkeypatch.setattr(aws.ingest, "lambda_client", client)
    monkeypatch.setattr(aws.ingest, "COMPACT_FUNCTION", "ImgSearch-dev-CompactionFunction-TEST")
    monkeypatch.setattr(aws.ingest, "COMPACT_AFTER_SEGMENTS", 1)
    for seed in (90, 91, 92):
        aws.put(f"t/{seed}.png", make_image(seed))
        assert aws.ingest_queue() == {"batchItemFailures": []}
    # THEN nothing is invoked: there is no manifest to compact
    client.invoke.assert_not_called()
    assert aws.count() == 3


@segments_only("concept columns live in segments; S3 Vectors keeps none yet")
def test_ingest_stores_each_images_top_concepts_from_the_same_forward_pass(aws: LocalAws) -> None:
    images = {f"tags/{i}.png": make_image(i) for i in range(3)}
    for key, data in images.items():
        aws.put(key, data)
    assert aws.ingest_queue() == {"batchItemFailures": []}
    index = aws.query.backend.index
    (info,) = index.manifest().segments
    segment = index.load_segment(info)
    assert segment.concepts is not None and len(segment.concepts) == 3
    assert (segment.concepts.scores.max(axis=1) > 0).all()  # every image has a top concept
