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

from imgsearch import maintain
from imgsearch.encode import MIN_FIT
from imgsearch.errors import BadParameter, ConflictError, IndexNotFound
from imgsearch.index import ImageIndex
from imgsearch.maintain import MAX_BASE, MERGE_AT, Policy
from imgsearch.segment import HNSW_MIN
from lambdas.common import config

INDEX_URI = config.index_uri()
THREADS = config.integer("COMPACT_THREADS", 0, low=0, high=64)
HNSW_MIN_ENTRIES = config.integer("HNSW_MIN", HNSW_MIN, low=1, high=1 << 40)
POLICY = Policy(
    max_base=config.integer("MAX_BASE", MAX_BASE, low=2, high=1 << 40),
    merge_at=config.integer("MERGE_AT", MERGE_AT, low=2, high=1000),
    fit_after=config.integer("FIT_AFTER", MIN_FIT, low=2, high=1 << 40),
    auto_fit=config.flag("AUTO_FIT", True),
)
# No step starts with less time left than this (a step cut short changes nothing, but wastes the run).
RESERVE_SECONDS = config.integer("STEP_RESERVE_SECONDS", 300, low=0, high=900)

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
