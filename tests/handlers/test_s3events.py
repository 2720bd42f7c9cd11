"""S3 notifications in SQS bodies → typed changes (the real samples in tests/events/)."""

from __future__ import annotations

import json

import pytest

from lambdas.common.s3events import CREATED, REMOVED, MalformedEvent, parse_body

from .conftest import load_event


def body(sample: str) -> str:
    return str(load_event(sample)["Records"][0]["body"])


def test_object_created_is_parsed_with_a_decoded_key() -> None:
    (change,) = parse_body(body("sqs_s3_object_created.json"))
    assert change.kind == CREATED
    ref = change.ref
    assert (ref.bucket, ref.key, ref.size, ref.sequencer) == (
        "imgsearch-images-example",
        "holiday/red squareé.png",
        1024,
        "0055AED6DCD90281E5",
    )
    assert ref.etag == "d41d8cd98f00b204e9800998ecf8427e"


def test_object_removed_carries_its_sequencer() -> None:
    (change,) = parse_body(body("sqs_s3_object_removed.json"))
    assert (change.kind, change.ref.key, change.ref.sequencer) == (
        REMOVED,
        "holiday/red squareé.png",
        "0055AED6DCD90281F0",
    )


def test_the_s3_test_event_has_no_changes() -> None:
    assert parse_body(body("sqs_s3_test_event.json")) == []


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        json.dumps({"hello": 1}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
    ],
)
def test_malformed_bodies_raise(text: str) -> None:
    with pytest.raises(MalformedEvent):
        parse_body(text)


def test_other_event_kinds_are_skipped() -> None:
    payload = json.loads(body("sqs_s3_object_created.json"))
    payload["Records"][0]["eventName"] = "ObjectRestore:Completed"
    assert parse_body(json.dumps(payload)) == []
