"""An index on a store: append segments, delete, compact, fit the encoder. No lock on the hot path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from . import manifest as manifests
from .encode import DEFAULT_BITS, DEFAULT_DIMS, DEFAULT_WHITEN, MIN_FIT, Encoder, fit_itq, lsh
from .errors import BadParameter, IndexNotFound, ModelMismatch, ObjectNotFound
from .keytable import KeyTable
from .manifest import Manifest, SegmentInfo
from .modelspec import ModelSpec
from .resolve import live_masks, surviving_tombstones
from .segment import HNSW_MIN, ObjectRef, Rejection, Segment, named_at, query_object, raw_object
from .store import LocalStore, Store, open_store

KEEP_REJECTIONS = 1000  # newest rejection records a compacted base keeps (the count is kept whole)
# A segment the manifest does not list this long after it was named is an orphan (a writer killed between
# writing it and committing it): far longer than any writer runs (a Lambda stops after 15 minutes).
ORPHAN_SECONDS = 3600.0


def model_info(spec: ModelSpec) -> dict[str, object]:
    return {
        "name": spec.name,
        "sha256": spec.sha256,
        "dim": spec.output_dim,
        "input_size": spec.input_size,
        "resize": spec.resize,
        "fingerprint": spec.fingerprint,
    }


def encoder_object(version: str) -> str:
    return f"encoders/{version}.npz"


@dataclass(frozen=True)
class CompactResult:
    before: int  # segments folded
    entries: int  # live entries in the new base
    dropped: int  # superseded or deleted entries removed
    tombstones: int
    base: str | None
    encoder: str
    seconds: float
    orphans: int = 0  # segments of killed writers retired on the way (see collect_orphans)


@dataclass(frozen=True)
class OrphanReport:
    segments: int  # orphan segments retired
    objects: int  # their objects
    temporaries: int  # files of writes cut short, removed (directory stores)


class ImageIndex:
    """One index (a directory or an S3 prefix). Safe to use from many processes at once.

    >>> index = ImageIndex.open("./my-index")             # doctest: +SKIP
    >>> index.append(refs, embeddings)                     # doctest: +SKIP
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._encoders: dict[str, Encoder] = {}
        self._lock = threading.Lock()
        self.cas_retries = 0
        self.last_commit: manifests.Commit | None = None  # the manifest this object last wrote

    @classmethod
    def open(cls, location: str, *, endpoint_url: str | None = None) -> ImageIndex:
        return cls(open_store(location, endpoint_url=endpoint_url))

    # --- manifest and encoders ------------------------------------------------------------------

    def manifest(self) -> Manifest:
        return self._read()[0]

    def _read(self) -> tuple[Manifest, str]:
        current = manifests.load(self.store)
        if current is None:
            raise IndexNotFound(
                f"no index at {self.store.uri}: build one with `imgsearch index --index {self.store.uri} FOLDER`"
            )
        return current

    def ensure(self, spec: ModelSpec, *, bits: int = DEFAULT_BITS) -> Manifest:
        """The manifest, created (with an LSH encoder) if there is none; checks the model matches."""
        current = manifests.load(self.store)
        if current is None:
            encoder = lsh(dim_in=spec.output_dim, bits=bits)
            self._save_encoder(encoder)

            def create(previous: Manifest | None) -> Manifest:
                return previous or Manifest(model=model_info(spec), encoder=encoder.version)

            manifest = self._commit(create).manifest
        else:
            manifest = current[0]
        check_model(manifest, spec)
        return manifest

    def encoder(self, version: str) -> Encoder:
        with self._lock:
            if version not in self._encoders:
                try:
                    self._encoders[version] = Encoder.from_bytes(self.store.read(encoder_object(version)))
                except ObjectNotFound:
                    raise IndexNotFound(f"encoder {version} is missing from {self.store.uri}") from None
            return self._encoders[version]

    def _save_encoder(self, encoder: Encoder) -> None:
        self.store.write(encoder_object(encoder.version), encoder.to_bytes())
        self._encoders[encoder.version] = encoder

    def _commit(
        self, mutate: Callable[[Manifest | None], Manifest], *, known: tuple[Manifest, str] | None = None
    ) -> manifests.Commit:
        commit = manifests.update(self.store, mutate, known=known)
        self.cas_retries += commit.retries
        self.last_commit = commit
        return commit

    # --- writes -----------------------------------------------------------------------------------

    def append(
        self,
        refs: list[ObjectRef],
        raw: np.ndarray,
        *,
        tombstones: list[ObjectRef] | None = None,
        rejections: list[Rejection] | None = None,
        encoder_version: str | None = None,
    ) -> SegmentInfo:
        """Write one immutable segment for a batch and CAS-append it to the manifest.

        `rejections` records objects of the batch that could not be indexed, for `info` and /health.
        """
        tombstones = list(tombstones or [])
        if not refs and not tombstones and not rejections:
            raise BadParameter("nothing to append: no entries, tombstones or rejections")
        known = self._read()  # one read: the encoder to use, and the first CAS attempt's base
        encoder = self.encoder(encoder_version or known[0].encoder)
        raw = np.asarray(raw, dtype=np.float32).reshape(len(refs), encoder.dim_in)
        segment = Segment.build(
            refs=refs,
            raw=raw,
            encoder=encoder,
            tombstones=tombstones,
            rejections=rejections,
            hnsw_min=1 << 62,
        )
        info = self._write_segment(segment, kind="delta")

        def add(previous: Manifest | None) -> Manifest:
            if previous is None:
                raise IndexNotFound(f"the manifest at {self.store.uri} disappeared")
            return previous.with_segments((*previous.segments, info))

        self._commit(add, known=known)
        return info

    def delete(self, refs: list[ObjectRef]) -> SegmentInfo:
        """Hide objects at once (a tombstone segment); compaction removes their entries."""
        return self.append([], np.zeros((0, 0), np.float32), tombstones=refs)

    def _write_segment(self, segment: Segment, *, kind: str, rejected: int | None = None) -> SegmentInfo:
        body = segment.to_bytes()
        if len(segment):
            self.store.write(raw_object(segment.name), segment.raw_bytes())
        self.store.write(query_object(segment.name), body)
        return SegmentInfo(
            name=segment.name,
            encoder=segment.encoder,
            count=len(segment),
            tombstones=len(segment.dead),
            rejected=rejected if rejected is not None else len(segment.rejections),
            kind=kind,
            bytes=len(body),
            created=time.time(),
        )

    # --- reads of whole segments (compaction, fitting) --------------------------------------------

    def load_segment(self, info: SegmentInfo, *, with_raw: bool = False) -> Segment:
        segment = Segment.from_bytes(self.store.read(query_object(info.name)))
        if with_raw:
            segment.raw = (
                Segment.raw_from_bytes(self.store.read(raw_object(info.name)))
                if info.count
                else np.zeros((0, self.encoder(info.encoder).dim_in), np.float16)
            )
        return segment

    def live_raw(
        self, manifest: Manifest | None = None
    ) -> tuple[KeyTable, np.ndarray, list[Segment], list[np.ndarray]]:
        """All live entries with their raw embeddings, the segments they came from and their live masks."""
        manifest = manifest or self.manifest()
        segments = [self.load_segment(info, with_raw=True) for info in manifest.segments]
        masks = live_masks(segments)
        refs = KeyTable.concat([s.table.take(np.flatnonzero(m)) for s, m in zip(segments, masks, strict=True)])
        dim = int(manifest.model.get("dim", 0)) or (segments[0].raw.shape[1] if segments else 0)  # type: ignore[union-attr, call-overload]
        parts = [s.raw[m] for s, m in zip(segments, masks, strict=True) if m.any()]  # type: ignore[index]
        raw = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, dim), np.float32)
        return refs, raw, segments, masks

    # --- maintenance ------------------------------------------------------------------------------

    def compact(
        self,
        *,
        encoder: Encoder | None = None,
        hnsw_min: int = HNSW_MIN,
        threads: int = 0,
        float_dtype: str = "f16",
        min_segments: int = 2,
        refit: Callable[[np.ndarray], Encoder] | None = None,
    ) -> CompactResult:
        """Fold every listed segment and tombstone into one base segment and CAS-swap the manifest.

        Segments appended while this runs are kept. If it is cut short, the manifest is unchanged.
        `refit`, given the live raw embeddings, returns a new encoder for the base (see `fit`).
        """
        started = time.time()
        manifest = self.manifest()
        target = encoder or self.encoder(manifest.encoder)
        folded = manifest.segments
        needs_reencode = any(s.encoder != target.version for s in folded)
        if len(folded) < min_segments and not needs_reencode and encoder is None and refit is None:
            orphans = self.collect_orphans().segments
            return CompactResult(len(folded), manifest.count, 0, 0, None, target.version, 0.0, orphans)
        refs, raw, segments, masks = self.live_raw(manifest)
        if refit is not None:
            encoder = target = refit(raw)
        tombstones = surviving_tombstones(segments, masks)
        if encoder is not None:
            self._save_encoder(encoder)
        base = Segment.build(
            refs=refs,
            raw=raw,
            encoder=target,
            tombstones=tombstones,
            rejections=sorted((r for s in segments for r in s.rejections), key=lambda r: r.time)[
                -KEEP_REJECTIONS:
            ],
            hnsw_min=hnsw_min,
            float_dtype=float_dtype,
            threads=threads,
        )
        rejected = sum(s.rejected for s in folded)
        info = (
            self._write_segment(base, kind="base", rejected=rejected)
            if (len(refs) or len(tombstones) or rejected)
            else None
        )
        folded_names = {s.name for s in folded}

        def swap(previous: Manifest | None) -> Manifest:
            if previous is None:
                raise IndexNotFound(f"the manifest at {self.store.uri} disappeared")
            names = {s.name for s in previous.segments}
            if not folded_names <= names:
                raise manifests.ConflictError(
                    "another compaction replaced these segments first; nothing changed"
                )
            kept = tuple(s for s in previous.segments if s.name not in folded_names)
            return previous.with_segments(((info,) if info else ()) + kept, encoder=target.version)

        self._commit(swap)
        self.store.retire(
            [
                n
                for s in folded
                for n in ((query_object(s.name), raw_object(s.name)) if s.count else (query_object(s.name),))
            ]
        )
        total = sum(len(s) for s in segments)
        orphans = self.collect_orphans().segments
        return CompactResult(
            before=len(folded),
            entries=len(refs),
            dropped=total - len(refs),
            tombstones=len(tombstones),
            base=info.name if info else None,
            encoder=target.version,
            seconds=time.time() - started,
            orphans=orphans,
        )

    def collect_orphans(self, *, older_than: float = ORPHAN_SECONDS) -> OrphanReport:
        """Retire segments no manifest lists, named more than `older_than` seconds ago.

        A writer killed after writing its segment but before its compare-and-swap leaves one behind.
        Only names after the manifest's `collected` mark are listed, so a run costs what was written
        since the last one; the mark moves forward by compare-and-swap (a lost race changes nothing).
        """
        horizon = time.time() - older_than
        manifest, etag = self._read()
        objects: dict[str, list[str]] = {}
        mark = manifest.collected
        after = f"segments/{mark}/~" if mark else ""  # "~" sorts after every file name of that segment
        for name in self.store.names("segments/", start_after=after):
            segment = name.split("/")[1] if name.count("/") >= 2 else ""
            named = named_at(segment)
            if named is None:
                continue  # not a name this package makes: leave it alone
            if named >= horizon:
                break  # names sort by time: the rest are younger
            mark = max(mark, segment)
            objects.setdefault(segment, []).append(name)
        temporaries = 0
        if isinstance(self.store, LocalStore):
            temporaries = self.store.remove_temporaries(older_than=horizon)
        listed = {s.name for s in manifest.segments}
        if mark != manifest.collected:

            def advance(previous: Manifest | None) -> Manifest:
                if previous is None:
                    raise IndexNotFound(f"the manifest at {self.store.uri} disappeared")
                return replace(previous, collected=max(mark, previous.collected))

            listed = {s.name for s in self._commit(advance, known=(manifest, etag)).manifest.segments}
        orphans = [n for segment, names in objects.items() if segment not in listed for n in names]
        self.store.retire(orphans)
        return OrphanReport(
            segments=len({n.split("/")[1] for n in orphans}), objects=len(orphans), temporaries=temporaries
        )

    def fit(
        self,
        *,
        bits: int = DEFAULT_BITS,
        dims: int = DEFAULT_DIMS,
        whiten: float = DEFAULT_WHITEN,
        hnsw_min: int = HNSW_MIN,
        threads: int = 0,
        min_count: int = MIN_FIT,
    ) -> tuple[Encoder, CompactResult]:
        """Fit PCA + ITQ on the live embeddings, then re-encode everything (no image is re-read)."""

        def refit(raw: np.ndarray) -> Encoder:
            if len(raw) < min_count:
                raise BadParameter(
                    f"the index holds {len(raw)} images; fitting needs at least {min_count} "
                    "(index more, or pass a lower minimum)"
                )
            return fit_itq(raw, bits=bits, dims=dims, whiten=whiten)

        result = self.compact(refit=refit, hnsw_min=hnsw_min, threads=threads, min_segments=0)
        return self.encoder(result.encoder), result


def check_model(manifest: Manifest, spec: ModelSpec) -> None:
    """Vectors are comparable only from the same model file with the same preprocessing."""
    built = manifest.model
    if built.get("sha256") != spec.sha256 or built.get("fingerprint", spec.fingerprint) != spec.fingerprint:
        raise ModelMismatch(
            f"the index was built with model {built.get('name')} (sha256 {str(built.get('sha256'))[:12]}…, "
            f"input {built.get('input_size')} px, {built.get('resize')}) but {spec.name} "
            f"(sha256 {spec.sha256[:12]}…, input {spec.input_size} px, {spec.resize}) is loaded: point "
            "IMGSEARCH_MODEL_DIR at the index's model (or rebuild it with `imgsearch build-model "
            f"--input-size {built.get('input_size')}`), or build a new index"
        )
