"""Immutable segments: key table, float vectors, binary codes, tombstones and optional HNSW graphs.

A segment is two objects: `segments/<name>/query.npz` (all the query path reads) and
`segments/<name>/raw.npy` (the raw embeddings, read only to re-encode or re-fit).

A graph segment of this version keeps its float vectors only inside its HNSW graph, as int8 after a
random rotation (stored beside it) and a per-vector scale: the rotation spreads each vector's energy
over every dimension, so 8 bits lose little (docs/BENCHMARKS.md, scale); its cosines rank and score
the hits. Segments with a separate float16 matrix (earlier versions, and
every segment too small for a graph) are read as before.

A segment may also keep each image's top concepts (ImageNet classes, `concepts.TopConcepts`): members
`concept_ids` (n × T uint16) and `concept_scores` (n × T uint8, probability × 255). Segments written
without them (earlier ones, or by a model without class scores) have neither member and no tags; in a
segment that has them, a row whose scores are all zero has none (a merge of segments with and without).
"""

from __future__ import annotations

import calendar
import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import imgsearch._onnx_first  # noqa: F401  # isort: skip  # onnxruntime before usearch (it segfaults otherwise)
from usearch.index import Index
from usearch.index import search as exact_search

from . import graphrows, layout, settings
from .concepts import TopConcepts
from .encode import Encoder
from .keytable import SEQUENCER_WIDTH, KeyTable, normalise_sequencer, object_id
from .npzmap import MappedNpz, reader

__all__ = ["SEQUENCER_WIDTH", "KeyTable", "normalise_sequencer", "object_id"]  # re-exported: older imports

FORMAT = 2  # of query.npz: 1 had JSON key tables (still read), 2 has columnar ones (keytable.py)

HNSW_MIN = settings.HNSW_MIN.default  # segments at least this large get HNSW graphs (see docs/BENCHMARKS.md)
CONNECTIVITY = 16
EXPANSION_ADD = 40  # 64 built 800k rows in 470 s on 2 cores; see docs/BENCHMARKS.md (scale)
FLOAT_DTYPES = ("i8", "f16")  # of a float graph: i8 (rotated; no separate floats) or f16 (with them)
GRAPH_DTYPE = "i8"  # 405 B a row in the graph instead of 512 + 660 (docs/BENCHMARKS.md, scale)
ENCODE_CHUNK = 65_536  # rows encoded (or added to a graph) at once: bounds the float32 copies


@dataclass(frozen=True, kw_only=True)
class ObjectRef:
    """One version of one stored object, as an S3 event (or a file scan) describes it."""

    bucket: str
    key: str
    etag: str = ""
    size: int = 0
    sequencer: str = "0"
    time: float = field(default_factory=time.time)

    @property
    def id(self) -> int:
        return object_id(self.bucket, self.key)

    @property
    def order(self) -> str:
        return normalise_sequencer(self.sequencer)


@dataclass(frozen=True, kw_only=True)
class Rejection:
    """An object that could not be indexed, and why (kept so operators can see and fix it)."""

    bucket: str
    key: str
    code: str
    reason: str
    etag: str = ""
    time: float = field(default_factory=time.time)


