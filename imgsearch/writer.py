"""The write side in one place: a batch of additions, deletes and rejections committed as one segment.

The ingest Lambda (one batch per invocation), the CLI (one per chunk of files) and the local stack (the
same handler) all write through it:

>>> batch = BatchWriter(index)                              # doctest: +SKIP
>>> batch.add(refs, raw, concepts=embedded.concepts); batch.delete(ref); batch.reject(ref, code="empty", reason="0 bytes")  # doctest: +SKIP
>>> written = batch.commit()                                # doctest: +SKIP
>>> written.segment.name, written.manifest.generation, written.retries   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .concepts import TopConcepts
from .index import ImageIndex
from .manifest import Manifest, SegmentInfo
from .segment import ObjectRef, Rejection


@dataclass(frozen=True)
class Written:
    """What a commit wrote: the segment and the manifest that lists it (None for an empty batch)."""

    segment: SegmentInfo | None
    manifest: Manifest | None
    retries: int  # compare-and-swap attempts lost to other writers
    indexed: int
    deleted: int
    rejected: int


@dataclass
class BatchWriter:
    """Collects one batch; `commit` writes it as one immutable segment and CAS-appends it."""

    index: ImageIndex
    refs: list[ObjectRef] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    tombstones: list[ObjectRef] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    concepts: list[TopConcepts | None] = field(default_factory=list)  # one per add() with entries

    def add(self, refs: Sequence[ObjectRef], raw: np.ndarray, *, concepts: TopConcepts | None = None) -> None:
        """Entries with their raw embeddings and, if the model gives them, their top concepts (one row
        per ref each: `Embedded.vectors` and `Embedded.concepts` of the refs' images)."""
        raw = np.asarray(raw)
        if len(refs) != len(raw):
            raise ValueError(f"{len(refs)} refs for {len(raw)} embeddings")
        if concepts is not None and len(concepts) != len(refs):
            raise ValueError(f"{len(refs)} refs for {len(concepts)} rows of concepts")
        if len(refs):
            self.refs.extend(refs)
            self.vectors.append(raw)
            self.concepts.append(concepts)

    def delete(self, ref: ObjectRef) -> None:
        self.tombstones.append(ref)

    def reject(self, ref: ObjectRef, *, code: str, reason: str) -> Rejection:
        """Record an object that cannot be indexed (kept for `imgsearch info` and GET /health)."""
        rejection = Rejection(bucket=ref.bucket, key=ref.key, etag=ref.etag, code=code, reason=reason)
        self.rejections.append(rejection)
        return rejection

    def __len__(self) -> int:
        return len(self.refs) + len(self.tombstones) + len(self.rejections)

    def commit(self) -> Written:
        """One segment for everything collected (nothing is written for an empty batch)."""
        counts = {"indexed": len(self.refs), "deleted": len(self.tombstones), "rejected": len(self.rejections)}
        if not len(self):
            return Written(None, None, 0, **counts)
        raw = np.concatenate(self.vectors) if self.vectors else np.zeros((0, 0), np.float32)
        appended = self.index.append(
            self.refs, raw, tombstones=self.tombstones, rejections=self.rejections, concepts=self._concepts()
        )
        self.refs, self.vectors, self.tombstones, self.rejections, self.concepts = [], [], [], [], []
        return Written(appended.segment, appended.manifest, appended.retries, **counts)

    def _concepts(self) -> TopConcepts | None:
        """The added entries' concepts in order (entries added without get none), or None if none had any."""
        width = max((c.ids.shape[1] for c in self.concepts if c is not None), default=0)
        if not width:
            return None
        return TopConcepts.concat(
            [
                TopConcepts.none(len(v), width) if c is None else c
                for c, v in zip(self.concepts, self.vectors, strict=True)
            ]
        )
