"""Backfill: the objects already in a bucket, queued as S3 event messages for the ingest queue.

The bucket is listed a page at a time (ListObjectsV2, 1,000 keys a request); objects the index
already holds (or rejected) at the same ETag are skipped; the others become S3-event-shaped records
(`ObjectCreated:Put`, several per message) sent with SendMessageBatch to the queue the bucket's own
notifications feed. The ingest Lambda then handles them exactly as it handles uploads: GET If-Match
the listed ETag (an object deleted or replaced since is skipped, so a delete during a backfill is
never undone), embed, one segment per batch. Records carry the listing sequencer "0" (known.py), so
any real S3 event for the same key wins whatever the order of arrival.

Bounded load: at most `rate` records a second, and no sending while the queue holds `max_queued`
messages or more. Resumable: after every send a small state file records, per prefix, the last key
whose fate is settled (queued or skipped); a new run lists from there (StartAfter). A run stopped
between a send and its checkpoint re-sends at most one call's records, which the index absorbs (the
same object version twice is one live entry).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from .bucket import Listed, S3Source, SourceError, list_pages
from .known import LISTING_SEQUENCER, Known

EVENT_NAME = "ObjectCreated:Put"
EVENT_SOURCE = "imgsearch:backfill"  # real notifications say "aws:s3"; the ingest handler reads neither
RECORDS_PER_MESSAGE = 10
MESSAGES_PER_CALL = 10  # SendMessageBatch's maximum
CALL_BYTES = 250_000  # SQS: at most 256 KiB per message and per batch call, all told
STATE_FORMAT = 1
QUEUE_URL = re.compile(
    r"^https?://[^/\s]+/\d{12}/[A-Za-z0-9_-]{1,80}(\.fifo)?$|^https?://[^/\s]+/[^/\s]+/[^/\s]+$"
)
SQS_HOST_REGION = re.compile(
    r"^https://(?:sqs\.([a-z0-9-]+)\.amazonaws\.com|([a-z0-9-]+)\.queue\.amazonaws\.com)/"
)


# --- messages -----------------------------------------------------------------------------------------


def event_record(bucket: str, item: Listed, *, sequencer: str = LISTING_SEQUENCER) -> dict[str, Any]:
    """One S3 notification record for a listed object (the shape lambdas/common/s3events.py parses)."""
    when = datetime.fromtimestamp(item.time, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return {
        "eventVersion": "2.1",
        "eventSource": EVENT_SOURCE,
        "eventTime": when,
        "eventName": EVENT_NAME,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(item.key, safe="/"),  # S3 URL-encodes event keys (spaces as +)
                "size": item.size,
                "eTag": item.etag,
                "sequencer": sequencer,
            },
        },
    }


def event_body(records: Iterable[dict[str, Any]]) -> str:
    return json.dumps({"Records": list(records)}, separators=(",", ":"), ensure_ascii=False)


# --- plan, progress, checkpoint ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What to backfill and how fast."""

    bucket: str
    prefixes: tuple[str, ...] = ("",)
    queue_url: str
    rate: float = 500.0  # records a second (0: as fast as SQS takes them)
    max_queued: int = 2000  # wait while the queue holds this many messages (0: never wait)
    records_per_message: int = RECORDS_PER_MESSAGE
    page_size: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefixes", covering(self.prefixes))
        if not 1 <= self.records_per_message <= 100:
            raise SourceError(f"records per message must be 1 to 100, not {self.records_per_message}")
        if self.rate < 0 or self.max_queued < 0:
            raise SourceError("--rate and --max-queued must be 0 (no limit) or more")

    @property
    def sources(self) -> list[S3Source]:
        return [S3Source(self.bucket, p) for p in self.prefixes]


def covering(prefixes: Iterable[str]) -> tuple[str, ...]:
    """Sorted prefixes without the ones another covers ("a/" covers "a/b/"); () or "" means everything."""
    kept: list[str] = []
    for prefix in sorted(set(prefixes) or {""}):
        if not any(prefix.startswith(k) for k in kept):
            kept.append(prefix)
    return tuple(kept)


