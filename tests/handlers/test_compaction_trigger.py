"""Ingest requests compaction (an asynchronous invoke) once the manifest lists too many segments."""

from __future__ import annotations

import json
from unittest.mock import MagicMock

import pytest
from botocore.exceptions import ClientError

from .conftest import LocalAws, make_image, segments_only

pytestmark = segments_only("no compaction")  # S3 Vectors indexes itself: no segments, no compaction

COMPACTION = "ImgSearch-dev-CompactionFunction-TEST"


@pytest.fixture
def invokes(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> MagicMock:
    """The ingest handler's Lambda client, replaced; the threshold set low (2 segments)."""
    client = MagicMock(name="lambda_client")
    monkeypatch.setattr(aws.ingest, "lambda_client", client)
    monkeypatch.setattr(aws.ingest, "COMPACT_FUNCTION", COMPACTION)
    monkeypatch.setattr(aws.ingest, "COMPACT_AFTER_SEGMENTS", 2)
    return client


def ingest_one(aws: LocalAws, seed: int) -> None:
    aws.put(f"t/{seed}.png", make_image(seed))
    assert aws.ingest_queue() == {"batchItemFailures": []}


def test_ingest_that_crosses_the_threshold_invokes_compaction_once_asynchronously(
    aws: LocalAws, invokes: MagicMock
) -> None:
    # GIVEN an index with as many segments as the threshold allows (2)
    ingest_one(aws, 400)
    ingest_one(aws, 401)
    assert invokes.invoke.call_count == 0
    # WHEN one more ingest appends the third segment
    ingest_one(aws, 402)
    # THEN the compaction function is invoked exactly once, asynchronously
    invokes.invoke.assert_called_once()
    call = invokes.invoke.call_args.kwargs
    assert call["FunctionName"] == COMPACTION
    assert call["InvocationType"] == "Event"
    assert json.loads(call["Payload"]) == {"action": "auto", "reason": "segments", "segments": 3}


def test_ingest_below_the_threshold_invokes_nothing(aws: LocalAws, invokes: MagicMock) -> None:
    ingest_one(aws, 410)
    ingest_one(aws, 411)  # 2 segments: not more than the threshold
    invokes.invoke.assert_not_called()


def test_no_compaction_function_no_invoke(aws: LocalAws, invokes: MagicMock, monkeypatch) -> None:
    # GIVEN no COMPACT_FUNCTION_NAME (the local stack runs compaction on a timer instead)
    monkeypatch.setattr(aws.ingest, "COMPACT_FUNCTION", "")
    for seed in (420, 421, 422):
        ingest_one(aws, seed)
    invokes.invoke.assert_not_called()


def test_a_failed_invoke_does_not_fail_the_committed_batch(aws: LocalAws, invokes: MagicMock) -> None:
    invokes.invoke.side_effect = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Invoke"
    )
    for seed in (430, 431, 432):
        ingest_one(aws, seed)  # asserts no batch item failed
    assert invokes.invoke.call_count == 1
    _, health = aws.api("apigw_rest_health.json")
    assert (health["segments"], health["count"]) == (3, 3)
