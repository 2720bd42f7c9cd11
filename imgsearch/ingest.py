"""Indexing pipeline for files: scan → read → embed → append segments (→ compact / fit)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import maintain
from .embed import Embedder
from .files import printable, read_file
from .index import ImageIndex
from .search import Searcher
from .segment import ObjectRef, normalise_sequencer
from .writer import BatchWriter

LOCAL_BUCKET = "local"
CHUNK = 1024  # images per segment written by one run (progress is kept if the run stops)


@dataclass(frozen=True)
class SourceFile:
    path: Path
    key: str


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    segments: int = 0
    compacted: bool = False
    fitted: str | None = None


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


def file_ref(path: Path, key: str, data: bytes) -> ObjectRef:
    stat = path.stat()
    return ObjectRef(
        bucket=LOCAL_BUCKET,
        key=key,
        etag=hashlib.md5(data).hexdigest(),
        size=len(data),
        sequencer=file_sequencer(path),
        time=stat.st_mtime,
    )


def file_sequencer(path: Path) -> str:
    """A file's modification time stands in for S3's sequencer: a newer write wins."""
    return f"{path.stat().st_mtime_ns:x}"


def _changed(file: SourceFile, known: ObjectRef) -> bool:
    """Whether a file differs from its indexed version (one that cannot be examined is read to say why)."""
    try:
        return known.order != normalise_sequencer(file_sequencer(file.path))
    except OSError:
        return True


def index_files(
    index: ImageIndex,
    embedder: Embedder,
    files: list[SourceFile],
    *,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
    compact: bool = True,
) -> IndexReport:
    """Embed and append files in chunks; unreadable files are reported (printable path, reason) and skipped.

    Files are read by `files.read_file`: never more than the embedder's byte limit, never blocking.
    """
    report = IndexReport()
    index.ensure(embedder.spec)
    searcher = Searcher(index)
    searcher.refresh(force=True)
    known = searcher.live_refs()
    fresh = [f for f in files if f.key not in known or _changed(f, known[f.key])]
    report.unchanged = len(files) - len(fresh)
    if progress and report.unchanged:
        progress(report.unchanged)
    files = fresh
    for start in range(0, len(files), chunk):
        part = files[start : start + chunk]
        refs: list[ObjectRef | None] = [None] * len(part)

        def read(i: int, part: list[SourceFile] = part, refs: list[ObjectRef | None] = refs) -> bytes:
            data = read_file(part[i].path, limit=embedder.limits.max_bytes)
            refs[i] = file_ref(part[i].path, part[i].key, data)
            return data

        vectors, failures, done = embedder.embed_stream(read, len(part), progress=progress)
        report.skipped.extend((printable(part[f.index].path), f.reason) for f in failures)
        batch = BatchWriter(index)
        batch.add([refs[i] for i in done], vectors)  # type: ignore[misc]
        written = batch.commit()  # one segment per chunk (nothing for a chunk of failures only)
        report.indexed += written.indexed
        report.segments += written.segment is not None
    if compact and report.indexed:
        steps = maintain.run(index)  # the policy the compaction Lambda follows: fit, re-encode, merge
        report.compacted = any(s.action == "merge" for s in steps)
        report.fitted = next((s.encoder for s in steps if s.action == "fit"), None)
    return report
