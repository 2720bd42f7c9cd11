"""Copy a segment index's live entries into an S3 Vectors index, from the stored raw embeddings.

No image is read again: each segment's raw embeddings (`ImageIndex.load_raw`) are L2-normalised and
put in batches of up to 500 (PutVectors' limit) under S3VectorsBackend's ordering rule, so an export
can run while ingest already writes to the S3 Vectors index: a vector newer than the exported entry
is never overwritten. Resumable twice over: a checkpoint file records the rows done per segment, and
a re-run without it skips every entry already held at the same sequencer and ETag (GetVectors only).

>>> report = export_index(ImageIndex.open("./index"), S3VectorsBackend.open("s3vectors://v/images"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Batch
from .errors import BadParameter, ModelMismatch
from .index import ImageIndex
from .resolve import live_masks
from .s3vectors import PUT_BATCH, S3VectorsBackend
from .segment import table_refs

CONTENT_TYPE = "content_type"  # the key table's extra column, when the index recorded it


@dataclass
class ExportReport:
    live: int = 0  # live entries of the segment index (of the exported bucket)
    exported: int = 0  # put into S3 Vectors by this run
    unchanged: int = 0  # already held at the same version, or a newer one
    refused: int = 0  # entries S3 Vectors cannot take (e.g. a key over 1024 characters)
    resumed: int = 0  # rows the checkpoint said were done already
    segments: int = 0
    bucket: str = ""
    seconds: float = 0.0
    state: str = ""
    refusals: list[str] = field(default_factory=list)  # "key: reason", the first few

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportCheckpoint:
    """Rows done per segment, for one source index, target index and bucket; saved after every batch."""

    path: Path
    source: str
    target: str
    bucket: str
    done: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(
        cls, path: Path, *, source: str, target: str, bucket: str, restart: bool = False
    ) -> ExportCheckpoint:
        fresh = cls(path, source, target, bucket)
        if restart or not path.is_file():
            return fresh
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return fresh  # unreadable: start over (puts are idempotent, unchanged entries are skipped)
        if (saved.get("source"), saved.get("target"), saved.get("bucket")) != (source, target, bucket):
            return fresh
        fresh.done = {str(k): int(v) for k, v in (saved.get("done") or {}).items()}
        return fresh

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(
            json.dumps(
                {"source": self.source, "target": self.target, "bucket": self.bucket, "done": self.done}
            )
        )
        os.replace(partial, self.path)


def default_state_path(source: str, target: str, bucket: str) -> Path:
    """Where an export of this index (and bucket) into this S3 Vectors index keeps its checkpoint."""
    digest = hashlib.sha256(json.dumps([source, target, bucket]).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "imgsearch" / "export" / f"{digest}.json"


def export_index(
    index: ImageIndex,
    target: S3VectorsBackend,
    *,
    bucket: str | None = None,
    state: Path | None = None,
    restart: bool = False,
    batch_size: int = PUT_BATCH,
    progress: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
) -> ExportReport:
    """Put the live entries of `index` (of one bucket) into `target`; `progress(n)` after each batch.

    `bucket` picks the images bucket when the index holds several (S3 Vectors keys are object keys,
    so one S3 Vectors index holds one bucket). `total(n)` is told the number of rows to go first.
    """
    if not 1 <= batch_size <= PUT_BATCH:
        raise BadParameter(f"the batch size must be 1 to {PUT_BATCH} (PutVectors' limit), not {batch_size}")
    started = time.time()
    manifest = index.manifest()
    dim = int(manifest.model.get("dim", 0))  # type: ignore[call-overload]
    if dim and dim != target.dimension:
        raise ModelMismatch(
            f"the index holds {dim}-d embeddings ({manifest.model.get('name')}) but {target.where.uri} takes "
            f"{target.dimension}-d vectors: export into an index of dimension {dim}"
        )
    target.model = str(manifest.model.get("sha256", ""))[:16]
    segments = [index.read_segment(info.name) for info in manifest.segments]
    masks = live_masks(segments)
    buckets = sorted(
        {
            s.table.buckets[b]
            for s, m in zip(segments, masks, strict=True)
            for b in np.unique(s.table.bucket_of[m])
        }
    )
    if bucket is None:
        if len(buckets) > 1:
            raise BadParameter(
                f"the index holds objects of {len(buckets)} buckets ({', '.join(buckets)}); one S3 Vectors index "
                "holds one bucket (its keys are object keys): pass --bucket NAME, once per target index"
            )
        bucket = buckets[0] if buckets else ""
    target.bucket = bucket
    report = ExportReport(bucket=bucket)
    checkpoint = ExportCheckpoint.open(
        state or default_state_path(index.store.uri, target.where.uri, bucket),
        source=index.store.uri,
        target=target.where.uri,
        bucket=bucket,
        restart=restart,
    )
    report.state = str(checkpoint.path)
    work = []
    for info, segment, mask in zip(manifest.segments, segments, masks, strict=True):
        slot = segment.table.buckets.index(bucket) if bucket in segment.table.buckets else -1
        rows = np.flatnonzero(mask & (segment.table.bucket_of == slot))
        report.live += len(rows)
        if len(rows):
            report.segments += 1
            done = min(checkpoint.done.get(info.name, 0), len(rows))
            report.resumed += done
            work.append((info, segment, rows, done))
    if total is not None:
        total(report.live - report.resumed)
    for info, segment, rows, done in work:
        raw = index.load_raw(info)
        content_types = segment.table.extra.get(CONTENT_TYPE)
        for start in range(done, len(rows), batch_size):
            picked = rows[start : start + batch_size]
            batch = Batch()
            batch.add(
                table_refs(segment.table.take(picked)),
                np.asarray(raw[picked], dtype=np.float32),
                content_types=[content_types[int(r)] or None for r in picked]
                if content_types is not None
                else None,
                concepts=segment.concepts.take(picked) if segment.concepts is not None else None,  # tags
            )
            written = target.write(batch)
            report.exported += written.indexed
            report.unchanged += written.skipped
            report.refused += len(written.refused)
            report.refusals.extend(
                f"{r.key}: {r.reason}" for r in written.refused[: max(0, 20 - len(report.refusals))]
            )
            checkpoint.done[info.name] = start + len(picked)
            checkpoint.save()
            if progress is not None:
                progress(len(picked))
    report.seconds = round(time.time() - started, 2)
    return report
