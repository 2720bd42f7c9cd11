"""The index behind one interface: segments on a store (the default) or Amazon S3 Vectors.

Handlers, the CLI and the local stack write batches and run searches through an `IndexBackend`, so
the same code runs on a segment index (`SegmentBackend`: ImageIndex + BatchWriter + Searcher, no
change of behaviour) and on S3 Vectors (`imgsearch.s3vectors.S3VectorsBackend`, for collections
past one query function's memory; docs/S3VECTORS.md).

>>> backend = open_backend("s3://my-index-bucket/index")            # doctest: +SKIP
>>> batch = Batch(); batch.add(refs, raw); batch.delete(ref)         # doctest: +SKIP
>>> backend.write(batch).indexed                                     # doctest: +SKIP
>>> backend.search(raw[:1], SearchOptions(k=5, metric="cosine"))[0]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from . import settings
from .concepts import TOP_K, TopConcepts
from .encode import DEFAULT_BITS
from .errors import BadParameter, IndexNotFound
from .index import ImageIndex
from .manifest import Manifest
from .modelspec import ModelSpec
from .options import SearchOptions
from .search import Hit, Searcher
from .segment import ObjectRef, Rejection
from .store import Store
from .writer import BatchWriter

if TYPE_CHECKING:
    from .text import TextQuery

BACKENDS = settings.INDEX_BACKENDS
S3VECTORS_SCHEME = "s3vectors://"


@dataclass
class Batch:
    """One batch of changes: entries with raw embeddings, deletes, and objects that cannot be indexed.

    The same calls as BatchWriter (`add`, `delete`, `reject`), without an index: any backend writes it.
    """

    refs: list[ObjectRef] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    content_types: list[str | None] = field(default_factory=list)
    concept_parts: list[TopConcepts] = field(default_factory=list)  # per add (none: zero scores)
    deletes: list[ObjectRef] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)

    def add(
        self,
        refs: Sequence[ObjectRef],
        raw: np.ndarray,
        *,
        content_types: Sequence[str | None] | None = None,
        concepts: TopConcepts | None = None,
    ) -> None:
        """Entries with their raw embeddings (one row per ref) and, if known, content types and concepts."""
        raw = np.asarray(raw)
        if len(refs) != len(raw):
            raise ValueError(f"{len(refs)} refs for {len(raw)} embeddings")
        if content_types is not None and len(content_types) != len(refs):
            raise ValueError(f"{len(content_types)} content types for {len(refs)} refs")
        if concepts is not None and len(concepts) != len(refs):
            raise ValueError(f"{len(concepts)} concept rows for {len(refs)} refs")
        if len(refs):
            self.refs.extend(refs)
            self.vectors.append(raw.reshape(len(refs), -1))
            self.content_types.extend(content_types if content_types is not None else [None] * len(refs))
            self.concept_parts.append(concepts if concepts is not None else TopConcepts.none(len(refs), TOP_K))

    def concepts(self) -> TopConcepts | None:
        """Every entry's top concepts (rows added without are "none"), or None if no add had any."""
        if not any(part.scores.any() for part in self.concept_parts):
            return None
        return TopConcepts.concat(self.concept_parts)

    def delete(self, ref: ObjectRef) -> None:
        self.deletes.append(ref)

    def reject(self, ref: ObjectRef, *, code: str, reason: str) -> Rejection:
        """Record an object that cannot be indexed (the segment backend keeps it for `info` and /health)."""
        rejection = Rejection(bucket=ref.bucket, key=ref.key, etag=ref.etag, code=code, reason=reason)
        self.rejections.append(rejection)
        return rejection

    def raw(self) -> np.ndarray:
        """Every entry's raw embedding, one row per ref (float32)."""
        if not self.vectors:
            return np.zeros((0, 0), np.float32)
        return np.concatenate([np.asarray(v, dtype=np.float32) for v in self.vectors])

    def __len__(self) -> int:
        return len(self.refs) + len(self.deletes) + len(self.rejections)


@dataclass(frozen=True)
class WriteResult:
    """What a write did. `retries`: compare-and-swap attempts lost (segments) or writes repaired after
    another writer overwrote them with an older version (S3 Vectors); `skipped`: changes older than
    (or identical to) what the index holds, not written; `refused`: entries the backend itself could
    not store (recorded as rejections, e.g. a key too long for S3 Vectors)."""

    indexed: int
    deleted: int
    rejected: int
    retries: int = 0
    skipped: int = 0
    segment: str | None = None  # the segment written (segment backend)
    manifest: Manifest | None = None  # the manifest that lists it (segment backend)
    refused: tuple[Rejection, ...] = ()


