"""Compaction handler: folds segments and tombstones into one base; search answers the same."""

from __future__ import annotations

import json

from .conftest import FakeContext, LocalAws, load_event, make_image, segments_only

pytestmark = segments_only("no compaction")  # S3 Vectors indexes itself: no segments, no compaction


def test_scheduled_compaction_folds_segments_and_drops_deleted_entries(aws: LocalAws) -> None:
    for i in range(3):  # three invocations → three segments
        aws.put(f"c/{i}.png", make_image(300 + i))
        aws.ingest_queue()
    aws.s3.delete_object(Bucket=aws.images_bucket, Key="c/0.png")
    aws.ingest_queue()
    _, before = aws.api("apigw_rest_health.json")
    assert (before["segments"], before["count"]) == (4, 2)

    result = aws.compact.handler(load_event("eventbridge_scheduled.json"), FakeContext())

    assert result["action"] == "compact" and result["before"] == 4 and result["entries"] == 2
    _, after = aws.api("apigw_rest_health.json")
    assert (after["segments"], after["count"]) == (1, 2)
    _status, body = aws.api(
        "apigw_rest_search_binary.json", body=make_image(301), content_type="image/png", query={"k": "5"}
    )
    assert next(h["key"] for h in body["results"]) == "c/1.png"
    assert "c/0.png" not in [h["key"] for h in body["results"]]
    folded = _folded_segments(aws)
    assert len(folded) == 4
    for name in folded:  # superseded objects are tagged for the lifecycle rule, not deleted
        tags = aws.s3.get_object_tagging(Bucket=aws.index_bucket, Key=f"index/segments/{name}/query.npz")
        assert {"Key": "imgsearch-retired", "Value": "true"} in tags["TagSet"]


def _folded_segments(aws: LocalAws) -> set[str]:
    listed = aws.s3.list_objects_v2(Bucket=aws.index_bucket, Prefix="index/segments/")["Contents"]
    names = {o["Key"].split("/")[2] for o in listed}
    manifest = json.loads(
        aws.s3.get_object(Bucket=aws.index_bucket, Key="index/manifest.json")["Body"].read()
    )
    return names - {s["name"] for s in manifest["segments"]}


def test_compaction_with_no_index_does_nothing(aws: LocalAws) -> None:
    result = aws.compact.handler(load_event("eventbridge_scheduled.json"), FakeContext())
    assert result["action"] == "none"
