"""Compaction (EventBridge schedule, reserved concurrency 1): the maintenance policy, one step at a time.

imgsearch.maintain decides: fit PCA + ITQ once the index is large enough, re-encode segments of an
older encoder, and merge segments size-tiered with bases capped at MAX_BASE. Steps run while the
function has time left; a step that loses the race (or is cut short) changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch import maintain, settings
from imgsearch.errors import BadParameter, ConflictError, IndexNotFound
from imgsearch.index import ImageIndex
from imgsearch.maintain import Policy
from lambdas.common import config

# Each setting's name, default and allowed values: imgsearch.settings.COMPACT (the stacks write them from it).
# IMGSEARCH_RETIRED_GRACE_SECONDS is read by the index store itself (imgsearch.store).
INDEX_URI = config.read(settings.INDEX_URI)
THREADS = config.read(settings.COMPACT_THREADS)
HNSW_MIN_ENTRIES = config.read(settings.HNSW_MIN)
POLICY = Policy(
    max_base=config.read(settings.MAX_BASE),
    merge_at=config.read(settings.MERGE_AT),
    fit_after=config.read(settings.FIT_AFTER),
    auto_fit=config.read(settings.AUTO_FIT),
)
# No step starts with less time left than this (a step cut short changes nothing, but wastes the run).
RESERVE_SECONDS = config.read(settings.STEP_RESERVE_SECONDS)

logger = Logger()
metrics = Metrics()
tracer = Tracer()
index = ImageIndex.open(INDEX_URI)


@tracer.capture_method
def run(action: str, remaining_seconds: float) -> dict[str, Any]:
    """One run of maintenance: `auto` takes the policy's steps while time allows; `fit` fits first."""
    try:
        manifest = index.manifest()
    except IndexNotFound:
        logger.info("no index yet; nothing to compact")
        return {"action": "none", "reason": "no index yet"}
    deadline = time.monotonic() + max(0.0, remaining_seconds - RESERVE_SECONDS)
    steps: list[maintain.Done] = []
    try:
        if action == "fit":
            encoder, _ = index.fit(
                bits=index.encoder(manifest.encoder).bits, min_count=POLICY.fit_after, reencode=False
            )
            steps.append(maintain.Done("fit", "requested", len(manifest.segments), 0, 0, 0.0, encoder.version))
        steps += maintain.run(
            index, policy=POLICY, deadline=deadline, hnsw_min=HNSW_MIN_ENTRIES, threads=THREADS
        )
    except (ConflictError, BadParameter) as error:
        logger.warning("maintenance stopped; the manifest is as the last step left it", extra={"error": str(error)})
        if not steps:
            return {"action": "none", "reason": str(error)}
    merges = [s for s in steps if s.action == "merge"]
    summary = {
        "action": "fit" if any(s.action == "fit" for s in steps) else "compact" if merges else "none",
        "steps": [asdict(s) for s in steps],
        "before": sum(s.segments for s in merges),
        "entries": sum(s.entries for s in merges),
        "dropped": sum(s.dropped for s in merges),
        "seconds": round(sum(s.seconds for s in steps), 3),
        "encoder": steps[-1].encoder if steps else manifest.encoder,
    }
    orphans = index.collect_orphans().segments
    summary["orphans"] = orphans
    metrics.add_metric(name="SegmentsFolded", unit=MetricUnit.Count, value=summary["before"])
    metrics.add_metric(name="EntriesDropped", unit=MetricUnit.Count, value=summary["dropped"])
    metrics.add_metric(name="CompactionSeconds", unit=MetricUnit.Seconds, value=summary["seconds"])
    logger.info("maintenance done", extra=summary)
    return summary


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Scheduled event (or {"action": "compact" | "fit" | "auto"} from a manual invoke)."""
    action = event.get("action", "auto") if isinstance(event, dict) else "auto"
    if action not in ("auto", "compact", "fit"):
        raise ValueError(f"action {action!r} is not one of auto, compact, fit")
    return run(action, context.get_remaining_time_in_millis() / 1000)
