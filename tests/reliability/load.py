"""The local stack under load: concurrent uploads, deletes and overwrites, a clean restart in the middle
of them, duplicated and stale notifications; then what was lost, duplicated or resurrected.

Everything goes through `imgsearch local up` over loopback (moto's S3 endpoint, its SQS queue, the API),
the way a user drives it. Bounded: every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imgsearch.index import ImageIndex
from imgsearch.search import Searcher
from imgsearch.store import LocalStore

from ..handlers.conftest import s3_event
from ..imagegen import synthetic_image
from ..localstack import Stack, free_port, launch, stop
from .journal import found

CONVERGE_SECONDS = 300


@dataclass
class LoadReport:
    uploaded: int = 0
    deleted: int = 0
    overwritten: int = 0
    replayed: int = 0  # duplicated or stale notifications sent straight to the queue
    indexed_before_restart: int = 0
    indexed: int = 0  # live entries at the end
    lost: list[str] = field(default_factory=list)  # in the bucket, not searchable (or stale version)
    resurrected: list[str] = field(default_factory=list)  # deleted, yet in the bucket or searchable
    duplicated: int = 0  # live rows beyond one per key
    deletes_applied: int = 0
    overwrites_applied: int = 0
    bucket_after_restart: int = 0
    bucket_missing: list[str] = field(default_factory=list)  # expected in the bucket after the restart
    similar_of_deleted: dict[int, int] = field(default_factory=dict)  # HTTP status → count
    dead_letters: int = 0
    restart_refused: bool = False
    stop_seconds: float = 0.0
    restart_seconds: float = 0.0
    converge_seconds: float = 0.0
    index_seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not isinstance(v, list)}
        out.update({k: len(v) for k, v in self.__dict__.items() if isinstance(v, list)})
        return out


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def live(index_dir: Path) -> dict[str, Any]:
    searcher = Searcher(ImageIndex(LocalStore(index_dir)))
    searcher.refresh(force=True)
    return searcher.live_refs()


def queue_depth(stack: Stack, name: str) -> int:
    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def run_load(
    folder: Path, *, uploads: int, threads: int, deletes: int, overwrites: int, replays: int, seed: int = 0
) -> LoadReport:
    report = LoadReport()
    pick = random.Random(seed)
    data, log = folder / "data", folder / "stack.log"
    bucket = "load-images"
    s3_port, api_port = free_port(), free_port()
    images = {f"load/{i:04d}.jpg": synthetic_image(10_000 + seed * 100_000 + i, size=160, fmt="JPEG") for i in range(uploads)}
    stack = launch(log=log, bucket=bucket, s3_port=s3_port, api_port=api_port, data=data, compact_every=5)
    try:
        s3 = stack.s3()
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda item: s3.put_object(Bucket=bucket, Key=item[0], Body=item[1]), images.items()))
        report.uploaded = len(images)
        stack.wait_for(lambda: stack.health()["count"] >= uploads, f"{uploads} images indexed", CONVERGE_SECONDS)
        report.index_seconds = time.monotonic() - started
        report.indexed_before_restart = stack.health()["count"]

        # Deletes and overwrites at once, then a clean stop while they are still being ingested.
        keys = sorted(images)
        pick.shuffle(keys)
        gone, changed = keys[:deletes], keys[deletes : deletes + overwrites]
        fresh = {k: synthetic_image(900_000 + seed * 100_000 + i, size=160, fmt="JPEG") for i, k in enumerate(changed)}

        def change(key: str) -> None:
            if key in fresh:
                s3.put_object(Bucket=bucket, Key=key, Body=fresh[key])
            else:
                s3.delete_object(Bucket=bucket, Key=key)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(change, gone + changed))
        report.deleted, report.overwritten = len(gone), len(changed)
        images.update(fresh)
        for key in gone:
            del images[key]
        stopping = time.monotonic()
        stop(stack.process)
        report.stop_seconds = time.monotonic() - stopping

        # The same ports at once: a clean stop must not keep them (TIME_WAIT).
        restarting = time.monotonic()
        try:
            stack = launch(log=log, bucket=bucket, s3_port=s3_port, api_port=api_port, data=data, compact_every=5)
        except AssertionError:
            report.restart_refused = True
            raise
        report.restart_seconds = time.monotonic() - restarting
        s3 = stack.s3()
        listed = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in page.get("Contents", [])}
        report.bucket_after_restart = len(listed)
        report.bucket_missing = sorted(set(images) - listed)
        report.resurrected += sorted(set(gone) & listed)

        # Duplicated and stale notifications, straight into the queue (at least once, unordered).
        index_dir = data / "index"
        current = live(index_dir)
        sqs = stack.client("sqs")
        queue = sqs.get_queue_url(QueueName=f"{bucket}-ingest")["QueueUrl"]
        bodies = []
        for key in pick.sample(sorted(set(images) & set(current)), min(replays, len(images))):
            ref = current[key]
            # the same upload again (duplicate), and a delete older than it (stale): neither may change it
            bodies.append(s3_event("sqs_s3_object_created.json", bucket=bucket, key=key, sequencer=ref.sequencer, etag=ref.etag, size=ref.size)["body"])
            bodies.append(s3_event("sqs_s3_object_removed.json", bucket=bucket, key=key, sequencer="1")["body"])
        for key in gone[:replays]:  # an upload older than the delete: must not bring the object back
            bodies.append(s3_event("sqs_s3_object_created.json", bucket=bucket, key=key, sequencer="1", etag="0" * 32, size=100)["body"])
        pick.shuffle(bodies)
        for start in range(0, len(bodies), 10):
            sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])])
        report.replayed = len(bodies)

        converging = time.monotonic()
        want = {k: md5(v) for k, v in images.items()}

        def settled() -> bool:
            refs = live(index_dir)
            return {k: r.etag for k, r in refs.items()} == want and queue_depth(stack, f"{bucket}-ingest") == 0

        with contextlib.suppress(AssertionError):  # measured below: what is missing is reported, not hidden
            stack.wait_for(settled, "the index to match the bucket", CONVERGE_SECONDS)
        report.converge_seconds = time.monotonic() - converging

        refs = live(index_dir)
        state = found(ImageIndex(LocalStore(index_dir)))
        report.indexed = len(refs)
        report.duplicated = state.rows - len(state.live)
        report.lost = sorted(k for k, etag in want.items() if k not in refs or refs[k].etag != etag)
        report.resurrected = sorted(set(report.resurrected) | (set(gone) & set(refs)))
        report.deletes_applied = sum(1 for k in gone if k not in refs)
        report.overwrites_applied = sum(1 for k in changed if k in refs and refs[k].etag == want[k])
        for key in gone:
            status, _ = stack.call("GET", f"/similar/{quote(key)}?k=3")
            report.similar_of_deleted[status] = report.similar_of_deleted.get(status, 0) + 1
        report.dead_letters = queue_depth(stack, f"{bucket}-ingest-dead-letters")
        return report
    finally:
        stop(stack.process)


def dump(report: LoadReport) -> str:
    return json.dumps(report.figures(), indent=1, sort_keys=True)