@runtime_checkable
class IndexBackend(Protocol):
    """Where the index lives. Every method is safe to call from many processes at once."""

    name: str  # "segments" or "s3vectors"

    def ensure(self, spec: ModelSpec, *, bits: int = DEFAULT_BITS) -> None:
        """Ready for writes of this model's embeddings (creates a segment index's manifest); checks the model."""
        ...

    def write(self, batch: Batch) -> WriteResult:
        """Apply a batch: adds (newer than what is held), deletes, rejections."""
        ...

    def search(self, embeddings: np.ndarray, options: SearchOptions) -> list[list[Hit]]:
        """Top-k hits for each raw embedding, best first, scores on the cosine scale (higher is closer)."""
        ...

    def search_key(self, key: str, bucket: str | None, options: SearchOptions) -> list[Hit]:
        """ "More like this": search with the stored vector of an indexed object (KeyNotIndexed if none)."""
        ...

    def search_text(
        self,
        query: TextQuery,
        options: SearchOptions,
        *,
        image: np.ndarray | None = None,
        key: str | None = None,
        bucket: str | None = None,
    ) -> list[Hit]:
        """Images for some words (`TextSearch.query`), alone or "like this image (a raw embedding) or this
        indexed key, but <words>" (KeyNotIndexed for an unknown key)."""
        ...

    def count(self) -> int | None:
        """Live entries, or None when the backend cannot count them cheaply (S3 Vectors)."""
        ...

    def thumbnail_store(self) -> Store | None:
        """Where thumbnails are kept beside the index (imgsearch.thumbnails), or None: not kept."""
        ...

    def health(self) -> dict[str, Any]:
        """The index facts GET /health reports (status, count, entries, segments, rejected, encoder, ...)."""
        ...


class SegmentBackend:
    """The segment index (ImageIndex + BatchWriter + Searcher) behind the IndexBackend interface."""

    name = "segments"

    def __init__(
        self, index: ImageIndex, *, searcher: Searcher | None = None, refresh_seconds: float = 5.0
    ) -> None:
        self.index = index
        self.searcher = searcher or Searcher(index, refresh_seconds=refresh_seconds)

    def ensure(self, spec: ModelSpec, *, bits: int = DEFAULT_BITS) -> None:
        self.index.ensure(spec, bits=bits)

    def write(self, batch: Batch) -> WriteResult:
        writer = BatchWriter(self.index)
        if batch.refs:
            writer.add(batch.refs, batch.raw(), concepts=batch.concepts())
        for ref in batch.deletes:
            writer.delete(ref)
        writer.rejections.extend(batch.rejections)
        written = writer.commit()
        return WriteResult(
            indexed=written.indexed,
            deleted=written.deleted,
            rejected=written.rejected,
            retries=written.retries,
            segment=written.segment.name if written.segment else None,
            manifest=written.manifest,
        )

    def search(self, embeddings: np.ndarray, options: SearchOptions) -> list[list[Hit]]:
        return self.searcher.search(embeddings, **options.search_kwargs())

    def search_key(self, key: str, bucket: str | None, options: SearchOptions) -> list[Hit]:
        return self.searcher.search_key(key, bucket=bucket, **options.search_kwargs())

    def search_text(
        self,
        query: TextQuery,
        options: SearchOptions,
        *,
        image: np.ndarray | None = None,
        key: str | None = None,
        bucket: str | None = None,
    ) -> list[Hit]:
        return self.searcher.search_text(query, image=image, key=key, bucket=bucket, **options.search_kwargs())

    def thumbnail_store(self) -> Store:
        return self.index.store

    def count(self) -> int:
        self.searcher.refresh()
        return self.searcher.count

    def health(self) -> dict[str, Any]:
        try:
            self.searcher.refresh()
        except IndexNotFound:
            return {
                "status": "empty",
                "backend": self.name,
                "count": 0,
                "entries": 0,
                "segments": 0,
                "rejected": 0,
                "encoder": "",
                "index_version": 0,
            }
        manifest = self.searcher.manifest
        if manifest is None:  # refresh() either loads a manifest or raises IndexNotFound
            raise IndexNotFound("no manifest loaded")
        return {
            "status": "ok",
            "backend": self.name,
            "count": self.searcher.count,
            "entries": manifest.count,
            "segments": len(manifest.segments),
            "rejected": manifest.rejected,
            "encoder": manifest.encoder,
            "index_version": manifest.generation,
        }


def open_backend(
    location: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    bucket: str | None = None,
    refresh_seconds: float = 5.0,
) -> IndexBackend:
    """The backend at a location: `s3vectors://BUCKET/INDEX` or an S3 Vectors index ARN, else a segment
    index (a directory or `s3://bucket/prefix`).

    `bucket` binds an S3 Vectors backend to one images bucket (its vector keys are object keys).
    """
    if is_s3vectors(location):
        from .s3vectors import S3VectorsBackend

        return S3VectorsBackend.open(location, endpoint_url=endpoint_url, region=region, bucket=bucket)
    return SegmentBackend(
        ImageIndex.open(location, endpoint_url=endpoint_url), refresh_seconds=refresh_seconds
    )


def is_s3vectors(location: str) -> bool:
    """True for `s3vectors://BUCKET/INDEX` and for an S3 Vectors index ARN."""
    return location.startswith(S3VECTORS_SCHEME) or (
        location.startswith("arn:") and ":s3vectors:" in location and "/index/" in location
    )


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise BadParameter(f"index backend {name!r} is not one of {', '.join(BACKENDS)}")
    return name