@dataclass(eq=False)
class Segment:
    """An immutable batch of entries and tombstones, all encoded by one encoder version."""

    name: str
    encoder: str
    table: KeyTable  # one row per entry
    floats: np.ndarray | None  # (n, dims) float16, L2-normalised; None when they live in the graph
    codes: np.ndarray  # (n, bits/8) uint8
    dead: KeyTable = field(default_factory=KeyTable.empty)  # tombstones: deleted or overwritten objects
    rejections: list[Rejection] = field(default_factory=list)
    float_index: Index | None = None
    code_index: Index | None = None
    rotation: np.ndarray | None = None  # (dims, dims) float32: how an int8 graph's vectors were rotated
    raw: np.ndarray | None = None  # (n, dim_in) float16; not loaded on the query path
    mapped: MappedNpz | None = None  # the memory map the arrays live in (from_file), else None
    concepts: TopConcepts | None = None  # each row's top classes (all-zero scores: none); None: not stored
    float_slots: np.ndarray | None = None  # row → slot of the saved int8 graph (graphrows.py), if stored
    float_rows: np.ndarray | None = None  # that graph's vectors in slot order (a view of its saved bytes)

    @property
    def ids(self) -> np.ndarray:
        return self.table.ids

    @property
    def orders(self) -> np.ndarray:
        return self.table.orders

    @property
    def refs(self) -> list[ObjectRef]:
        """Every entry as an ObjectRef (one object per row: for small segments and tests)."""
        return table_refs(self.table)

    @property
    def tombstones(self) -> list[ObjectRef]:
        return table_refs(self.dead)

    def ref(self, row: int) -> ObjectRef:
        return table_ref(self.table, row)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def has_hnsw(self) -> bool:
        return self.float_index is not None

    # --- building -------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        *,
        refs: list[ObjectRef] | KeyTable,
        raw: np.ndarray,
        encoder: Encoder,
        tombstones: list[ObjectRef] | KeyTable | None = None,
        rejections: list[Rejection] | None = None,
        hnsw_min: int = HNSW_MIN,
        float_dtype: str = GRAPH_DTYPE,
        threads: int = 0,
        name: str | None = None,
        concepts: TopConcepts | None = None,
    ) -> Segment:
        """Encode raw embeddings and, for a large enough segment, build its HNSW graphs.

        `concepts` (one row per ref) are stored beside them; a segment without entries stores none.
        """
        table = refs if isinstance(refs, KeyTable) else KeyTable.from_refs(refs)
        dead = tombstones if isinstance(tombstones, KeyTable) else KeyTable.from_refs(tombstones or [])
        if len(table) != len(raw):
            raise ValueError(f"{len(table)} refs for {len(raw)} embeddings")
        if concepts is not None and (len(concepts) != len(table) or concepts.ids.shape != concepts.scores.shape):
            raise ValueError(f"{len(table)} refs for {len(concepts)} rows of concepts")
        raw = np.asarray(raw).reshape(len(table), encoder.dim_in)
        if raw.dtype != np.float16:
            raw = raw.astype(np.float16)  # what is stored; encoding reads float32 a chunk at a time
        floats = np.empty((len(raw), encoder.floats(raw[:1].astype(np.float32)).shape[1]), np.float16)
        codes = np.empty((len(raw), encoder.bits // 8), np.uint8)
        for start in range(0, len(raw), ENCODE_CHUNK):
            part = raw[start : start + ENCODE_CHUNK].astype(np.float32)
            floats[start : start + len(part)] = encoder.floats(part)
            codes[start : start + len(part)] = encoder.codes(part)
        segment = cls(
            name=name or new_name(),
            encoder=encoder.version,
            table=table,
            floats=floats,
            codes=codes,
            dead=dead,
            rejections=list(rejections or []),
            raw=raw,
            concepts=_stored_concepts(concepts) if concepts is not None and len(table) else None,
        )
        if len(table) >= hnsw_min:
            segment.build_hnsw(float_dtype=float_dtype, threads=threads)
        return segment

    def build_hnsw(self, *, float_dtype: str = GRAPH_DTYPE, threads: int = 0) -> None:
        """The float graph (HNSW, cosine). An i8 graph then holds the only copy of the float vectors."""
        if float_dtype not in FLOAT_DTYPES:
            raise ValueError(f"float dtype {float_dtype!r} is not one of {FLOAT_DTYPES}")
        floats = self._floats()
        rows = np.arange(len(self), dtype=np.uint64)
        rotation = random_rotation(floats.shape[1]) if float_dtype == "i8" else None
        graph = Index(
            ndim=floats.shape[1],
            metric="cos",
            dtype=float_dtype,
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
        )
        added = layout.order(floats)  # similar rows side by side in the graph's memory (layout.py)
        for start in range(0, len(rows), ENCODE_CHUNK):  # float32 copies a chunk at a time
            at = added[start : start + ENCODE_CHUNK]
            part = floats[at].astype(np.float32)
            graph.add(rows[at], part if rotation is None else quantise(part, rotation), threads=threads)
        # Only the float graph: hybrid ranks large segments on it (docs/BENCHMARKS.md, scale). Hamming
        # searches them with a popcount scan; segments of earlier versions may still carry a code graph.
        self.float_index = graph
        if rotation is not None:
            self.rotation, self.floats = rotation, None

    def _floats(self) -> np.ndarray:
        if self.floats is None:
            raise ValueError(f"segment {self.name} keeps its float vectors in its graph only")
        return self.floats

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """The float vectors (float32, unit length) of some rows: stored, or recovered from an i8 graph."""
        rotated = self._rotated(rows)
        return rotated if self.rotation is None else _unit(rotated @ self.rotation.T)

    def _rotated(self, rows: np.ndarray) -> np.ndarray:
        """Some rows' vectors as searched (float32, unit length): in the rotated space if there is one."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.floats is not None:
            return self.floats[rows].astype(np.float32)
        if self.float_rows is not None and self.float_slots is not None:  # a gather, no key lookups
            return _unit(self.float_rows[self.float_slots[rows]].astype(np.float32))
        assert self.float_index is not None and self.rotation is not None  # floats is None only then
        found = [v for v in self.float_index._compiled.get_many(rows.astype(np.uint64), self.float_index.dtype) if v is not None]
        if len(found) != len(rows):
            raise IndexError(f"segment {self.name}: a row asked for is not in its graph")
        stored = np.frombuffer(b"".join(v.data for v in found), dtype=np.int8).reshape(len(rows), self.rotation.shape[0])
        return _unit(stored.astype(np.float32))

    def subset(self, rows: np.ndarray) -> Segment:
        """A small segment of some rows (no keys, no graph), searched exhaustively: for a key-prefix filter.

        An int8 graph's rows stay in its rotated space (queries are rotated instead: far cheaper).
        """
        return Segment(
            name=self.name,
            encoder=self.encoder,
            table=KeyTable.empty(),  # rows are mapped back by the caller: no keys needed
            floats=self._rotated(rows).astype(np.float16),
            codes=self.codes[rows],
            rotation=self.rotation,
        )

    # --- searching (rows are positions in this segment) ------------------------------------------

    def search_codes(
        self, queries: np.ndarray, count: int, *, exact: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, Hamming distances) of the `count` nearest codes for each query (-1 pads).

        Exact search breaks ties by row, so a longer list extends a shorter one (pages never overlap).
        """
        if self.code_index is not None and not exact:
            return _matches(self.code_index.search(queries, count), count)
        codes, queries = _words(self.codes), _words(np.ascontiguousarray(queries, dtype=np.uint8))
        distances = np.array(
            [np.bitwise_count(codes ^ q).sum(axis=1, dtype=np.int32) for q in queries], dtype=np.int32
        ).reshape(len(queries), len(self))
        rows = _first(distances, min(count, len(self)))
        return rows, np.take_along_axis(distances, rows, axis=1).astype(np.float32)

    def search_floats(
        self, queries: np.ndarray, count: int, *, exact: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine similarities) of the `count` most similar float vectors (-1 pads)."""
        queries = np.asarray(queries, dtype=np.float32)
        if self.float_index is not None and (not exact or self.floats is None):
            if self.rotation is not None:  # an int8 graph: the query is rotated and quantised like its rows
                queries = quantise(queries, self.rotation)
            rows, distances = _matches(self.float_index.search(queries, count, exact=exact), count)
            if exact:  # every row compared (in int8 when the rows are): ties broken by row, as below
                order = np.lexsort((rows, distances), axis=1)
                rows, distances = np.take_along_axis(rows, order, axis=1), np.take_along_axis(distances, order, axis=1)
            return rows, 1.0 - distances
        count = min(count, len(self))
        if count == 0 or len(queries) == 0:
            return np.full((len(queries), count), -1, np.int64), np.zeros((len(queries), count), np.float32)
        # A subset of an int8 graph keeps its rows in the rotated space: the query is rotated to match
        # (self.cosine rotates by itself). USearch's exact kernel reads f16 rows directly (5x numpy).
        searched = queries if self.rotation is None else queries @ self.rotation
        floats = self._floats()
        if floats.dtype == np.float32:  # a pool of small segments (pooled.py): every row, one pass
            return _best(np.stack([_dot(floats, q) for q in searched.astype(np.float32)]), count)
        kind = np.float16 if floats.dtype == np.float16 else np.float32  # a native dtype (not "<f2")
        found = exact_search(floats, searched.astype(kind), count, "cos", exact=True)
        rows, _ = _matches(found, count)
        sims = np.full(rows.shape, -np.inf, dtype=np.float32)
        for q in range(len(rows)):
            valid = rows[q] >= 0
            sims[q, valid] = self.cosine(rows[q][valid], queries[q])
        order = np.lexsort((rows, -sims), axis=1)
        return np.take_along_axis(rows, order, axis=1), np.take_along_axis(sims, order, axis=1)

    def cosine(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Float cosines of some rows with one query (unit length), in whichever space the rows are kept."""
        query = query.astype(np.float32)
        return _dot(self._rotated(rows), query if self.rotation is None else query @ self.rotation)

    # --- storage ----------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        # floats first: the member right after the zip header starts 2-byte aligned, so a memory map
        # can hand it to USearch as it is (an unaligned float16 view is refused as another type).
        arrays: dict[str, Any] = {} if self.floats is None else {"floats": self.floats}
        arrays |= {
            "codes": self.codes,
            **self.table.to_arrays("t_"),
            **self.dead.to_arrays("d_"),
            "rejections": _json_array([asdict(r) for r in self.rejections]),
            "meta": _json_array({"name": self.name, "encoder": self.encoder, "format": FORMAT}),
        }
        if self.rotation is not None:
            arrays["rotation"] = self.rotation
        if self.concepts is not None:
            arrays["concept_ids"], arrays["concept_scores"] = self.concepts.ids, self.concepts.scores
        if self.float_index is not None:
            arrays["float_index"] = np.frombuffer(self.float_index.save() or b"", dtype=np.uint8)
            slots = graphrows.slots(self.float_index, arrays["float_index"].data) if self.rotation is not None else None
            if slots is not None:
                arrays["float_slots"] = slots
        if self.code_index is not None:
            arrays["code_index"] = np.frombuffer(self.code_index.save() or b"", dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, expansion_search: int | None = None) -> Segment:
        """A segment from the bytes of its query object (read whole): arrays and graphs are views into them."""
        try:
            view = MappedNpz(data)
        except ValueError:  # a compressed member (not written by this package): read it the slow way
            with np.load(io.BytesIO(data)) as npz:
                return cls.from_arrays(npz, expansion_search=expansion_search, graphs=lambda n: npz[n].tobytes())
        segment = cls.from_arrays(view, expansion_search=expansion_search, graphs=view.buffer, view=True)
        segment.mapped = view  # the arrays and graphs point into these bytes: keep them
        return segment

    @classmethod
    def from_file(cls, path: Path, *, expansion_search: int | None = None) -> Segment:
        """A segment memory-mapped from local disk (a directory index, EFS, /tmp): no copy at load, but for
        large graphs where huge pages are granted (read into them: npzmap.MappedNpz.resident)."""
        mapped = MappedNpz(path)
        # graphs into huge pages when the kernel gives them (hugepages.py): a search reads them at random
        segment = cls.from_arrays(mapped, expansion_search=expansion_search, graphs=mapped.resident, view=True)
        segment.mapped = mapped  # the arrays and graphs point into this map: keep it open
        return segment

    @classmethod
    def from_arrays(
        cls,
        npz: Any,
        *,
        expansion_search: int | None,
        graphs: Callable[[str], bytes | memoryview],
        view: bool = False,
    ) -> Segment:
        meta = _from_json_array(npz["meta"])
        if "table" in npz.files:  # format 1: JSON key tables, parsed row by row (compaction rewrites them)
            table = KeyTable.from_refs([ObjectRef(**r) for r in _from_json_array(npz["table"])])
            dead = KeyTable.from_refs([ObjectRef(**r) for r in _from_json_array(npz["tombstones"])])
        else:
            arrays = {n: npz[n] for n in npz.files if n.startswith(("t_", "d_"))}
            table, dead = KeyTable.from_arrays(arrays, "t_"), KeyTable.from_arrays(arrays, "d_")
        segment = cls(
            name=meta["name"],
            encoder=meta["encoder"],
            table=table,
            floats=npz["floats"] if "floats" in npz.files else None,
            codes=npz["codes"],
            dead=dead,
            rotation=npz["rotation"] if "rotation" in npz.files else None,
            rejections=[Rejection(**r) for r in _from_json_array(npz["rejections"])]
            if "rejections" in npz.files
            else [],
            concepts=TopConcepts(npz["concept_ids"], npz["concept_scores"])
            if "concept_ids" in npz.files and "concept_scores" in npz.files
            else None,
        )
        tuning: dict[str, Any] = {"expansion_search": expansion_search} if expansion_search else {}
        if "float_index" in npz.files:
            graph = graphs("float_index")
            slots = npz["float_slots"] if view and "float_slots" in npz.files else None
            width = None if segment.rotation is None else segment.rotation.shape[0]
            rows = None if slots is None or width is None else graphrows.matrix(graph, len(slots), width)
            # with the slot map, rows are read from the saved bytes and the key lookup table is not built
            segment.float_index = Index.restore(graph, view=view, enable_key_lookups=rows is None, **tuning)
            if rows is not None:
                segment.float_slots, segment.float_rows = slots, rows
        if "code_index" in npz.files:  # searched only, never read by key
            segment.code_index = Index.restore(graphs("code_index"), view=view, enable_key_lookups=False, **tuning)
        return segment

    @staticmethod
    def raw_from_bytes(data: bytes) -> np.ndarray:
        return np.load(reader(data))  # read in place: io.BytesIO would copy a bytearray or a mapping first


NAME_TIME = "%Y%m%dT%H%M%S"  # segment names start with their UTC creation time, so they sort by age


def _stored_concepts(concepts: TopConcepts) -> TopConcepts:
    """Concepts as stored: C-contiguous uint16 ids and uint8 scores, two-dimensional."""
    ids = np.ascontiguousarray(concepts.ids, dtype=np.uint16)
    scores = np.ascontiguousarray(concepts.scores, dtype=np.uint8)
    return TopConcepts(ids.reshape(len(ids), -1), scores.reshape(len(scores), -1))


def table_ref(table: KeyTable, row: int) -> ObjectRef:
    return ObjectRef(
        bucket=table.bucket(row),
        key=table.keys[row],
        etag=table.etags[row],
        size=int(table.sizes[row]),
        sequencer=table.orders[row].decode(),
        time=float(table.times[row]),
    )


def table_refs(table: KeyTable) -> list[ObjectRef]:
    return [table_ref(table, row) for row in range(len(table))]


def new_name() -> str:
    return f"{time.strftime(NAME_TIME, time.gmtime())}-{uuid.uuid4().hex[:12]}"


def named_at(name: str) -> float | None:
    """When a segment was named (the UTC time new_name put first), or None for another kind of name."""
    try:
        return float(calendar.timegm(time.strptime(name.split("-", 1)[0], NAME_TIME)))
    except ValueError:
        return None


def query_object(name: str) -> str:
    return f"segments/{name}/query.npz"


def raw_object(name: str) -> str:
    return f"segments/{name}/raw.npy"


def _dot(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """rows · query without BLAS: segments are searched on threads beside USearch's graph searches, and
    OpenBLAS's own threads spin for the cores they need (a pool's 6,500 × 256 product took 8.9 ms beside
    a graph search instead of 0.06 ms alone; einsum's single-threaded loop takes 0.25 ms either way)."""
    return np.einsum("ij,j->i", rows, query)


def _best(sims: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, similarities) of each query's `count` highest, best first, ties broken by row."""
    top = np.argpartition(-sims, count - 1, axis=1)[:, :count] if count < sims.shape[1] else np.argsort(-sims, axis=1)
    got = np.take_along_axis(sims, top, axis=1)
    order = np.lexsort((top, -got), axis=1)
    return np.take_along_axis(top, order, axis=1).astype(np.int64), np.take_along_axis(got, order, axis=1)


def random_rotation(dims: int, seed: int | None = None) -> np.ndarray:
    """A random orthogonal matrix (float32): cosines are unchanged, energy spreads over every dimension."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dims, dims)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def quantise(floats: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotated vectors as int8, each scaled so its largest component is ±127 (cosine ignores scale)."""
    rotated = np.asarray(floats, dtype=np.float32) @ rotation
    scale = 127.0 / np.maximum(np.abs(rotated).max(axis=1, keepdims=True), 1e-12)
    return np.clip(np.rint(rotated * scale), -127, 127).astype(np.int8)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _words(codes: np.ndarray) -> np.ndarray:
    """Packed codes as 64-bit words when their width allows (8x fewer popcounts), else as they are."""
    if codes.shape[1] % 8 == 0 and codes.flags.c_contiguous:
        return codes.view(np.uint64)
    return codes


def _first(values: np.ndarray, count: int) -> np.ndarray:
    """Per row of `values`, the columns of the `count` smallest values in order, ties broken by column."""
    if count >= values.shape[1]:
        return np.argsort(values, axis=1, kind="stable")
    out = np.empty((len(values), count), dtype=np.int64)
    for i, row in enumerate(values):
        bound = np.partition(row, count - 1)[count - 1]
        candidates = np.flatnonzero(row <= bound)  # every row tied at the bound, in column order
        out[i] = candidates[np.argsort(row[candidates], kind="stable")[:count]]
    return out


def _matches(found: object, count: int) -> tuple[np.ndarray, np.ndarray]:
    keys = np.asarray(found.keys)  # type: ignore[attr-defined]
    distances = np.asarray(found.distances, dtype=np.float32)  # type: ignore[attr-defined]
    # One query gives `Matches` (only valid hits), several give `BatchMatches` (padded, with counts).
    counts = np.asarray(getattr(found, "counts", [keys.size]))
    keys = keys.reshape(len(counts), -1)[:, :count].astype(np.int64)
    distances = distances.reshape(len(counts), -1)[:, :count]
    for row, valid in enumerate(counts):
        keys[row, valid:] = -1
    return keys, distances


def _json_array(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode(), dtype=np.uint8)


def _from_json_array(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode()) if array.size else []
