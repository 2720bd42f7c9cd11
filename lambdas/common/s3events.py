"""S3 event notifications (as delivered inside SQS message bodies) → typed changes.

Keys in S3 events are URL-encoded (`my+photo%C3%A9.jpg` → `my photoé.jpg`), delivery is at least
once and unordered; the `sequencer` orders changes to one key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from imgsearch.segment import ObjectRef

CREATED = "created"
REMOVED = "removed"


class MalformedEvent(ValueError):
    """A message body that is neither an S3 notification nor the S3 test event."""


@dataclass(frozen=True)
class S3Change:
    """One object created (or overwritten) or removed."""

    kind: str  # CREATED or REMOVED
    event_name: str
    ref: ObjectRef


def parse_body(body: str | None) -> list[S3Change]:
    """The changes in one SQS message body; [] for the S3 test event (sent when notifications are set up)."""
    try:
        payload = json.loads(body or "")
    except json.JSONDecodeError as error:
        raise MalformedEvent(f"message body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise MalformedEvent("message body is not a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return []
    records = payload.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("message body has no Records list (not an S3 event notification)")
    return [change for record in records if (change := parse_record(record)) is not None]


def parse_record(record: dict[str, Any]) -> S3Change | None:
    """One S3 event record; None for an event kind the index does not care about (e.g. restore)."""
    try:
        name = str(record["eventName"])
        bucket = record["s3"]["bucket"]["name"]
        obj = record["s3"]["object"]
        key = unquote_plus(obj["key"])
    except (KeyError, TypeError):
        raise MalformedEvent("S3 record lacks eventName, s3.bucket.name or s3.object.key") from None
    if name.startswith("ObjectCreated:"):
        kind = CREATED
    elif name.startswith("ObjectRemoved:"):
        kind = REMOVED
    else:
        return None
    ref = ObjectRef(
        bucket=bucket,
        key=key,
        etag=str(obj.get("eTag") or obj.get("etag") or "").strip('"'),
        size=int(obj.get("size") or 0),
        sequencer=str(obj.get("sequencer") or "0"),
        time=event_time(record.get("eventTime")),
    )
    return S3Change(kind=kind, event_name=name, ref=ref)


def event_time(text: object) -> float:
    if not isinstance(text, str) or not text:
        return time.time()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()
