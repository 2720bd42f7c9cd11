"""Ingest: S3 notifications (via SQS) → one write per invocation to the index backend.

Each SQS record is handled on its own (a failure retries that record only); the images it names are
fetched and collected, then the whole invocation's good images and deletes become one batch: one
segment appended by CAS (INDEX_BACKEND=segments, the default) or PutVectors / DeleteVectors under the
ordering rule (INDEX_BACKEND=s3vectors, docs/S3VECTORS.md).
A non-image, corrupt or empty object is a recorded rejection, not a failure: retrying cannot fix it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from imgsearch import settings, thumbnails
from imgsearch.backend import Batch, open_backend
from imgsearch.embed import Embedder
from imgsearch.manifest import Manifest
from imgsearch.segment import ObjectRef
from lambdas.common import config
from lambdas.common.s3events import CREATED, parse_body

# --- cold start: configuration, model, index ------------------------------------------------------

# Each setting's name, default and allowed values: imgsearch.settings.INGEST (the stacks write them from it).
INDEX_BACKEND = config.read(settings.INDEX_BACKEND)
# The one place the backend is chosen: a segment index (INDEX_URI) or an S3 Vectors index (VECTOR_INDEX_ARN).
INDEX_LOCATION = config.read(settings.VECTOR_INDEX_ARN if INDEX_BACKEND == "s3vectors" else settings.INDEX_URI)
MODEL_DIR = config.read(settings.MODEL_DIR)
CODE_BITS = config.read(settings.CODE_BITS)  # a multiple of 8
MAX_OBJECT_BYTES = config.read(settings.MAX_OBJECT_BYTES)
THUMBNAILS = config.read(settings.THUMBNAILS)  # a small JPEG per image beside the index (imgsearch.thumbnails)
THUMBNAIL_URI = config.read(settings.THUMBNAIL_URI)  # … or in a bucket of their own (EFS, S3 Vectors)
# Compaction on demand (besides its schedule): unset function name → never invoked (the local stack).
COMPACT_FUNCTION = config.read(settings.COMPACT_FUNCTION_NAME)
COMPACT_AFTER_SEGMENTS = config.read(settings.COMPACT_AFTER_SEGMENTS)  # 0: off

logger = Logger()
metrics = Metrics()
tracer = Tracer()
processor = BatchProcessor(event_type=EventType.SQS)
s3 = boto3.client("s3")
lambda_client = boto3.client("lambda")
embedder = Embedder.load(Path(MODEL_DIR))
backend = open_backend(INDEX_LOCATION)  # SegmentBackend(ImageIndex.open(...)) or S3VectorsBackend.open(...)
THUMB_STORE = thumbnails.store(THUMBNAIL_URI, backend.thumbnail_store()) if THUMBNAILS else None
_ensured = False


@dataclass
class Invocation:
    """What one invocation collects: images still to embed, and the batch its single write becomes."""

    batch: Batch = field(default_factory=Batch)
    refs: list[ObjectRef] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)


def reject(work: Invocation, ref: ObjectRef, *, code: str, reason: str) -> None:
    """Record, log and count an object that will never be indexed (not a failure: retrying cannot help)."""
    work.batch.reject(ref, code=code, reason=reason)
    log_rejection(ref.bucket, ref.key, code=code, reason=reason)


def log_rejection(bucket: str, key: str, *, code: str, reason: str) -> None:
    """Log and count one rejection (the ImagesRejected metric, by reason)."""
    logger.warning("image rejected", extra={"bucket": bucket, "key": key, "code": code, "reason": reason})
    with single_metric(
        name="ImagesRejected", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
    ) as metric:
        metric.add_dimension(name="reason", value=code)


@tracer.capture_method
def fetch(ref: ObjectRef) -> bytes | None:
    """The bytes of exactly the version the event names; None if that version is gone or replaced.

    Reads at most MAX_OBJECT_BYTES + 1 bytes, whatever size the event gave: more means too large.
    """
    args: dict[str, Any] = {"Bucket": ref.bucket, "Key": ref.key}
    if ref.etag:
        args["IfMatch"] = ref.etag
    try:
        with s3.get_object(**args)["Body"] as body:
            data: bytes = body.read(MAX_OBJECT_BYTES + 1)
        return data
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "PreconditionFailed") or status in (404, 412):
            # Deleted or overwritten since: the newer event (ObjectRemoved or ObjectCreated) decides.
            logger.info(
                "object changed since the event; skipped", extra={"key": ref.key, "code": code or status}
            )
            return None
        raise  # transient or permission error: fail this record only, SQS retries it


def record_handler(record: SQSRecord, work: Invocation) -> None:
    """One SQS message: an S3 notification (one or more records) or the S3 test event."""
    changes = parse_body(record.body)
    if not changes:
        logger.info("no object changes in message (S3 test event?)", extra={"message_id": record.message_id})
    for change in changes:
        ref = change.ref
        if change.kind != CREATED:
            work.batch.delete(ref)
            continue
        if ref.size == 0 and ref.etag:
            reject(work, ref, code="empty", reason="empty file (0 bytes)")
            continue
        if ref.size > MAX_OBJECT_BYTES:
            reject(work, ref, code="too_large", reason=f"object is {ref.size} bytes, over {MAX_OBJECT_BYTES}")
            continue
        data = fetch(ref)
        if data is None:
            continue
        if len(data) > MAX_OBJECT_BYTES:  # the object is larger than its event said
            reason = f"object is over {MAX_OBJECT_BYTES} bytes (its event said {ref.size})"
            reject(work, ref, code="too_large", reason=reason)
            continue
        work.refs.append(ref)
        work.images.append(data)


@tracer.capture_method
def flush(work: Invocation) -> dict[str, Any]:
    """Embed the collected images and write one batch (entries + deletes). Raises to retry all."""
    global _ensured
    if not work.images and not len(work.batch):
        return {"indexed": 0, "deleted": 0, "rejected": 0}
    if not _ensured:
        # Segments: creates the manifest on the first write. Both: checks the model (its dimension).
        backend.ensure(embedder.spec, bits=CODE_BITS)
        _ensured = True
    started = time.perf_counter()
    # One forward pass: the features and, when the model has its classifier head, each image's top concepts.
    embedded = embedder.embed_all(
        lambda i: work.images[i], len(work.images), concepts=embedder.has_concepts, thumbnails=THUMB_STORE is not None
    )
    for failure in embedded.failures:
        reject(work, work.refs[failure.index], code=failure.code, reason=failure.reason)
    refs = [work.refs[i] for i in embedded.indices]
    work.batch.add(refs, embedded.vectors, concepts=embedded.concepts)
    embed_ms = (time.perf_counter() - started) * 1000
    if THUMB_STORE is not None:  # before the commit: a retried batch rewrites the same names with the same bytes
        thumbnails.write_all(THUMB_STORE, list(zip(refs, embedded.thumbnails or [], strict=True)))
    # Rejections are written too (even alone, on segments), so `imgsearch info` and GET /health show them.
    written = backend.write(work.batch)
    for refused in written.refused:  # entries the backend cannot store (e.g. a key too long for S3 Vectors)
        log_rejection(refused.bucket, refused.key, code=refused.code, reason=refused.reason)
    metrics.add_metric(name="ImagesIndexed", unit=MetricUnit.Count, value=written.indexed)
    metrics.add_metric(name="ImagesDeleted", unit=MetricUnit.Count, value=written.deleted)
    metrics.add_metric(name="CasRetries", unit=MetricUnit.Count, value=written.retries)
    metrics.add_metric(name="ChangesSkipped", unit=MetricUnit.Count, value=written.skipped)
    metrics.add_metric(name="EmbedMilliseconds", unit=MetricUnit.Milliseconds, value=embed_ms)
    summary = {
        "backend": backend.name,
        "segment": written.segment,
        "indexed": written.indexed,
        "deleted": written.deleted,
        "rejected": written.rejected,
        "skipped": written.skipped,
        "embed_ms": round(embed_ms, 1),
    }
    logger.info("batch written", extra=summary)
    if written.manifest is not None:
        request_compaction(written.manifest)
    return summary


@tracer.capture_method
def request_compaction(manifest: Manifest) -> bool:
    """Invoke the compaction function asynchronously once the manifest lists too many segments.

    The segment is already committed, so a failed invoke is logged, not raised (the schedule catches
    up). Compaction runs single-instance (reserved concurrency 1): an invoke while one runs is
    throttled, retried by Lambda's async queue and dropped after a minute (the stack's invoke config).
    """
    if not COMPACT_FUNCTION or not COMPACT_AFTER_SEGMENTS:
        return False
    segments = 0
    try:
        segments = len(manifest.segments)  # the manifest this invocation's commit wrote: no extra read
        if segments <= COMPACT_AFTER_SEGMENTS:
            return False
        lambda_client.invoke(
            FunctionName=COMPACT_FUNCTION,
            InvocationType="Event",
            Payload=json.dumps({"action": "auto", "reason": "segments", "segments": segments}).encode(),
        )
    except Exception as error:  # best effort after the commit: raising would make SQS retry the batch
        logger.warning(
            "could not request compaction; the schedule will run it",
            extra={"segments": segments, "error": f"{type(error).__name__}: {error}"},
        )
        return False
    logger.info("compaction requested", extra={"segments": segments, "threshold": COMPACT_AFTER_SEGMENTS})
    metrics.add_metric(name="CompactionRequested", unit=MetricUnit.Count, value=1)
    return True


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    work = Invocation()
    response: dict[str, Any] = process_partial_response(  # type: ignore[assignment]
        event=event,
        record_handler=lambda record: record_handler(record, work),
        processor=processor,
        context=context,
    )
    flush(work)  # one write per invocation; if it fails the invocation fails and SQS retries the batch
    return response
