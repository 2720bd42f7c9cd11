"""Ingest: S3 ObjectCreated/ObjectRemoved → SQS (with DLQ) → ingest Lambda → one segment per batch.

The notifications cover the watched prefixes × suffixes of the images bucket. On an imported bucket CDK's
notification custom resource runs unmanaged (`Managed: false`): it adds these entries to the bucket's
own and, on delete, removes only these.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .functions import Assets, python_function
from .nag import suppress
from .storage import Storage
from .wiring import (
    DEAD_LETTER_RETENTION_DAYS,
    INGEST,
    NOTIFICATION_EVENTS,
    QUEUE_RETENTION_DAYS,
    REPORT_BATCH_ITEM_FAILURES,
    compaction_trigger_environment,
    ingest_environment,
    visibility_timeout_seconds,
    watch_filters,
)


class Ingest(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: Storage,
        assets: Assets,
        memory_mb: int,
        timeout_seconds: int,
        batch_size: int,
        batch_window_seconds: int,
        max_receive_count: int,
        max_concurrency: int = 10,
        code_bits: int,
        suffixes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(DEAD_LETTER_RETENTION_DAYS),
        )
        suppress(
            self.dead_letters,
            {"AwsSolutions-SQS3": "This queue is the dead-letter queue of the ingest queue."},
        )
        self.queue = sqs.Queue(
            self,
            "Queue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(visibility_timeout_seconds(timeout_seconds)),
            retention_period=Duration.days(QUEUE_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letters, max_receive_count=max_receive_count
            ),
        )
        destination = s3n.SqsDestination(self.queue)
        for prefix, suffix in watch_filters(storage.images_prefixes, suffixes):
            filters = (
                [s3.NotificationKeyFilter(prefix=prefix or None, suffix=suffix or None)]
                if (prefix or suffix)
                else []
            )
            for event_type in NOTIFICATION_EVENTS:
                storage.images.add_event_notification(s3.EventType[event_type], destination, *filters)

        self.function = python_function(
            self,
            "Function",
            assets=assets,
            file_system=storage.file_system,
            spec=INGEST,
            memory_mb=memory_mb,
            timeout_seconds=timeout_seconds,
            environment=ingest_environment(
                index_uri=storage.index_uri,
                code_bits=code_bits,
                watch_prefixes=storage.images_prefixes,
                watch_suffixes=suffixes,
                index_backend=storage.index_backend,
                vector_index_arn=storage.vector_index_arn,
                thumbnail_uri=storage.thumbnail_uri,
            ),
            description="imgsearch ingest: S3 notifications → embeddings → one index segment per batch",
        )
        self.function.add_event_source(
            sources.SqsEventSource(
                self.queue,
                batch_size=batch_size,
                max_batching_window=Duration.seconds(batch_window_seconds) if batch_window_seconds else None,
                report_batch_item_failures=REPORT_BATCH_ITEM_FAILURES,
                # the bound on functions a backlog (a backfill) runs at once, and so on manifest CAS rate
                max_concurrency=max_concurrency,
            )
        )
        storage.grant_image_reads(self.function)
        storage.grant_index_access(self.function, write=True)
        storage.grant_thumbnails(self.function, write=True)
        self._file_system = storage.file_system

    def trigger_compaction(self, compaction: lambda_.IFunction, *, after_segments: int) -> None:
        """Invoke `compaction` asynchronously once the manifest lists more than `after_segments` segments.

        0 leaves the schedule alone in charge (no variable, no permission). On EFS the function sits
        in isolated subnets, so the Lambda API is reached through an interface endpoint (filesystem.py).
        """
        if not after_segments:
            return
        environment = compaction_trigger_environment(
            function_name=compaction.function_name, after_segments=after_segments
        )
        for name, value in environment.items():
            self.function.add_environment(name, value)
        self.function.add_to_role_policy(  # this one function, not its versions or aliases (no `:*`)
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[compaction.function_arn])
        )
        if self._file_system is not None:
            self._file_system.lambda_endpoint(invoke=compaction, callers=self.function)