@dataclass
class Progress:
    listed: int = 0  # objects listed
    skipped: int = 0  # already indexed or rejected at the same ETag
    queued: int = 0  # records sent
    messages: int = 0  # messages sent
    calls: int = 0  # SendMessageBatch calls
    indexed: int = 0  # live entries gained by the index since this run started (all writers)
    rejected: int = 0  # rejections recorded since this run started (all writers)
    in_queue: int = 0  # messages waiting or in flight, as last seen
    waited: float = 0.0  # seconds spent waiting for the queue to drain below max_queued
    seconds: float = 0.0
    listing_seconds: float = 0.0
    sending_seconds: float = 0.0
    done: bool = False
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def default_state_path(plan: Plan) -> Path:
    """Where a backfill of this bucket + prefixes into this queue keeps its checkpoint."""
    digest = hashlib.sha256(json.dumps([plan.bucket, plan.prefixes, plan.queue_url]).encode()).hexdigest()[
        :12
    ]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "imgsearch" / "backfill" / f"{plan.bucket}-{digest}.json"


@dataclass
class Checkpoint:
    """Per prefix: the last key whose fate is settled ("after") and whether the prefix is finished."""

    path: Path
    plan: Plan
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, plan: Plan, *, restart: bool = False) -> Checkpoint:
        if restart:
            path.unlink(missing_ok=True)
        if not path.is_file():
            return cls(path, plan, {p: {"after": "", "done": False} for p in plan.prefixes})
        try:
            saved = json.loads(path.read_text())
            same = (saved["bucket"], tuple(saved["prefixes"]), saved["queue_url"]) == (
                plan.bucket,
                plan.prefixes,
                plan.queue_url,
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SourceError(
                f"backfill state {path} is unreadable ({error}): pass --restart to list from the start"
            ) from None
        if not same or saved.get("format") != STATE_FORMAT:
            raise SourceError(
                f"backfill state {path} belongs to another backfill (s3://{saved.get('bucket')} prefixes "
                f"{saved.get('prefixes')} → {saved.get('queue_url')}): pass --state with another file, or --restart"
            )
        return cls(path, plan, dict(saved["positions"]), dict(saved.get("counts", {})))

    @property
    def started(self) -> bool:
        return any(p["after"] or p["done"] for p in self.positions.values())

    @property
    def finished(self) -> bool:
        return all(p["done"] for p in self.positions.values())

    def save(self, progress: Progress) -> None:
        self.counts = {
            "listed": progress.listed,
            "skipped": progress.skipped,
            "queued": progress.queued,
            "messages": progress.messages,
        }
        payload = {
            "format": STATE_FORMAT,
            "bucket": self.plan.bucket,
            "prefixes": list(self.plan.prefixes),
            "queue_url": self.plan.queue_url,
            "positions": self.positions,
            "counts": self.counts,
            "updated": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(self.path)


# --- the queue ---------------------------------------------------------------------------------------------


def queue_region(url: str) -> str | None:
    """The region an AWS queue URL names (None for another endpoint, e.g. moto)."""
    match = SQS_HOST_REGION.match(url)
    return (match.group(1) or match.group(2)) if match else None


class Queue:
    """The ingest queue: checked once, then SendMessageBatch and its depth."""

    def __init__(self, sqs: Any, url: str) -> None:
        self.sqs = sqs
        self.url = url

    def check(self) -> list[str]:
        """Raise SourceError if the queue cannot be used; warnings (strings) for a doubtful one."""
        if not QUEUE_URL.match(self.url):
            raise SourceError(
                f"{self.url!r} is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME): "
                "use the stack's IngestQueueUrl output"
            )
        if self.url.endswith(".fifo"):
            raise SourceError(
                f"{self.url} is a FIFO queue; S3 notifies standard queues only: use IngestQueueUrl"
            )
        attributes = self._attributes(["QueueArn", "RedrivePolicy", "ApproximateNumberOfMessages"])
        warnings = []
        if "RedrivePolicy" not in attributes:
            warnings.append(
                f"{self.url} has no dead-letter queue: is it the ingest queue (IngestQueueUrl) and not "
                "DeadLetterQueueUrl?"
            )
        return warnings

    def depth(self) -> int:
        """Messages waiting plus in flight."""
        a = self._attributes(["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return int(a.get("ApproximateNumberOfMessages", 0)) + int(
            a.get("ApproximateNumberOfMessagesNotVisible", 0)
        )

    def visible(self) -> int:
        return int(self._attributes(["ApproximateNumberOfMessages"]).get("ApproximateNumberOfMessages", 0))

    def _attributes(self, names: list[str]) -> dict[str, str]:
        try:
            found: dict[str, str] = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)[
                "Attributes"
            ]
        except Exception as error:
            raise explain_queue(error, self.url) from None
        return found

    def send(self, bodies: list[str], *, attempts: int = 6) -> None:
        """Send up to ten bodies in one call; entries SQS reports as failed are retried with back-off."""
        entries = {str(i): body for i, body in enumerate(bodies)}
        for attempt in range(attempts):
            try:
                answer = self.sqs.send_message_batch(
                    QueueUrl=self.url, Entries=[{"Id": i, "MessageBody": b} for i, b in entries.items()]
                )
            except Exception as error:
                raise explain_queue(error, self.url) from None
            failed = answer.get("Failed", [])
            if not failed:
                return
            permanent = [f for f in failed if f.get("SenderFault")]
            if permanent:
                raise SourceError(
                    f"SQS refused a message: {permanent[0].get('Code')}: {permanent[0].get('Message')}"
                )
            entries = {f["Id"]: entries[f["Id"]] for f in failed}
            time.sleep(min(5.0, 0.2 * 2**attempt))
        raise SourceError(
            f"SQS kept failing {len(entries)} message(s) after {attempts} attempts; run again to resume"
        )


def explain_queue(error: Exception, url: str) -> Exception:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(error, NoCredentialsError):
        return SourceError("no AWS credentials found for SQS; configure them (aws configure or AWS_PROFILE)")
    if isinstance(error, EndpointConnectionError):
        return SourceError(f"cannot reach SQS for {url}: {error}; check --endpoint-url and the network")
    if not isinstance(error, ClientError):
        return error
    code = str(error.response.get("Error", {}).get("Code", ""))
    if "NonExistentQueue" in code or code in ("QueueDoesNotExist", "InvalidAddress"):
        return SourceError(
            f"the queue {url} does not exist: use the stack's IngestQueueUrl output "
            '(aws cloudformation describe-stacks --stack-name NAME --query "Stacks[0].Outputs")'
        )
    if code in (
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    ):
        return SourceError(
            f"no permission on {url} ({code}): the credentials need sqs:SendMessage and sqs:GetQueueAttributes on it"
        )
    return SourceError(f"SQS error on {url}: {code}: {error}")


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class _Sender:
    """Records → messages → SendMessageBatch calls, paced by the plan's rate and queue bound."""

    queue: Queue
    plan: Plan
    progress: Progress
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    started: float = 0.0
    sent_this_run: int = 0
    depth_seen: int = 0
    depth_at: float = -1e9
    sent_since_depth: int = 0

    def send(self, records: list[dict[str, Any]]) -> None:
        n = self.plan.records_per_message
        bodies = [event_body(records[i : i + n]) for i in range(0, len(records), n)]
        call: list[str] = []
        size = 0
        for body in bodies:
            if call and (len(call) == MESSAGES_PER_CALL or size + len(body.encode()) > CALL_BYTES):
                self._call(call)
                call, size = [], 0
            call.append(body)
            size += len(body.encode())
        if call:
            self._call(call)
        self.progress.queued += len(records)

    def _call(self, bodies: list[str]) -> None:
        records = sum(body.count('"eventName"') for body in bodies)
        self._pace(records)
        started = self.clock()
        self.queue.send(bodies)
        self.progress.sending_seconds += self.clock() - started
        self.sent_this_run += records
        self.sent_since_depth += len(bodies)
        self.progress.messages += len(bodies)
        self.progress.calls += 1

    def _pace(self, records: int) -> None:
        if self.plan.rate:
            due = self.started + self.sent_this_run / self.plan.rate
            if (wait := due - self.clock()) > 0:
                self.sleep(wait)
        if self.plan.max_queued:
            while True:
                if self.clock() - self.depth_at >= 1.0:  # one GetQueueAttributes a second at most
                    self.depth_seen, self.depth_at, self.sent_since_depth = (
                        self.queue.visible(),
                        self.clock(),
                        0,
                    )
                self.progress.in_queue = self.depth_seen + self.sent_since_depth
                if self.progress.in_queue < self.plan.max_queued:
                    return
                waited = self.clock()
                self.sleep(1.0)
                self.progress.waited += self.clock() - waited


def backfill(
    *,
    s3: Any,
    queue: Queue,
    plan: Plan,
    checkpoint: Checkpoint,
    known: Known | None = None,
    report: Callable[[Progress], None] | None = None,
    report_every: float = 1.0,
    index_every: float = 5.0,
    wait: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Progress:
    """List, skip, queue; resumable through `checkpoint`. With `wait`, return once the queue is empty.

    `known` (the index) makes same-ETag objects skipped and is polled every `index_every` seconds for
    the indexed / rejected counts. `report` is called with the progress at most every `report_every`
    seconds and once at the end.
    """
    progress = Progress(resumed=checkpoint.started)
    for name in ("listed", "skipped", "queued", "messages"):
        setattr(progress, name, int(checkpoint.counts.get(name, 0)))
    start = clock()
    sender = _Sender(queue, plan, progress, sleep, clock, started=start)
    base = (known.count, known.rejected) if known is not None else (0, 0)
    last_report = last_index = start

    def tick(force: bool = False) -> None:
        nonlocal last_report, last_index
        now = clock()
        if known is not None and (force or now - last_index >= index_every):
            known.refresh()
            progress.indexed, progress.rejected = known.count - base[0], known.rejected - base[1]
            last_index = now
        progress.seconds = now - start
        if report is not None and (force or now - last_report >= report_every):
            report(progress)
            last_report = now

    for source in plan.sources:
        position = checkpoint.positions.setdefault(source.prefix, {"after": "", "done": False})
        if position["done"]:
            continue
        pending: list[dict[str, Any]] = []
        pending_last = ""
        batch_records = plan.records_per_message * MESSAGES_PER_CALL
        listing = list_pages(s3, source, start_after=position["after"], page_size=plan.page_size)
        while True:
            listed_at = clock()
            page = next(listing, None)
            progress.listing_seconds += clock() - listed_at
            if page is None:
                break
            for item in page:
                progress.listed += 1
                if known is not None and known.unchanged(plan.bucket, item.key, item.etag):
                    progress.skipped += 1
                    if not pending:
                        position["after"] = item.key  # settled: nothing unsent before it
                    continue
                sequencer = (
                    known.listing_sequencer(plan.bucket, item.key) if known is not None else LISTING_SEQUENCER
                )
                pending.append(event_record(plan.bucket, item, sequencer=sequencer))
                pending_last = item.key
                if len(pending) >= batch_records:
                    sender.send(pending)
                    pending = []
                    position["after"] = pending_last
                    checkpoint.save(progress)
                    tick()
            if not pending:
                checkpoint.save(progress)  # a page of skips only: remember it was looked at
            tick()
        if pending:
            sender.send(pending)
            position["after"] = pending_last
        position["done"] = True
        checkpoint.save(progress)
        tick()
    progress.done = True
    if wait:
        empty_twice = 0
        while empty_twice < 2:  # approximate counts: two empty looks a second apart
            progress.in_queue = queue.depth()
            empty_twice = empty_twice + 1 if progress.in_queue == 0 else 0
            tick()
            sleep(1.0)
    tick(force=True)
    return progress


def stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    """A deployed stack's outputs (IngestQueueUrl, ImagesBucketName, …) by key."""
    try:
        found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception as error:
        from botocore.exceptions import ClientError

        if isinstance(error, ClientError) and "does not exist" in str(error):
            raise SourceError(
                f"no stack named {stack!r} in this account and region: check --stack and AWS_REGION "
                "(aws cloudformation list-stacks)"
            ) from None
        raise SourceError(f"cannot read the outputs of stack {stack!r}: {error}") from None
    with contextlib.suppress(IndexError, KeyError):
        return {o["OutputKey"]: o["OutputValue"] for o in found[0].get("Outputs", [])}
    return {}
