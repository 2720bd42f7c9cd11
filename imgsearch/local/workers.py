"""What Lambda's event-source mapping and EventBridge schedule do, on a laptop.

IngestWorker long-polls the ingest queue, gathers a batch like the SQS event source (batch size and
batching window from the stack settings), hands the handler the same SQS event Lambda builds, deletes
the messages the handler did not report in batchItemFailures and leaves the others to become visible
again after the visibility timeout (then the dead-letter queue after maxReceiveCount receives).
CompactionWorker invokes the compaction handler with a scheduled event every few seconds.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .api import LambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
REGION = "us-east-1"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of the SQS event Lambda sends (see tests/events/sqs_s3_object_created.json)."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class IngestWorker:
    def __init__(
        self,
        *,
        sqs: Any,
        queue_url: str,
        queue_arn: str,
        handler: Handler,
        batch_size: int,
        batch_window_seconds: int,
        timeout_seconds: int,
        before: Callable[[list[dict[str, Any]]], None] | None = None,
        poll_seconds: int = 1,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.handler = handler
        self.batch_size = batch_size
        self.batch_window = batch_window_seconds
        self.timeout_seconds = timeout_seconds
        self.before = before  # e.g. mirror the objects the batch names (--data)
        self.poll_seconds = poll_seconds
        self.stopping = threading.Event()
        self.idle = threading.Event()
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(timeout=self.timeout_seconds + 5)

    def _receive(self, wait: float, most: int) -> list[dict[str, Any]]:
        """At most `most` messages (never more: every message received is handled, like Lambda's)."""
        got = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, most)),
            WaitTimeSeconds=max(0, min(20, round(wait))),
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = got.get("Messages", [])
        return messages

    def gather(self) -> list[dict[str, Any]]:
        """Up to batch_size messages: what arrives within the batching window after the first one."""
        messages = self._receive(self.poll_seconds, self.batch_size)
        if not messages:
            return []
        deadline = time.monotonic() + self.batch_window
        while len(messages) < self.batch_size and not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                messages += self._receive(min(1.0, left), self.batch_size - len(messages))
            except Exception as error:  # keep what was received: it is handled now, not lost in flight
                log(f"ingest: cannot receive more from the queue: {error}")
                break
        return messages

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                messages = self.gather()
            except Exception as error:  # the endpoint went away (stopping) or a transient error
                if not self.stopping.is_set():
                    log(f"ingest: cannot receive from the queue: {error}")
                    time.sleep(1)
                continue
            if not messages:
                self.idle.set()
                continue
            self.idle.clear()
            self.invoke(messages)

    def invoke(self, messages: list[dict[str, Any]]) -> None:
        records = [sqs_record(m, self.queue_arn) for m in messages]
        started = time.perf_counter()
        if self.before is not None:
            try:
                self.before(records)
            except Exception as error:
                log(f"ingest: mirroring the batch failed (it is still indexed): {error}")
        context = LambdaContext(function_name="imgsearch-local-ingest", timeout_seconds=self.timeout_seconds)
        try:
            result = self.handler({"Records": records}, context)
        except Exception:
            log("ingest: the handler failed; the batch becomes visible again after the visibility timeout")
            traceback.print_exc()
            return
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        done = [r for r in records if r["messageId"] not in failed]
        for start in range(0, len(done), 10):
            deleted = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
                    for i, r in enumerate(done[start : start + 10])
                ],
            )
            for failure in deleted.get("Failed", []):  # such a message comes back: indexing twice is harmless
                log(f"ingest: could not delete a handled message: {failure.get('Message')}")
        self.batches += 1
        took = time.perf_counter() - started
        log(
            f"ingest: {len(records)} message(s) handled in {took:.1f} s"
            + (f", {len(failed)} left for retry" if failed else "")
        )


class CompactionWorker:
    """The EventBridge schedule: the compaction handler every `every` seconds (one at a time)."""

    def __init__(self, *, handler: Handler, every: float, timeout_seconds: int) -> None:
        self.handler = handler
        self.every = every
        self.timeout_seconds = timeout_seconds
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="compaction-worker", daemon=True)

    def start(self) -> None:
        if self.every > 0:
            self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self.stopping.wait(self.every):
            event = {
                "version": "0",
                "id": "local",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "region": REGION,
                "resources": ["arn:aws:events:us-east-1:123456789012:rule/imgsearch-local-compaction"],
                "detail": {},
            }
            context = LambdaContext(
                function_name="imgsearch-local-compaction", timeout_seconds=self.timeout_seconds
            )
            try:
                summary = self.handler(event, context)
            except Exception:
                log("compaction: the handler failed; the next run tries again")
                traceback.print_exc()
                continue
            if summary.get("action") in ("fit", "compact"):  # "none": nothing was due
                log(
                    f"compaction: {summary.get('action')} folded {summary.get('before')} segment(s), "
                    f"{summary.get('entries')} entries"
                )
