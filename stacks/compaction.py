"""Compaction: one instance at a time (reserved concurrency 1), on an EventBridge schedule and on demand.

On demand: the ingest function invokes it asynchronously once the manifest lists more than
compactAfterSegments segments (stacks/ingest.py, Ingest.trigger_compaction).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from .functions import Assets, python_function
from .storage import Storage
from .wiring import COMPACT, COMPACT_INVOKE_MAX_EVENT_AGE_SECONDS, compact_environment


class Compaction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        storage: Storage,
        assets: Assets,
        memory_mb: int,
        timeout_seconds: int,
        schedule: str,
        retired_grace_days: int = 1,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            assets=assets,
            file_system=storage.file_system,
            spec=COMPACT,
            memory_mb=memory_mb,
            timeout_seconds=timeout_seconds,
            environment=compact_environment(index_uri=storage.index_uri, retired_grace_days=retired_grace_days),
            reserved_concurrency=1,
            description="imgsearch compaction: fold segments and tombstones into one base segment",
        )
        storage.grant_index_access(self.function, write=True, tag=True)
        # Asynchronous invokes (the schedule, the ingest function's threshold trigger): an invoke that
        # arrives while a compaction runs is throttled (reserved concurrency 1) and retried by Lambda's
        # queue; drop it after a minute instead of letting duplicates pile up, and do not retry a
        # failed run (the next trigger or schedule catches up; a cut-short run changed nothing).
        self.function.configure_async_invoke(
            max_event_age=Duration.seconds(COMPACT_INVOKE_MAX_EVENT_AGE_SECONDS), retry_attempts=0
        )
        self.rule = events.Rule(
            self,
            "Schedule",
            schedule=events.Schedule.expression(schedule),
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],  # the next run catches up
            description="imgsearch: compact the index",
        )
