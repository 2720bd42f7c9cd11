"""An index on a store: append segments, delete, compact, fit the encoder. No lock on the hot path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import maintain
from . import manifest as manifests
from .concepts import TopConcepts
from .encode import DEFAULT_BITS, DEFAULT_DIMS, DEFAULT_WHITEN, MIN_FIT, Encoder, fit_itq, lsh
from .errors import BadParameter, IndexNotFound, ModelMismatch, ObjectNotFound
from .keytable import KeyTable
from .manifest import Manifest, SegmentInfo
from .modelspec import ModelSpec
from .resolve import live_masks, surviving_tombstones
from .segment import GRAPH_DTYPE, HNSW_MIN, ObjectRef, Rejection, Segment, named_at, query_object, raw_object
from .store import LocalStore, Store, open_store

FIT_SAMPLES = 100_000  # embeddings an encoder is fitted on at most (drawn evenly from the live entries)
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
class Appended:
    """A committed append: its segment, the manifest that lists it, and the CAS attempts it lost."""

    segment: SegmentInfo
    manifest: Manifest
    retries: int

    @property
    def name(self) -> str:
        return self.segment.name


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
        self.cas_retries = 0  # CAS attempts lost by this object's writes, all told

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
        concepts: TopConcepts | None = None,
    ) -> Appended:
        """Write one immutable segment for a batch and CAS-append it to the manifest.

        `rejections` records objects of the batch that could not be indexed, for `info` and /health;
        `concepts` (one row per ref) are the entries' top concepts, stored for tags and text search.
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
            concepts=concepts,
        )
        info = self._write_segment(segment, kind="delta")

        def add(previous: Manifest | None) -> Manifest:
            if previous is None:
                raise IndexNotFound(f"the manifest at {self.store.uri} disappeared")
            return previous.with_segments((*previous.segments, info))

        commit = self._commit(add, known=known)
        return Appended(info, commit.manifest, commit.retries)

    def delete(self, refs: list[ObjectRef]) -> Appended:
        """Hide objects at once (a tombstone segment); compaction removes their entries."""
        return self.append([], np.zeros((0, 0), np.float32), tombstones=refs)

    def _write_segment(self, segment: Segment, *, kind: str, rejected: int | None = None) -> SegmentInfo:
        body = segment.to_bytes()
        if len(segment):
            raw = segment.raw if segment.raw is not None else np.zeros((0, 0), np.float16)
            self.store.write_array(raw_object(segment.name), raw)
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

    def read_segment(self, name: str, *, expansion_search: int | None = None) -> Segment:
        """The query object of a segment: memory-mapped from a local store, else read whole."""
        path = self.store.local_path(query_object(name))
        if path is not None:
            return Segment.from_file(path, expansion_search=expansion_search)
        return Segment.from_bytes(self.store.read(query_object(name)), expansion_search=expansion_search)

    def load_segment(self, info: SegmentInfo, *, with_raw: bool = False) -> Segment:
        segment = self.read_segment(info.name)
        if with_raw:
            segment.raw = self.load_raw(info)
        return segment

    def load_raw(self, info: SegmentInfo) -> np.ndarray:
        """A segment's raw embeddings (float16): memory-mapped from a local store, else read whole."""
        if not info.count:
            return np.zeros((0, self.encoder(info.encoder).dim_in), np.float16)
        path = self.store.local_path(raw_object(info.name))
        if path is not None:
            return np.load(path, mmap_mode="r")
        return Segment.raw_from_bytes(self.store.read(raw_object(info.name)))

    # --- maintenance ------------------------------------------------------------------------------

    def compact(
        self,
        *,
        hnsw_min: int = HNSW_MIN,
        threads: int = 0,
        float_dtype: str = GRAPH_DTYPE,
        min_segments: int = 2,
        max_base: int = maintain.MAX_BASE,
    ) -> CompactResult:
        """Fold the listed segments into as few as possible (each at most `max_base` entries).

        Consecutive segments are merged while their entries fit in `max_base`; segments of an older
        encoder are re-encoded. Fewer than `min_segments` segments, all current, are left as they are.
        (The compaction Lambda uses `maintain.plan` instead: one size-tiered step at a time.)
        Segments appended meanwhile are kept; a run cut short leaves the manifest as it was.
        """
        started = time.time()
        manifest = self.manifest()
        stale = any(s.encoder != manifest.encoder for s in manifest.segments)
        results = []
        if len(manifest.segments) >= min_segments or stale:
            for group in maintain.groups(manifest.segments, max_base):
                alone = group[0]
                # one segment alone is rewritten only for a new encoder, or when asked to (min_segments <= 1)
                # and it is a delta (a batch may hold superseded versions); a base is never rewritten alone
                if len(group) >= 2 or alone.encoder != manifest.encoder or (min_segments <= 1 and alone.kind == "delta"):
                    results.append(
                        self.merge(
                            [s.name for s in group], hnsw_min=hnsw_min, threads=threads, float_dtype=float_dtype
                        )
                    )
        orphans = self.collect_orphans().segments
        encoder = self.manifest().encoder
        if not results:
            return CompactResult(len(manifest.segments), manifest.count, 0, 0, None, encoder, 0.0, orphans)
        return CompactResult(
            before=sum(r.before for r in results),
            entries=sum(r.entries for r in results),
            dropped=sum(r.dropped for r in results),
            tombstones=sum(r.tombstones for r in results),
            base=results[-1].base,
            encoder=encoder,
            seconds=time.time() - started,
            orphans=orphans,
        )

    def merge(
        self,
        names: Sequence[str],
        *,
        hnsw_min: int = HNSW_MIN,
        threads: int = 0,
        float_dtype: str = GRAPH_DTYPE,
    ) -> CompactResult:
        """Merge the named segments into one, encoded by the manifest's encoder, and CAS-swap it in.

        Entries superseded or deleted within these segments are dropped; tombstones that may still hide
        entries elsewhere are kept. The merged segment takes the place of the first of them. Rows are
        ordered by object id.
        """
        started = time.time()
        manifest = self.manifest()
        wanted = set(names)
        folded = [s for s in manifest.segments if s.name in wanted]
        if len(folded) != len(wanted):
            raise manifests.ConflictError("some of these segments are no longer listed; nothing changed")
        target = self.encoder(manifest.encoder)
        refs, raw, segments, masks = self.sorted_live_raw(folded)
        concepts = sorted_live_concepts(segments, masks)
        tombstones = surviving_tombstones(segments, masks)
        merged = Segment.build(
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
            concepts=concepts,
        )
        rejected = sum(s.rejected for s in folded)
        info = (
            self._write_segment(merged, kind="base", rejected=rejected)
            if (len(refs) or len(tombstones) or rejected)
            else None
        )

        def swap(previous: Manifest | None) -> Manifest:
            if previous is None:
                raise IndexNotFound(f"the manifest at {self.store.uri} disappeared")
            if not wanted <= {s.name for s in previous.segments}:
                raise manifests.ConflictError("another compaction replaced these segments first; nothing changed")
            kept: list[SegmentInfo] = []
            for s in previous.segments:
                if s.name not in wanted:
                    kept.append(s)
                elif info is not None and info not in kept:
                    kept.append(info)  # where the first folded segment was
            if previous.encoder != target.version:
                raise manifests.ConflictError("the encoder changed meanwhile (a fit); nothing changed")
            return previous.with_segments(tuple(kept))

        self._commit(swap)
        self.store.retire(
            [
                n
                for s in folded
                for n in ((query_object(s.name), raw_object(s.name)) if s.count else (query_object(s.name),))
            ]
        )
        total = sum(len(s) for s in segments)
        return CompactResult(
            before=len(folded),
            entries=len(refs),
            dropped=total - len(refs),
            tombstones=len(tombstones),
            base=info.name if info else None,
            encoder=target.version,
            seconds=time.time() - started,
        )

    def sorted_live_raw(
        self, infos: Sequence[SegmentInfo]
    ) -> tuple[KeyTable, np.ndarray, list[Segment], list[np.ndarray]]:
        """The live entries of these segments (resolved among them alone) sorted by object id, with their
        raw embeddings, the segments and their masks. Rows are copied straight into their place in the
        output, one segment's raw embeddings open at a time: the peak is the output plus one segment."""
        segments = [self.read_segment(info.name) for info in infos]
        masks = live_masks(segments)
        rows = [np.flatnonzero(m) for m in masks]
        refs = KeyTable.concat([s.table.take(r) for s, r in zip(segments, rows, strict=True)])
        by_id = np.argsort(refs.ids, kind="stable")
        place = np.empty(len(by_id), np.int64)
        place[by_id] = np.arange(len(by_id))  # where each concatenated live row goes
        dim = self.encoder(infos[0].encoder).dim_in if infos else 0
        raw = np.empty((len(by_id), dim), np.float16)
        start = 0
        for info, picked in zip(infos, rows, strict=True):
            if len(picked):
                raw[place[start : start + len(picked)]] = self.load_raw(info)[picked]
                start += len(picked)
        return refs.take(by_id), raw, segments, masks

    def sample_raw(self, count: int, *, seed: int = 0) -> np.ndarray:
        """Up to `count` raw embeddings drawn evenly from the live entries, one segment in memory at a time."""
        manifest = self.manifest()
        segments = [self.read_segment(info.name) for info in manifest.segments]
        masks = live_masks(segments)
        live = sum(int(m.sum()) for m in masks)
        rng = np.random.default_rng(seed)
        parts = []
        for info, mask in zip(manifest.segments, masks, strict=True):
            rows = np.flatnonzero(mask)
            if not len(rows):
                continue
            take = rows if live <= count else rng.choice(rows, max(1, round(count * len(rows) / live)), replace=False)
            parts.append(self.load_raw(info)[np.sort(take)])
        dim = int(manifest.model.get("dim", 0))  # type: ignore[call-overload]
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float16)

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
        clusters: int | None = None,
        hnsw_min: int = HNSW_MIN,
        threads: int = 0,
        min_count: int = MIN_FIT,
        reencode: bool = True,
        max_samples: int = FIT_SAMPLES,
    ) -> tuple[Encoder, CompactResult]:
        """Fit PCA + ITQ on (a sample of) the live embeddings and make it the index's encoder (`clusters`:
        the floats a discriminant projection of that many k-means pseudo-classes, encode.fit_itq; None:
        as many as the maintenance policy takes for the sample's size, maintain.fit_clusters; 0: PCA).

        With `reencode` every segment is then rewritten with it (no image is re-read); without, the
        segments keep their encoder until maintenance re-encodes them (queries handle both meanwhile).
        """
        sample = self.sample_raw(max_samples)
        if len(sample) < min_count:
            raise BadParameter(
                f"the index holds {len(sample)} images; fitting needs at least {min_count} "
                "(index more, or pass a lower minimum)"
            )
        if clusters is None:
            clusters = 0 if whiten else maintain.fit_clusters(len(sample))
        encoder = fit_itq(
            sample.astype(np.float32), bits=bits, dims=dims, whiten=whiten, clusters=clusters, max_samples=max_samples
        )
        del sample
        self._save_encoder(encoder)

        def switch(previous: Manifest | None) -> Manifest:
            if previous is None:
                raise IndexNotFound(f"the manifest at {self.store.uri} disappeared")
            return replace(previous, encoder=encoder.version)

        self._commit(switch)
        if not reencode:
            manifest = self.manifest()
            return encoder, CompactResult(len(manifest.segments), manifest.count, 0, 0, None, encoder.version, 0.0)
        return encoder, self.compact(hnsw_min=hnsw_min, threads=threads, min_segments=0)


def sorted_live_concepts(segments: Sequence[Segment], masks: Sequence[np.ndarray]) -> TopConcepts | None:
    """The top concepts of the live rows, in `sorted_live_raw`'s order (by object id, stable); rows of a
    segment that stored none get none (zero scores). None when no segment stored any."""
    width = max((s.concepts.ids.shape[1] for s in segments if s.concepts is not None), default=0)
    if not width:
        return None
    rows = [np.flatnonzero(m) for m in masks]
    parts = [
        TopConcepts.none(len(r), width) if s.concepts is None else s.concepts.take(r)
        for s, r in zip(segments, rows, strict=True)
    ]
    ids = np.concatenate([s.table.ids[r] for s, r in zip(segments, rows, strict=True)])
    return TopConcepts.concat(parts).take(np.argsort(ids, kind="stable"))


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
