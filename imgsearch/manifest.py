"""The manifest: the one mutable object of an index, changed only by compare-and-swap."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from .errors import ConflictError, ImgSearchError
from .store import Store

FORMAT = 2  # written; 2 lists segments whose key tables may be columnar (segment.FORMAT)
READABLE = (1, 2)  # format 1 indexes open as they are: their segments are read, and rewritten by compaction


@dataclass(frozen=True, kw_only=True)
class SegmentInfo:
    """What the manifest knows of one immutable segment."""

    name: str
    encoder: str
    count: int
    tombstones: int = 0
    rejected: int = 0  # objects that could not be indexed (not an image, corrupt, empty, too large)
    kind: str = "delta"  # "delta" (one ingest batch) or "base" (made by compaction)
    bytes: int = 0
    created: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Manifest:
    model: dict[str, object]
    encoder: str
    segments: tuple[SegmentInfo, ...] = ()
    generation: int = 0
    format: int = FORMAT
    updated: float = 0.0
    collected: str = ""  # segment names up to this one were checked for orphans (ImageIndex.collect_orphans)

    @property
    def count(self) -> int:
        """Entries written (before de-duplication and deletes; the searcher knows the live count)."""
        return sum(s.count for s in self.segments)

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.segments)

    def to_bytes(self) -> bytes:
        payload = asdict(self)
        payload["segments"] = [asdict(s) for s in self.segments]
        return json.dumps(payload, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        raw = json.loads(data)
        if raw.get("format") not in READABLE:
            raise ImgSearchError(
                f"index format {raw.get('format')} is not supported by this version (reads "
                f"{', '.join(map(str, READABLE))}): upgrade imgsearch or rebuild the index"
            )
        raw["segments"] = tuple(SegmentInfo(**s) for s in raw["segments"])
        raw["format"] = FORMAT  # what this version writes back
        return cls(**raw)

    def with_segments(self, segments: tuple[SegmentInfo, ...], **changes: object) -> Manifest:
        return replace(self, segments=segments, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Commit:
    manifest: Manifest
    etag: str
    retries: int


def load(store: Store) -> tuple[Manifest, str] | None:
    current = store.read_manifest()
    return (Manifest.from_bytes(current[0]), current[1]) if current else None


def update(
    store: Store,
    mutate: Callable[[Manifest | None], Manifest],
    *,
    attempts: int = 30,
    base_delay: float = 0.02,
    max_delay: float = 1.0,
    known: tuple[Manifest, str] | None = None,
) -> Commit:
    """Apply `mutate` to the latest manifest and CAS-write it, retrying with jittered back-off.

    `mutate` must be a pure function of the manifest it is given: it runs again after a lost race.
    `known` is a (manifest, etag) the caller has just read: the first attempt uses it instead of
    reading again (a stale one only costs a lost race).
    """
    for attempt in range(attempts):
        current = known if attempt == 0 and known is not None else load(store)
        previous, etag = current if current else (None, None)
        proposed = mutate(previous)
        proposed = replace(
            proposed, generation=(previous.generation + 1) if previous else 1, updated=time.time()
        )
        try:
            new_etag = store.write_manifest(proposed.to_bytes(), expected=etag)
            return Commit(proposed, new_etag, attempt)
        except ConflictError:
            time.sleep(random.uniform(0, min(max_delay, base_delay * 2**attempt)))
    raise ConflictError(
        f"could not update the manifest at {store.uri} after {attempts} attempts: too many concurrent "
        "writers; retry later"
    )
