"""Compaction (EventBridge schedule, reserved concurrency 1): fold segments and tombstones into a base.

Once the index holds enough images and still uses the random-projection (LSH) encoder, it fits
PCA + ITQ instead (which also compacts). A compaction that loses the race changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imgsearch.encode import MIN_FIT
from imgsearch.errors import BadParameter, ConflictError, IndexNotFound
from imgsearch.index import ImageIndex
from imgsearch.segment import HNSW_MIN
from lambdas.common import config

INDEX_URI = config.index_uri()
THREADS = config.integer("COMPACT_THREADS", 0, low=0, high=64)
HNSW_MIN_ENTRIES = config.integer("HNSW_MIN", HNSW_MIN, low=1, high=1 << 40)
MIN_SEGMENTS = config.integer("MIN_SEGMENTS", 2, low=1, high=100_000)
AUTO_FIT = config.flag("AUTO_FIT", True)
FIT_AFTER = config.integer("FIT_AFTER", MIN_FIT, low=2, high=1 << 40)

logger = Logger()
metrics = Metrics()
tracer = Tracer()
index = ImageIndex.open(INDEX_URI)


@tracer.capture_method
def run(action: str) -> dict[str, Any]:
    try:
        manifest = index.manifest()
    except IndexNotFound:
        logger.info("no index yet; nothing to compact")
        return {"action": "none", "reason": "no index yet"}
    encoder = index.encoder(manifest.encoder)
    wants_fit = action == "fit" or (
        action == "auto" and AUTO_FIT and encoder.kind == "lsh" and manifest.count >= FIT_AFTER
    )
    try:
        if wants_fit:
            try:
                fitted, result = index.fit(
                    bits=encoder.bits, hnsw_min=HNSW_MIN_ENTRIES, threads=THREADS, min_count=FIT_AFTER
                )
                summary = {"action": "fit", "encoder": fitted.version, **asdict(result)}
            except BadParameter as error:  # fewer live images than written entries: not yet
                logger.info("not fitting yet", extra={"reason": str(error)})
                wants_fit = False
        if not wants_fit:
            result = index.compact(hnsw_min=HNSW_MIN_ENTRIES, threads=THREADS, min_segments=MIN_SEGMENTS)
            summary = {"action": "compact", **asdict(result)}
    except ConflictError as error:
        logger.warning("compaction lost a race; the manifest is unchanged", extra={"error": str(error)})
        return {"action": "none", "reason": str(error)}
    metrics.add_metric(name="SegmentsFolded", unit=MetricUnit.Count, value=result.before)
    metrics.add_metric(name="EntriesDropped", unit=MetricUnit.Count, value=result.dropped)
    metrics.add_metric(name="CompactionSeconds", unit=MetricUnit.Seconds, value=result.seconds)
    logger.info("compaction done", extra=summary)
    return summary


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Scheduled event (or {"action": "compact" | "fit" | "auto"} from a manual invoke)."""
    action = event.get("action", "auto") if isinstance(event, dict) else "auto"
    if action not in ("auto", "compact", "fit"):
        raise ValueError(f"action {action!r} is not one of auto, compact, fit")
    return run(action)
