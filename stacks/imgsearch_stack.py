"""The deployable unit: one Stack composing storage, ingest, query API, compaction and monitoring."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from .compaction import Compaction
from .config import StageConfig
from .functions import Assets
from .ingest import Ingest
from .monitoring import Monitoring
from .nag import BASIC_EXECUTION, suppress
from .query_api import QueryApi
from .storage import Storage


class ImgSearchStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        architecture = (
            lambda_.Architecture.ARM_64 if config.architecture == "arm64" else lambda_.Architecture.X86_64
        )
        storage = Storage(
            self,
            "Storage",
            versioned=config.imagesVersioned,
            retired_grace_days=config.retiredGraceDays,
            index_store=config.indexStore,
            images_bucket=config.imagesBucket,
            images_prefixes=config.watched_prefixes,
            images_kms_key_arn=config.imagesBucketKmsKeyArn,
            index_backend=config.indexBackend,
            vector_dimension=config.vectorDimension,
        )
        assets = Assets(self, "Assets", folder=config.assets, architecture=architecture)
        ingest = Ingest(
            self,
            "Ingest",
            storage=storage,
            assets=assets,
            memory_mb=config.ingestMemoryMb,
            timeout_seconds=config.ingestTimeoutSeconds,
            batch_size=config.batchSize,
            batch_window_seconds=config.batchWindowSeconds,
            max_receive_count=config.maxReceiveCount,
            max_concurrency=config.ingestMaxConcurrency,
            code_bits=config.codeBits,
            suffixes=config.watched_suffixes,
        )
        query = QueryApi(
            self,
            "Query",
            storage=storage,
            assets=assets,
            stage=config.stage,
            memory_mb=config.queryMemoryMb,
            timeout_seconds=config.queryTimeoutSeconds,
            default_metric=config.defaultMetric,
            presign_seconds=config.presignSeconds,
            rate_limit=config.throttleRateLimit,
            burst_limit=config.throttleBurstLimit,
            quota_per_day=config.quotaPerDay,
            cors_origins=config.corsOrigins,
            watch_suffixes=config.watched_suffixes,
        )
        functions = {"Ingest": ingest.function, "Query": query.function}
        if storage.vectors is None:  # S3 Vectors maintains its own index: nothing to compact
            compaction = Compaction(
                self,
                "Compaction",
                storage=storage,
                assets=assets,
                memory_mb=config.compactMemoryMb,
                timeout_seconds=config.compactTimeoutSeconds,
                schedule=config.compactSchedule,
                retired_grace_days=config.retiredGraceDays,
            )
            ingest.trigger_compaction(compaction.function, after_segments=config.compactAfterSegments)
            functions["Compaction"] = compaction.function
        Monitoring(
            self,
            "Monitoring",
            queue=ingest.queue,
            dead_letters=ingest.dead_letters,
            functions=functions,
            api=query.api,
            access_logs=query.access_logs,  # 429s are counted in the API's access log
            alarm_email=config.alarmEmail,
        )
        self._suppress_notification_handler()
        CfnOutput(
            self,
            "ImagesBucketName",
            value=storage.images.bucket_name,
            description="upload images here"
            + (
                " (an existing bucket: the stack neither owns nor deletes it)"
                if storage.images_imported
                else ""
            ),
        )
        if storage.index is not None:
            CfnOutput(self, "IndexBucketName", value=storage.index.bucket_name)
            CfnOutput(
                self, "IndexUri", value=storage.index_uri, description="the index, for imgsearch --index / backfill --stack"
            )
        if storage.vectors is not None:
            CfnOutput(
                self,
                "VectorIndexArn",
                value=storage.vectors.index_arn,
                description="the S3 Vectors index, for imgsearch export --to / search",
            )
            CfnOutput(self, "VectorBucketArn", value=storage.vectors.bucket_arn)
        if storage.file_system is not None:
            CfnOutput(
                self,
                "IndexFileSystemId",
                value=storage.file_system.file_system.file_system_id,
                description="the index (mounted at /mnt/index through the access point)",
            )
            CfnOutput(self, "IndexAccessPointId", value=storage.file_system.access_point.access_point_id)
        CfnOutput(self, "ApiUrl", value=query.api.url, description="base URL of the query API")
        CfnOutput(
            self,
            "ApiKeyId",
            value=query.key.key_id,
            description="aws apigateway get-api-key --include-value --api-key <id>",
        )
        CfnOutput(self, "IngestQueueUrl", value=ingest.queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=ingest.dead_letters.queue_url)

    def _suppress_notification_handler(self) -> None:
        """CDK's own singleton that configures S3 bucket notifications (a custom resource we do not write)."""
        for child in self.node.children:
            if child.node.id.startswith("BucketNotificationsHandler"):
                suppress(
                    child,
                    {
                        "AwsSolutions-IAM4": "CDK's bucket-notification custom resource uses the basic execution "
                        "policy only to write its own logs.",
                        "AwsSolutions-IAM5": "CDK's bucket-notification custom resource needs "
                        "s3:PutBucketNotification, which it scopes itself.",
                    },
                    applies_to={"AwsSolutions-IAM4": [BASIC_EXECUTION], "AwsSolutions-IAM5": ["Resource::*"]},
                )
