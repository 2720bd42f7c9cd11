"""Indexing pipeline for files: scan → read → embed → append segments (→ compact / fit)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .embed import Embedder
from .encode import MIN_FIT
from .index import ImageIndex
from .search import Searcher
from .segment import ObjectRef, normalise_sequencer

LOCAL_BUCKET = "local"
CHUNK = 1024  # images per segment written by one run (progress is kept if the run stops)
COMPACT_AFTER = 8  # segments


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
    """Every regular, non-hidden file under each source folder; key = path relative to the source."""
    found: list[SourceFile] = []
    for source in sources:
        source = Path(source)
        if source.is_file():
            found.append(SourceFile(source, source.name))
            continue
        if not source.is_dir():
            raise FileNotFoundError(f"{source} is neither a folder nor a file")
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    path = Path(root) / name
                    found.append(SourceFile(path, path.relative_to(source).as_posix()))
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


def index_files(
    index: ImageIndex,
    embedder: Embedder,
    files: list[SourceFile],
    *,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
    compact: bool = True,
) -> IndexReport:
    """Embed and append files in chunks; unreadable files are reported and skipped."""
    report = IndexReport()
    index.ensure(embedder.spec)
    searcher = Searcher(index)
    searcher.refresh(force=True)
    known = searcher.live_refs()
    fresh = [
        f
        for f in files
        if f.key not in known or known[f.key].order != normalise_sequencer(file_sequencer(f.path))
    ]
    report.unchanged = len(files) - len(fresh)
    if progress and report.unchanged:
        progress(report.unchanged)
    files = fresh
    for start in range(0, len(files), chunk):
        part = files[start : start + chunk]
        refs: list[ObjectRef | None] = [None] * len(part)

        def read(i: int, part: list[SourceFile] = part, refs: list[ObjectRef | None] = refs) -> bytes:
            data = part[i].path.read_bytes()
            refs[i] = file_ref(part[i].path, part[i].key, data)
            return data

        vectors, failures, done = embedder.embed_stream(read, len(part), progress=progress)
        report.skipped.extend((str(part[f.index].path), f.reason) for f in failures)
        if done:
            index.append([refs[i] for i in done], vectors)  # type: ignore[misc]
            report.indexed += len(done)
            report.segments += 1
    if compact and report.indexed:
        manifest = index.manifest()
        live = report.indexed + len(known)
        encoder = index.encoder(manifest.encoder)
        if encoder.kind == "lsh" and live >= MIN_FIT:
            fitted, _ = index.fit(bits=encoder.bits)
            report.compacted, report.fitted = True, fitted.version
        elif len(manifest.segments) >= COMPACT_AFTER:
            index.compact()
            report.compacted = True
    return report
