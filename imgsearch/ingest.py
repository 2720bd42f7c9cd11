"""Indexing pipeline for folders and S3 prefixes: scan or list → read → embed → append segments (→ compact / fit).

Also the CLI's ways of keeping an index in step with its sources: `delete_keys` (tombstones for named
keys) and `prune` (tombstones for entries whose files or objects no longer exist). The sequencers
these writes carry, and why a real S3 event always wins over them, are explained in `known.py`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import maintain
from .bucket import Listed, S3Source, list_pages, read_object
from .embed import Embedder
from .errors import InvalidImage
from .files import printable, read_file
from .index import ImageIndex
from .known import LOCAL_BUCKET, Known
from .segment import ObjectRef, normalise_sequencer
from .writer import BatchWriter

__all__ = [
    "CHUNK",
    "LOCAL_BUCKET",
    "DeleteReport",
    "IndexReport",
    "SourceFile",
    "delete_keys",
    "index_files",
    "index_objects",
    "index_sources",
    "scan",
]

CHUNK = 1024  # images per segment written by one run (progress is kept if the run stops)
READ_AHEAD = 16  # S3 objects fetched ahead of the embedder (bounded memory, hidden GET latency)
CHANGED = "changed_since_listed"  # internal failure code: deleted or replaced between LIST and GET


@dataclass(frozen=True)
class SourceFile:
    path: Path
    key: str


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path or s3:// name, reason)
    segments: int = 0
    compacted: bool = False
    fitted: str | None = None
    listed: int = 0  # objects listed under the S3 sources
    rejected: int = 0  # S3 objects recorded as rejections (non-images, empty, too large)
    changed: int = 0  # S3 objects deleted or replaced between listing and reading (the next run takes them)
    pruned: int = 0  # entries whose file or object no longer exists, now tombstoned


def scan(sources: Iterable[Path]) -> list[SourceFile]:
    """Every non-hidden, non-folder entry under each source folder; key = path relative to the source.

    Entries are not opened here: FIFOs, devices, broken links and the like are rejected with their
    reason when read. A name that is not valid UTF-8 is keyed by `files.printable` (each undecodable
    byte as the text `\\xNN`), so it can be stored, printed and searched for.
    """
    found: list[SourceFile] = []
    for source in sources:
        source = Path(source)
        if source.is_file():
            found.append(SourceFile(source, printable(source.name)))
            continue
        if not source.is_dir():
            raise FileNotFoundError(f"{source} is neither a folder nor a file")
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    path = Path(root) / name
                    found.append(SourceFile(path, printable(path.relative_to(source).as_posix())))
    return found


def file_ref(path: Path, key: str, data: bytes, *, sequencer: str | None = None) -> ObjectRef:
    stat = path.stat()
    return ObjectRef(
        bucket=LOCAL_BUCKET,
        key=key,
        etag=hashlib.md5(data).hexdigest(),
        size=len(data),
        sequencer=sequencer or file_sequencer(path),
        time=stat.st_mtime,
    )


def file_sequencer(path: Path) -> str:
    """A file's modification time stands in for S3's sequencer: a newer write wins."""
    return f"{path.stat().st_mtime_ns:x}"


def _changed(file: SourceFile, known: ObjectRef) -> bool:
    """Whether a file differs from its indexed version (one that cannot be examined is read to say why).

    An entry written just above a tombstone (known.py) carries a sequencer above the file's mtime;
    it is the same version while size and mtime match.
    """
    try:
        stat = file.path.stat()
    except OSError:
        return True
    natural = normalise_sequencer(f"{stat.st_mtime_ns:x}")
    if known.order == natural:
        return False
    return not (known.order > natural and known.size == stat.st_size and known.time == stat.st_mtime)


def index_files(
    index: ImageIndex,
    embedder: Embedder,
    files: list[SourceFile],
    *,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
    compact: bool = True,
    prune: bool = False,
) -> IndexReport:
    """Embed and append files in chunks; unreadable files are reported (printable path, reason) and skipped.

    Files are read by `files.read_file`: never more than the embedder's byte limit, never blocking.
    With `prune`, entries of bucket "local" whose key is not among `files` are tombstoned.
    """
    return index_sources(
        index, embedder, files=files, chunk=chunk, progress=progress, compact=compact, prune=prune
    )


def index_objects(
    index: ImageIndex,
    embedder: Embedder,
    source: S3Source,
    *,
    s3: Any,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
    compact: bool = True,
    prune: bool = False,
) -> IndexReport:
    """Index the objects under an S3 prefix, recording the real bucket, key, ETag, size and LastModified.

    Listed a page at a time; an object already indexed (or rejected) at the same ETag is skipped. Each
    is read with GET If-Match: its listed ETag (at most the embedder's byte limit), so one deleted or
    replaced meanwhile is left to its S3 event or the next run. Entries carry the listing sequencer "0"
    (known.py): a real S3 event for the same key always wins. Non-images, empty and oversized objects
    are recorded as rejections, as the ingest Lambda does. With `prune`, live entries under the prefix
    whose object is no longer listed are tombstoned.
    """
    return index_sources(
        index, embedder, objects=[source], s3=s3, chunk=chunk, progress=progress, compact=compact, prune=prune
    )


def index_sources(
    index: ImageIndex,
    embedder: Embedder,
    *,
    files: Sequence[SourceFile] | None = None,
    objects: Sequence[S3Source] = (),
    s3: Any = None,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
    compact: bool = True,
    prune: bool = False,
) -> IndexReport:
    """Folders' files (None: no folders) and S3 prefixes into one index, then one compaction.

    See index_files and index_objects.
    Prune with folders treats the files given as the whole local content of the index: "local" entries
    carry no record of the folder they came from.
    """
    report = IndexReport()
    index.ensure(embedder.spec)
    known = Known.load(index)
    if files is not None:  # folders were given (perhaps empty now: prune still applies)
        _index_files(index, embedder, list(files), known, report, chunk=chunk, progress=progress, prune=prune)
    for source in _covering(objects):
        _index_objects(
            index, embedder, source, s3, known, report, chunk=chunk, progress=progress, prune=prune
        )
    if compact and (report.indexed or report.pruned):
        steps = maintain.run(index)  # the policy the compaction Lambda follows: fit, re-encode, merge
        report.compacted = any(s.action == "merge" for s in steps)
        report.fitted = next((s.encoder for s in steps if s.action == "fit"), None)
    return report


def _covering(objects: Sequence[S3Source]) -> list[S3Source]:
    """The sources without those another covers (s3://b/a/ covers s3://b/a/b/): each object once."""
    kept: list[S3Source] = []
    for source in sorted(set(objects), key=lambda s: (s.bucket, s.prefix)):
        if not any(k.bucket == source.bucket and source.prefix.startswith(k.prefix) for k in kept):
            kept.append(source)
    return kept


def _index_files(
    index: ImageIndex,
    embedder: Embedder,
    files: list[SourceFile],
    known: Known,
    report: IndexReport,
    *,
    chunk: int,
    progress: Callable[[int], None] | None,
    prune: bool,
) -> None:
    fresh = [f for f in files if (e := known.entry(LOCAL_BUCKET, f.key)) is None or _changed(f, e)]
    unchanged = len(files) - len(fresh)
    report.unchanged += unchanged
    if progress and unchanged:
        progress(unchanged)
    for start in range(0, len(fresh), chunk):
        part = fresh[start : start + chunk]
        refs: list[ObjectRef | None] = [None] * len(part)

        def read(i: int, part: list[SourceFile] = part, refs: list[ObjectRef | None] = refs) -> bytes:
            data = read_file(part[i].path, limit=embedder.limits.max_bytes)
            sequencer = known.file_sequencer(part[i].key, file_sequencer(part[i].path))
            refs[i] = file_ref(part[i].path, part[i].key, data, sequencer=sequencer)
            return data

        # the top concepts (tags) come from the same forward pass when the model has class scores
        embedded = embedder.embed_all(read, len(part), progress=progress, concepts=embedder.has_concepts)
        report.skipped.extend((printable(part[f.index].path), f.reason) for f in embedded.failures)
        batch = BatchWriter(index)
        batch.add([refs[i] for i in embedded.indices], embedded.vectors, concepts=embedded.concepts)  # type: ignore[misc]
        _commit(batch, report)  # one segment per chunk (nothing for a chunk of failures only)
    if prune:
        _prune(index, known.entries(LOCAL_BUCKET), {f.key for f in files}, report)


def _prune(index: ImageIndex, entries: Iterable[ObjectRef], present: set[str], report: IndexReport) -> None:
    """Tombstones for the entries whose file or object is gone (the entry's own sequencer: a tombstone
    wins the tie, so only that version is hidden)."""
    batch = BatchWriter(index)
    for entry in entries:
        if entry.key not in present:
            batch.delete(entry)
    _commit(batch, report)


def _index_objects(
    index: ImageIndex,
    embedder: Embedder,
    source: S3Source,
    s3: Any,
    known: Known,
    report: IndexReport,
    *,
    chunk: int,
    progress: Callable[[int], None] | None,
    prune: bool,
) -> None:
    limit = embedder.limits.max_bytes
    listed: set[str] = set()
    pending: list[Listed] = []
    for page in list_pages(s3, source):
        report.listed += len(page)
        for item in page:
            if prune:
                listed.add(item.key)
            if known.unchanged(source.bucket, item.key, item.etag):
                report.unchanged += 1
                if progress:
                    progress(1)
            else:
                pending.append(item)
        while len(pending) >= chunk:
            _index_chunk(index, embedder, source, s3, known, report, pending[:chunk], limit, progress)
            del pending[:chunk]
    if pending:
        _index_chunk(index, embedder, source, s3, known, report, pending, limit, progress)
    if prune:
        _prune(index, known.entries(source.bucket, source.prefix), listed, report)


def _index_chunk(
    index: ImageIndex,
    embedder: Embedder,
    source: S3Source,
    s3: Any,
    known: Known,
    report: IndexReport,
    items: list[Listed],
    limit: int,
    progress: Callable[[int], None] | None,
) -> None:
    batch = BatchWriter(index)
    refs = [
        item.ref(source.bucket, sequencer=known.listing_sequencer(source.bucket, item.key)) for item in items
    ]
    wanted: list[int] = []
    for i, ref in enumerate(refs):  # what the ingest Lambda rejects without reading
        if ref.size == 0:
            _reject(batch, report, source, ref, "empty", "empty file (0 bytes)")
        elif ref.size > limit:
            _reject(batch, report, source, ref, "too_large", f"object is {ref.size} bytes, over {limit}")
        else:
            wanted.append(i)
    if progress and len(wanted) < len(refs):
        progress(len(refs) - len(wanted))

    def fetch(j: int) -> bytes:
        ref = refs[wanted[j]]
        data = read_object(s3, ref.bucket, ref.key, etag=ref.etag, limit=limit)
        if data is None:
            raise InvalidImage("deleted or replaced since it was listed", code=CHANGED)
        return data

    with _ReadAhead(fetch, len(wanted)) as read:
        embedded = embedder.embed_all(read, len(wanted), progress=progress, concepts=embedder.has_concepts)
    for failure in embedded.failures:
        ref = refs[wanted[failure.index]]
        if failure.code == CHANGED:
            report.changed += 1
        else:
            _reject(batch, report, source, ref, failure.code, failure.reason)
    batch.add([refs[wanted[j]] for j in embedded.indices], embedded.vectors, concepts=embedded.concepts)
    _commit(batch, report)


def _reject(
    batch: BatchWriter, report: IndexReport, source: S3Source, ref: ObjectRef, code: str, reason: str
) -> None:
    batch.reject(ref, code=code, reason=reason)
    report.rejected += 1
    report.skipped.append((source.name(ref.key), reason))


def _commit(batch: BatchWriter, report: IndexReport) -> None:
    written = batch.commit()
    report.indexed += written.indexed
    report.pruned += written.deleted
    report.segments += written.segment is not None


class _ReadAhead:
    """read(i) for i = 0, 1, … in order, with the next few reads already running on a thread pool."""

    def __init__(self, fetch: Callable[[int], bytes], count: int, *, ahead: int = READ_AHEAD) -> None:
        self.fetch, self.count, self.ahead = fetch, count, ahead
        self.pool = ThreadPoolExecutor(max_workers=min(ahead, 8), thread_name_prefix="s3-read")
        self.futures: dict[int, Future[bytes]] = {}
        self.next = 0
        self.lock = threading.Lock()

    def __enter__(self) -> Callable[[int], bytes]:
        return self.read

    def __exit__(self, *exc: object) -> None:
        for future in self.futures.values():
            future.cancel()
        self.pool.shutdown(wait=True)

    def read(self, i: int) -> bytes:
        with self.lock:
            while self.next < min(self.count, i + self.ahead + 1):
                self.futures[self.next] = self.pool.submit(self.fetch, self.next)
                self.next += 1
            future = self.futures.pop(i, None)
        if future is None:
            return self.fetch(i)
        return future.result()


# --- keeping in step --------------------------------------------------------------------------------


@dataclass
class DeleteReport:
    deleted: list[ObjectRef] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # keys with no live entry
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # key → the buckets holding it


def delete_keys(index: ImageIndex, keys: Sequence[str], *, bucket: str | None = None) -> DeleteReport:
    """Tombstone the live entries of these keys (in `bucket`, or in whichever one bucket holds each).

    Each tombstone carries its entry's sequencer, so it hides that entry and nothing newer: an upload
    whose S3 event comes later stays live. Keys not in the index are reported, not written; a key
    live in several buckets without `bucket` is reported as ambiguous.
    """
    index.manifest()  # IndexNotFound, with its message, if there is no index
    known = Known.load(index)
    report = DeleteReport()
    buckets = [bucket] if bucket is not None else known.buckets()
    batch = BatchWriter(index)
    for key in dict.fromkeys(keys):
        found = [e for b in buckets if (e := known.entry(b, key)) is not None]
        if not found:
            report.missing.append(key)
        elif len(found) > 1:
            report.ambiguous[key] = [e.bucket for e in found]
        else:
            batch.delete(found[0])
            report.deleted.append(found[0])
    batch.commit()
    return report
