"""Similarity and ranking: search every segment, merge, top-k. Segments are cached by name forever."""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from . import heap
from .concepts import (
    TEXT_WEIGHTS,
    ConceptHead,
    ConceptQuery,
    Vocabulary,
    concept_scores,
    fuse_scores,
    image_text_vector,
)
from .encode import Encoder, hamming, radius_bits
from .errors import BadParameter, KeyNotIndexed, ObjectNotFound
from .index import ImageIndex
from .live import Live, LiveSet
from .maintain import MAX_BASE
from .manifest import Manifest
from .options import DEFAULT_EXPAND, DUPLICATE_RADIUS, MAX_K, METRICS, SearchOptions
from .pooled import Pooled, pool, poolable
from .rerank import EXPAND_ALPHA, EXPAND_ROUNDS, RERANK_WIDTH, Group, diffused, expanded_order, moved_scores
from .segment import ObjectRef, Rejection, Segment, object_id, table_refs
from .tagging import TagNames, tag_name

if TYPE_CHECKING:
    from .text import TextQuery

__all__ = ["MAX_K", "METRICS", "Hit", "Searcher"]  # MAX_K and METRICS live in options.py

EXPANSION_SEARCH = 256  # USearch's default 64 loses recall on these vectors (docs/BENCHMARKS.md)
MIN_EXPANSION = 128  # … a smaller graph needs a smaller beam, down to this: see graph_expansion
OVERSAMPLE = 10  # hybrid: Hamming candidates per wanted result, re-ranked by cosine
MIN_CANDIDATES = 100
POOL_FRACTION = 1 / 200  # hybrid on an exhaustively searched segment: at least this share as candidates
FULL_RERANK = 4  # … and when the candidates are at least a quarter of its rows, every row ranked by cosine
GRAPH_FILTER_FRACTION = 0.05  # a prefix matching at least this share of a graph segment is post-filtered
HYBRID_GRAPHS = ("floats", "codes")  # what hybrid searches on a segment with an HNSW graph
PREFIX_CACHE = 8  # filter masks (prefix and/or tag) kept per segment (one byte per row each)
COLLAPSE_OVERSAMPLE = 3  # collapse=true ranks this many times the page's reach, then drops near-copies
MANIFEST_READS = 3  # a refresh re-reads the manifest when a segment it lists was retired meanwhile
TEXT_CANDIDATES = 3000  # words alone: images along the words' direction re-ranked by their concepts (TEXT-SEARCH.md)
SCAN_COST = 30  # an exhaustively scanned row costs about this many graph rows (a 6,500-row pool ≈ a 200k graph)
PREFIX_VIEWS = 2  # vectors of a selective filter's rows kept per segment (≤ 2 × 5% × 512 B ≈ 51 B a row)

T = TypeVar("T")
Filter = tuple[str | None, str | None]  # (key prefix, tag as normalised by tag_name): a row filter


@functools.cache
def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="segment-search")


def _side_by_side(jobs: Sequence[Callable[[], T]], costs: Sequence[float]) -> list[T]:
    """The jobs' results, in order, run in one lane per core: each job, largest first, goes to the lane
    with the least estimated cost so far; the largest job's lane runs on the calling thread, the others
    on the pool's workers. On 2 cores a 1M index's 800k-row graph runs alone on one while the 200k graph
    and the pool of small segments run one after the other on the other (no third thread competing)."""
    lanes: list[list[int]] = [[] for _ in range(min(len(jobs), os.cpu_count() or 2))]
    loads = [0.0] * len(lanes)
    for job in sorted(range(len(jobs)), key=lambda j: -costs[j]):
        lane = loads.index(min(loads))
        lanes[lane].append(job)
        loads[lane] += costs[job]
    results: list[T | None] = [None] * len(jobs)

    def run(lane: list[int]) -> None:
        for job in lane:
            results[job] = jobs[job]()

    waiting = [_threads().submit(run, lane) for lane in lanes[1:]]
    try:
        run(lanes[0])
    finally:
        futures.wait(waiting)  # no lane left running behind a failure
    for future in waiting:
        future.result()  # re-raises a lane's failure
    return results  # type: ignore[return-value]  # every lane has run


def graph_expansion(rows: int, top: int = EXPANSION_SEARCH) -> int:
    """The search beam of a graph of `rows`: `top` for a full base (maintain.MAX_BASE rows), scaled by
    √(rows / MAX_BASE) below it, at least MIN_EXPANSION. At 1M images (bases of 800k and 200k: beams 229
    and 128 instead of 256 and 256) recall@10 against exact search moves from 0.9885 to 0.9875 and the
    hybrid p50 from 2.46 to 2.05 ms (3.43 to 3.00 in a slower run), A/B in one process (scripts/expansion_ab.py)."""
    return int(min(top, max(MIN_EXPANSION, round(top * math.sqrt(rows / MAX_BASE)))))


def _encoding(
    index: ImageIndex, encode: Callable[[Encoder], tuple[np.ndarray, np.ndarray]]
) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """version → (floats, codes) of the queries under that encoder version, computed once per version."""
    done: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def encoded(version: str) -> tuple[np.ndarray, np.ndarray]:
        if version not in done:
            done[version] = encode(index.encoder(version))
        return done[version]

    return encoded


def _only(allowed: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows (and scores) whose row is allowed; the others become -1 (and -inf)."""
    valid = (rows >= 0) & allowed[np.maximum(rows, 0)]
    return np.where(valid, rows, -1), np.where(valid, scores, -np.inf)


@dataclass(frozen=True)
class Hit:
    """One result: the object, its score (higher is more similar), where it is stored, and its tags
    ((class name, probability) pairs of its stored top concepts, most probable first; empty if none)."""

    key: str
    score: float
    bucket: str
    etag: str
    size: int
    tags: tuple[tuple[str, float], ...] = ()


class Searcher:
    """Answers queries over an index; re-reads the manifest at most every `refresh_seconds`."""

    def __init__(
        self,
        index: ImageIndex,
        *,
        refresh_seconds: float = 5.0,
        expansion_search: int = EXPANSION_SEARCH,
        oversample: int = OVERSAMPLE,
        hybrid_graph: str = "floats",
        pooling: bool = True,
        model_dir: Path | None = None,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        """`vocabulary` names the stored concepts (tags); by default it is read, when first needed, from
        `model_dir` (default: the model folder), and tags are empty if that folder has none."""
        if hybrid_graph not in HYBRID_GRAPHS:
            raise BadParameter(f"hybrid_graph {hybrid_graph!r} is not one of {', '.join(HYBRID_GRAPHS)}")
        self.hybrid_graph = hybrid_graph
        self.index = index
        self.refresh_seconds = refresh_seconds
        self.expansion_search = expansion_search
        self.oversample = oversample
        self.pooling = pooling  # small exhaustive segments searched as one (pooled.py)
        self._pooled: dict[str, Pooled] = {}  # encoder version → the pool of its small segments
        self._loaded_bytes = 0  # bytes of the segments the last refresh read (heap.trim after a large one)
        self._cache: dict[str, Segment] = {}
        self.live = LiveSet()
        self._prefixes: dict[str, dict[Filter, np.ndarray]] = {}  # segment name → filter → row mask
        self._views: dict[str, dict[Filter, tuple[np.ndarray, Segment]]] = {}  # … → (rows, their vectors)
        self.model_dir = model_dir
        self.tagging = TagNames(model_dir=model_dir, vocabulary=vocabulary)
        self._heads: dict[str, tuple[ConceptHead, ConceptHead]] = {}  # encoder version → (head, projected)
        self._buckets: list[str] = []
        self._etag: str | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.manifest: Manifest | None = None
        self.segments_loaded = 0

    # --- state ------------------------------------------------------------------------------------

    def refresh(self, *, force: bool = False) -> bool:
        """Conditional GET of the manifest; loads only segments not seen before. True if it changed."""
        with self._lock:
            now = time.monotonic()
            if not force and self.manifest is not None and now - self._checked < self.refresh_seconds:
                return False
            self._checked = now
            fresh = self.index.store.read_manifest(if_none_match=self._etag)
            if fresh is None:
                if self.manifest is None:
                    self.manifest = self.index.manifest()  # raises IndexNotFound
                return False
            for attempt in range(MANIFEST_READS):
                data, etag = fresh
                manifest = Manifest.from_bytes(data)
                try:
                    segments = self._load(manifest)
                    break
                except ObjectNotFound:
                    # A compaction committed and retired a segment between our manifest read and its
                    # segments' (a local or EFS store moves retired files out at once): read it again.
                    again = self.index.store.read_manifest()
                    if attempt == MANIFEST_READS - 1 or again is None or again[1] == etag:
                        raise
                    fresh = again
            for name in set(self._cache) - {s.name for s in manifest.segments}:
                del self._cache[name]
                self._prefixes.pop(name, None)
                self._views.pop(name, None)
            known = self.live.names
            if known and [s.name for s in segments[: len(known)]] == known:
                for segment in segments[len(known) :]:  # appended: pay for what changed
                    self.live.append(segment)
            else:  # compacted, or the first load: resolve everything (vectorised)
                self.live.rebuild(segments)
            self._buckets = sorted({b for live in self.live.segments for b in live.segment.table.buckets})
            self.manifest, self._etag = manifest, etag
            if self._loaded_bytes >= heap.TRIM_AFTER_BYTES:  # the scratch of a large load back to the OS
                heap.trim()
            return True

    def _load(self, manifest: Manifest) -> list[Segment]:
        """The manifest's segments, each read once and then kept (ObjectNotFound if one is gone)."""
        segments = []
        self._loaded_bytes = 0
        for info in manifest.segments:
            if info.name not in self._cache:
                self._loaded_bytes += info.bytes
                self._cache[info.name] = self.index.read_segment(
                    info.name, expansion_search=graph_expansion(info.count, self.expansion_search)
                )
                self.segments_loaded += 1
            segments.append(self._cache[info.name])
        return segments

    def live_refs(self) -> dict[str, ObjectRef]:
        """The live entry of every indexed key (for a single-bucket index such as a local folder)."""
        return {
            ref.key: ref
            for live in self.live.segments
            for ref in table_refs(live.segment.table.take(np.flatnonzero(live.alive)))
        }

    def rejections(self) -> list[Rejection]:
        """Recorded rejections of the loaded segments, oldest first."""
        return sorted((r for live in self.live.segments for r in live.segment.rejections), key=lambda r: r.time)

    @property
    def count(self) -> int:
        return len(self.live)

    def memory_bytes(self) -> int:
        """Bytes the query path reads: vectors, codes, graphs (as stored: a mapped graph allocates
        nothing itself) and key tables (every column), plus the reader's own per-row state."""
        total = self.live.nbytes
        for live in self.live.segments:
            s = live.segment
            total += (0 if s.floats is None else s.floats.nbytes) + s.codes.nbytes + live.alive.nbytes
            total += s.table.nbytes + s.dead.nbytes + (0 if s.float_slots is None else s.float_slots.nbytes)
            for graph in (s.float_index, s.code_index):
                if graph is not None:
                    total += int(graph.serialized_length)
        return total

    # --- tags ---------------------------------------------------------------------------------------

    def vocabulary(self) -> Vocabulary | None:
        """The concepts' names (read once, when first needed), or None if the model folder has none."""
        return self.tagging.vocabulary()

    def tag_ids(self, tag: str) -> tuple[int, ...]:
        """The class ids a tag names (a few names, such as 'crane', name two classes)."""
        return self.tagging.ids(tag)

    def _tags(self, segment: Segment, row: int) -> tuple[tuple[str, float], ...]:
        if segment.concepts is None:
            return ()
        names = self.tagging.names()
        return segment.concepts.tags(row, names) if names else ()

    # --- queries ------------------------------------------------------------------------------------

    def search(
        self,
        embeddings: np.ndarray,
        *,
        k: int = 10,
        metric: str = "hybrid",
        min_score: float | None = None,
        prefix: str | None = None,
        offset: int = 0,
        exact: bool = False,
        tag: str | None = None,
        expand: int | None = None,
        collapse: bool = False,
    ) -> list[list[Hit]]:
        """Top-k hits for each raw embedding (rows of the model's output), best first."""
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        return self._search(
            _encoding(self.index, lambda encoder: (encoder.floats(queries), encoder.codes(queries))),
            len(queries),
            k=k,
            metric=metric,
            min_score=min_score,
            prefix=prefix,
            offset=offset,
            exact=exact,
            tag=tag,
            expand=expand,
            collapse=collapse,
        )

    def search_direction(
        self,
        directions: np.ndarray,
        *,
        k: int = 10,
        metric: str = "hybrid",
        min_score: float | None = None,
        prefix: str | None = None,
        offset: int = 0,
        exact: bool = False,
        tag: str | None = None,
        expand: int = 0,
        collapse: bool = False,
    ) -> list[list[Hit]]:
        """Top-k hits for directions in the raw embedding space (a text query's concept direction).

        Unlike an embedding, a direction is not a point: the encoder's mean is not subtracted from it,
        so it projects onto the same direction in the float space (and the codes' hyperplanes).
        """
        wanted = np.atleast_2d(np.asarray(directions, dtype=np.float32))

        def along(encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
            return encoder.direction(wanted), encoder.codes(wanted + encoder.mean)

        return self._search(
            _encoding(self.index, along),
            len(wanted),
            k=k,
            metric=metric,
            min_score=min_score,
            prefix=prefix,
            offset=offset,
            exact=exact,
            tag=tag,
            expand=expand,
            collapse=collapse,
        )

    def search_key(
        self,
        key: str,
        *,
        bucket: str | None = None,
        k: int = 10,
        metric: str = "hybrid",
        min_score: float | None = None,
        prefix: str | None = None,
        offset: int = 0,
        exact: bool = False,
        tag: str | None = None,
        expand: int | None = None,
        collapse: bool = False,
    ) -> list[Hit]:
        """ "More like this": search with the stored vectors of an indexed object."""
        self.refresh()
        pos, row = self._locate(key, bucket)
        segment = self.live.segments[pos].segment
        if {live.segment.encoder for live in self.live.segments} == {segment.encoder}:
            stored = (segment.vectors(np.array([row])), segment.codes[row : row + 1])
            return self._search(
                lambda _: stored,
                1,
                k=k,
                metric=metric,
                min_score=min_score,
                prefix=prefix,
                offset=offset,
                exact=exact,
                tag=tag,
                expand=expand,
                collapse=collapse,
            )[0]
        # Segments with other encoders: re-encode from the raw embedding (read once, then cached).
        if segment.raw is None:
            info = next(i for i in self.manifest.segments if i.name == segment.name)  # type: ignore[union-attr]
            segment.raw = self.index.load_raw(info)
        raw = segment.raw[row : row + 1].astype(np.float32)
        return self.search(
            raw, k=k, metric=metric, min_score=min_score, prefix=prefix, offset=offset, exact=exact, tag=tag,
            expand=expand,
            collapse=collapse,
        )[0]

    def search_text(
        self,
        query: TextQuery,
        *,
        image: np.ndarray | None = None,
        key: str | None = None,
        bucket: str | None = None,
        k: int = 10,
        metric: str = "hybrid",
        min_score: float | None = None,
        prefix: str | None = None,
        offset: int = 0,
        exact: bool = False,
        tag: str | None = None,
        expand: int | None = None,
        collapse: bool = False,
    ) -> list[Hit]:
        """Images for some words (`TextSearch.query`), alone or with an image (a raw embedding) or an
        indexed key: "like this, but <words>".

        Words alone: the `TEXT_CANDIDATES` nearest images along the query's direction (by `metric`, with
        the filters), re-ranked by `concepts.text_scores` (their stored top concepts and their concepts'
        logits recomputed from their vectors); scores are that fusion scaled to 0–1 over the candidates.
        With an image or a key: one vector, image + IMAGE_TEXT_WEIGHT × the words' direction in each
        encoder's float space (`concepts.image_text_vector`), searched like an image; cosine scores.
        `expand` applies to an image or a key with words, not to words alone; `collapse` to both.
        """
        SearchOptions(
            k=k, metric=metric, min_score=min_score, prefix=prefix, offset=offset, exact=exact, tag=tag, expand=expand,
            collapse=collapse,
        )
        if image is not None and key is not None:
            raise BadParameter("give an image or a key with the words, not both")
        expand = expand or 0  # words are expanded only when asked (DEFAULT_EXPAND was measured on images)
        options = {"k": k, "metric": metric, "prefix": prefix, "offset": offset, "exact": exact, "tag": tag}
        direction = np.asarray(query.direction, dtype=np.float32).reshape(1, -1)
        if image is not None or key is not None:
            encode = self._image_text(direction, image=image, key=key, bucket=bucket)
            return self._search(
                encode, 1, k=k, metric=metric, min_score=min_score, prefix=prefix, offset=offset, exact=exact,
                tag=tag, expand=expand, collapse=collapse,
            )[0]

        def along(encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
            return encoder.direction(direction), encoder.codes(direction + encoder.mean)

        encode = _encoding(self.index, along)
        if query.concepts is None or query.head is None:  # an image–text pair: its direction ranks
            return self._hits(*self._ranked(encode, 1, **options)[0], min_score=min_score)  # type: ignore[arg-type]
        candidates = {**options, "k": max(TEXT_CANDIDATES, offset + k), "offset": 0}
        _, positions, rows = self._ranked(encode, 1, **candidates)[0]  # type: ignore[arg-type]
        if not len(rows):
            return []
        scores = self._text_scores(query.concepts, query.head, positions, rows)
        order = np.argsort(-scores, kind="stable")
        if collapse:
            return self._hits(*self._collapsed(scores[order], positions[order], rows[order], offset=offset, k=k), min_score=min_score)
        order = order[offset : offset + k]
        return self._hits(scores[order], positions[order], rows[order], min_score=min_score)

    def _text_scores(
        self, concepts: ConceptQuery, head: ConceptHead, positions: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        """concepts.text_scores over candidates of several segments, each under its encoder, scaled to 0–1."""
        stored = np.zeros(len(rows), np.float32)
        logits = np.zeros(len(rows), np.float32)
        any_stored = False
        for pos in np.unique(positions).tolist():
            segment = self.live.segments[pos].segment
            at = np.flatnonzero(positions == pos)
            logits[at] = self._head(head, segment.encoder).scores(segment.vectors(rows[at]), concepts)
            if segment.concepts is not None:
                stored[at] = concept_scores(segment.concepts.take(rows[at]), concepts)
                any_stored = True
        parts, weights = ([stored, logits], list(TEXT_WEIGHTS)) if any_stored else ([logits], [TEXT_WEIGHTS[1]])
        return fuse_scores(parts, weights) / sum(weights)

    def _head(self, head: ConceptHead, version: str) -> ConceptHead:
        """The classifier head for an encoder version's float vectors (projected once per version)."""
        cached = self._heads.get(version)
        if cached is None or cached[0] is not head:
            encoder = self.index.encoder(version)
            cached = (head, head.projected(encoder.mean, encoder.back))
            self._heads[version] = cached
        return cached[1]

    def _image_text(
        self, direction: np.ndarray, *, image: np.ndarray | None, key: str | None, bucket: str | None
    ) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
        """version → (floats, codes) of image + IMAGE_TEXT_WEIGHT × direction under that encoder."""
        stored: tuple[str, np.ndarray] | None = None
        if key is not None:
            self.refresh()
            pos, row = self._locate(key, bucket)
            segment = self.live.segments[pos].segment
            stored = (segment.encoder, segment.vectors(np.array([row])))
            origin = self.index.encoder(segment.encoder).embedding_of(stored[1])
        else:
            origin = np.asarray(image, dtype=np.float32).reshape(1, -1)

        def encoded(encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
            floats = stored[1] if stored and stored[0] == encoder.version else encoder.floats(origin)
            combined = image_text_vector(floats[0], encoder.direction(direction)[0])[None, :]
            return combined, encoder.codes(encoder.embedding_of(combined))

        return _encoding(self.index, encoded)

    def ranked_stored(
        self,
        version: str,
        floats: np.ndarray,
        codes: np.ndarray,
        *,
        k: int,
        metric: str = "cosine",
        prefix: str | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per query, (scores, segment positions, rows) of the top k for stored vectors of an encoder version
        (re-encoded for segments of another version through `Encoder.embedding_of`): batch "more like this"."""
        source = self.index.encoder(version)

        def encode(encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
            if encoder.version == version:
                return floats, codes
            embedded = source.embedding_of(floats)
            return encoder.floats(embedded), encoder.codes(embedded)

        return self._ranked(
            _encoding(self.index, encode), len(floats), k=k, metric=metric, prefix=prefix, offset=0, exact=False, tag=None
        )

    def _search(
        self,
        encode: Callable[[str], tuple[np.ndarray, np.ndarray]],
        n: int,
        *,
        k: int,
        metric: str,
        min_score: float | None,
        prefix: str | None,
        offset: int,
        exact: bool,
        tag: str | None = None,
        expand: int | None = None,
        collapse: bool = False,
    ) -> list[list[Hit]]:
        """Hits of n encoded queries; `expand` None is DEFAULT_EXPAND."""
        SearchOptions(
            k=k, metric=metric, min_score=min_score, prefix=prefix, offset=offset, exact=exact, tag=tag,
            expand=expand, collapse=collapse,
        )
        expand = DEFAULT_EXPAND if expand is None else expand
        if not expand:
            if collapse:  # near-copies: rank more, keep the best of each, then page
                wide = self._ranked(
                    encode, n, k=(offset + k) * COLLAPSE_OVERSAMPLE, metric=metric, prefix=prefix, offset=0,
                    exact=exact, tag=tag,
                )
                ranked = [self._collapsed(*found, offset=offset, k=k) for found in wide]
            else:
                ranked = self._ranked(encode, n, k=k, metric=metric, prefix=prefix, offset=offset, exact=exact, tag=tag)
            return [self._hits(*found, min_score=min_score) for found in ranked]
        # α-query expansion: rank once, then order the first `depth` (RERANK_WIDTH hits a wanted one, set
        # by k alone) by the query moved toward its first `expand` hits; hits past them keep their order,
        # so pages of one k stay disjoint slices of one ranking. Scores stay the query's own.
        depth = min(k * RERANK_WIDTH, MAX_K)
        reach = (offset + k) * (COLLAPSE_OVERSAMPLE if collapse else 1)
        first = self._ranked(
            encode, n, k=max(reach, depth), metric=metric, prefix=prefix, offset=0, exact=exact, tag=tag
        )
        heads = self._reranked([(s[:depth], p[:depth], r[:depth]) for s, p, r in first], encode, expand, metric)
        ranked = [
            (np.concatenate([hs, s[depth:]]), np.concatenate([hp, p[depth:]]), np.concatenate([hr, r[depth:]]))
            for (hs, hp, hr), (s, p, r) in zip(heads, first, strict=True)
        ]
        if min_score is not None:  # before the page: a hit above it that the re-ranking moved down stays in reach
            kept = [np.round(np.clip(s, -1.0, 1.0), 6) >= min_score for s, _, _ in ranked]  # as _hits reports them
            ranked = [(s[keep], p[keep], r[keep]) for (s, p, r), keep in zip(ranked, kept, strict=True)]
        if collapse:
            ranked = [self._collapsed(*found, offset=offset, k=k) for found in ranked]
        else:
            ranked = [(s[offset : offset + k], p[offset : offset + k], r[offset : offset + k]) for s, p, r in ranked]
        return [self._hits(*found, min_score=min_score) for found in ranked]

    def _reranked(
        self,
        first: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        encode: Callable[[str], tuple[np.ndarray, np.ndarray]],
        expand: int,
        metric: str,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Each query's (scores, positions, rows), re-ordered: EXPAND_ROUNDS times by the query moved toward
        the first `expand` of the order so far (weighted by their scores in it), under `metric` (the codes'
        for hamming, the floats' cosine otherwise); then, for floats of one encoder, by diffusion over the
        candidates' own graph (rerank.diffused). Near-copies of the query (codes within DUPLICATE_RADIUS
        of its own) stay first, in their first order. The scores returned are still the first ones."""
        held = [self._candidates(positions, rows, metric) for _, positions, rows in first]
        one_space = metric != "hamming" and all(len({g.encoder for g in groups}) <= 1 for groups in held)
        orders: list[np.ndarray] = []
        if one_space:  # the common case: all in numpy on the gathered vectors (rerank.expanded_order)
            for q, ((scores, _, rows), groups) in enumerate(zip(first, held, strict=True)):
                if not groups:
                    orders.append(np.arange(0))
                    continue
                x = _gathered(groups, len(rows))
                order, moved = expanded_order(encode(groups[0].encoder)[0][q], x, scores, expand)
                orders.append(order[np.argsort(-diffused(x[order], moved[order]), kind="stable")])
        else:  # codes, or hits under several encoders: the query moves in each encoder's space
            again: list[np.ndarray] = [scores for scores, _, _ in first]
            orders = [np.arange(len(scores)) for scores in again]
            for _ in range(EXPAND_ROUNDS):
                moved_query = self._expanded(
                    encode,
                    [(a[o][:expand], p[o][:expand], r[o][:expand]) for a, o, (_, p, r) in zip(again, orders, first, strict=True)],
                )
                again = [moved_scores(groups, moved_query, q, metric, len(o)) for q, (groups, o) in enumerate(zip(held, orders, strict=True))]
                orders = [np.argsort(-a, kind="stable") for a in again]
        ranked = []
        for q, ((scores, positions, rows), order) in enumerate(zip(first, orders, strict=True)):
            copies = self._copies(positions, rows, encode, q)
            order = np.concatenate([np.flatnonzero(copies), order[~copies[order]]])
            ranked.append((scores[order], positions[order], rows[order]))
        return ranked

    def _candidates(self, positions: np.ndarray, rows: np.ndarray, metric: str) -> list[Group]:
        """One query's hits by segment, with what re-scoring them needs: codes (hamming) or float vectors."""
        groups = []
        for pos in np.unique(positions).tolist():
            segment = self.live.segments[pos].segment
            at = np.flatnonzero(positions == pos)
            stored = segment.codes[rows[at]] if metric == "hamming" else segment.vectors(rows[at])
            groups.append(Group(segment.encoder, at, stored))
        return groups

    def _copies(
        self, positions: np.ndarray, rows: np.ndarray, encode: Callable[[str], tuple[np.ndarray, np.ndarray]], q: int
    ) -> np.ndarray:
        """Which hits are near-copies of query q: codes within DUPLICATE_RADIUS of the query's own."""
        copies = np.zeros(len(rows), bool)
        for pos in np.unique(positions).tolist():
            segment = self.live.segments[pos].segment
            at = np.flatnonzero(positions == pos)
            radius = radius_bits(DUPLICATE_RADIUS, segment.codes.shape[1] * 8)
            copies[at] = hamming(segment.codes[rows[at]], encode(segment.encoder)[1][q]) <= radius
        return copies

    def _collapsed(
        self, scores: np.ndarray, positions: np.ndarray, rows: np.ndarray, *, offset: int, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ranking without near-copies of a better hit (codes of one encoder within DUPLICATE_RADIUS),
        then its page."""
        kept: list[int] = []
        held: dict[str, tuple[np.ndarray, int]] = {}  # encoder version → (kept codes, how many)
        for i, (pos, row) in enumerate(zip(positions.tolist(), rows.tolist(), strict=True)):
            segment = self.live.segments[pos].segment
            code = segment.codes[row]
            codes, count = held.get(segment.encoder, (np.empty((offset + k, len(code)), np.uint8), 0))
            # one vectorised comparison against every kept hit of this encoder (codes of others differ)
            if count and int(hamming(codes[:count], code).min()) <= radius_bits(DUPLICATE_RADIUS, len(code) * 8):
                continue
            codes[count] = code
            held[segment.encoder] = (codes, count + 1)
            kept.append(i)
            if len(kept) >= offset + k:
                break
        at = np.array(kept[offset : offset + k], dtype=np.int64)
        return scores[at], positions[at], rows[at]

    def _expanded(
        self,
        encode: Callable[[str], tuple[np.ndarray, np.ndarray]],
        first: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
        """version → (floats, codes) of each query moved toward its first hits: unit(q + Σ max(s, 0)^α y) over
        the hits y (stored float vectors) of that version's segments (EXPAND_ALPHA; docs/BENCHMARKS.md)."""
        hits = []
        for scores, positions, rows in first:
            by_version: dict[str, list[np.ndarray]] = {}
            for pos in np.unique(positions).tolist():
                segment = self.live.segments[pos].segment
                at = np.flatnonzero(positions == pos)
                weights = np.maximum(scores[at].astype(np.float32), 0.0) ** EXPAND_ALPHA
                by_version.setdefault(segment.encoder, []).append(weights @ segment.vectors(rows[at]))
            hits.append({version: np.sum(parts, axis=0) for version, parts in by_version.items()})

        def encoded(encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
            floats, _ = encode(encoder.version)
            moved = np.stack([f + h.get(encoder.version, 0.0) for f, h in zip(floats, hits, strict=True)])
            moved = (moved / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)).astype(np.float32)
            return moved, encoder.codes(encoder.embedding_of(moved))

        return _encoding(self.index, encoded)

    def _ranked(
        self,
        encode: Callable[[str], tuple[np.ndarray, np.ndarray]],
        n: int,
        *,
        k: int,
        metric: str,
        prefix: str | None,
        offset: int,
        exact: bool,
        tag: str | None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per query, (scores, positions, rows) of its hits `offset` to `offset + k`, best first."""
        if tag is not None:
            self.tag_ids(tag)  # an unknown tag is an error, not an empty page
        filtered: Filter | None = (prefix or None, tag_name(tag) if tag else None) if prefix or tag else None
        self.refresh()
        if n == 0:
            return []  # no query vector (every query image was unreadable): nothing to search
        want = k + offset
        # hybrid re-ranks a pool of Hamming candidates sized by k, not by the offset: pages of one k are
        # slices of one ranking (for the first ten pages at least) and never overlap.
        pool = max(k * self.oversample, MIN_CANDIDATES, want)
        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(n)]  # scores, pos, rows
        todo = [(pos, live) for pos, live in enumerate(self.live.segments) if live.dead < len(live.segment)]
        for version in {live.segment.encoder for _, live in todo}:
            encode(version)  # once per encoder version, before any thread asks for it

        Found = tuple[np.ndarray, np.ndarray, np.ndarray] | None  # positions, rows, scores (queries × hits)

        def one(item: tuple[int, Live]) -> Found:
            pos, live = item
            segment = live.segment
            floats, codes = encode(segment.encoder)
            allowed = live.alive
            if filtered:
                allowed = allowed & self._filter_mask(segment, filtered)
                if not allowed.any():
                    return None  # no row here matches the prefix and tag
            rows, scores = self._segment_search(
                segment, allowed, live.dead, floats, codes, want, pool, metric, exact, filtered
            )
            return np.full(rows.shape, pos), rows, scores

        def pooled(group: Pooled) -> Found:
            lives = [self.live.segments[pos] for pos, _ in group.members]
            floats, codes = encode(group.segment.encoder)
            allowed = np.concatenate([live.alive for live in lives])
            if filtered:
                allowed &= np.concatenate([self._filter_mask(s, filtered) for _, s in group.members])
                if not allowed.any():
                    return None
            # as many Hamming candidates in all as the members would each have taken (hybrid)
            members_pool = sum(max(pool, int(np.ceil(len(s) * POOL_FRACTION))) for _, s in group.members)
            dead = sum(live.dead for live in lives)
            rows, scores = self._segment_search(
                group.segment, allowed, dead, floats, codes, want, members_pool, metric, exact, filtered, keep_views=False
            )
            at = np.maximum(rows, 0)
            return np.where(rows >= 0, group.positions[at], -1), np.where(rows >= 0, group.rows[at], -1), scores

        jobs: list[Callable[[], Found]] = []
        costs: list[float] = []
        for group in self._pools(todo):
            jobs.append(functools.partial(pooled, group))
            costs.append(len(group.segment) * SCAN_COST)
            members = set(group.key)
            todo = [(pos, live) for pos, live in todo if (pos, live.segment.name) not in members]
        jobs += [functools.partial(one, item) for item in todo]
        costs += [len(live.segment) * (1 if live.segment.has_hnsw else SCAN_COST) for _, live in todo]
        # Several graph segments (large bases): searched side by side on every core (USearch releases the GIL).
        parallel = sum(live.segment.has_hnsw for _, live in todo) >= 2
        for done in _side_by_side(jobs, costs) if parallel else [job() for job in jobs]:
            if done is None:
                continue
            positions, rows, scores = done
            for q in range(n):
                keep = rows[q] >= 0
                got, at, where = scores[q][keep], rows[q][keep], positions[q][keep]
                if len(got) > want:  # only a segment's best `want` can reach the page (ties keep their order)
                    best = np.argsort(-got, kind="stable")[:want]
                    got, at, where = got[best], at[best], where[best]
                found[q].append((got, where, at))
        results = []
        for parts in found:
            scores = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.float32)
            order = np.argsort(-scores, kind="stable")[offset : offset + k]  # stable: ties in segment order
            positions = np.concatenate([p[1] for p in parts])[order] if parts else order
            rows = np.concatenate([p[2] for p in parts])[order] if parts else order
            results.append((scores[order], positions, rows))
        return results

    def _hits(
        self, scores: np.ndarray, positions: np.ndarray, rows: np.ndarray, *, min_score: float | None
    ) -> list[Hit]:
        """Hits for ranked (score, segment position, row) triples, stopping below min_score."""
        hits = []
        for raw_score, pos, row in zip(scores.tolist(), positions.tolist(), rows.tolist(), strict=True):
            score = round(min(max(float(raw_score), -1.0), 1.0), 6)
            if min_score is not None and score < min_score:  # the score as reported
                break
            segment = self.live.segments[pos].segment
            table = segment.table
            hits.append(
                Hit(
                    key=table.keys[row],
                    score=score,
                    bucket=table.bucket(row),
                    etag=table.etags[row],
                    size=int(table.sizes[row]),
                    tags=self._tags(segment, row),
                )
            )
        return hits

    def _segment_search(
        self,
        segment: Segment,
        allowed: np.ndarray,
        dead: int,
        floats: np.ndarray,
        codes: np.ndarray,
        want: int,
        pool: int,
        metric: str,
        exact: bool,
        filtered: Filter | None,
        *,
        keep_views: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        subset = np.flatnonzero(allowed) if filtered else None
        if subset is not None:
            fraction = len(subset) / max(1, len(segment))
            if segment.has_hnsw and not exact and fraction >= GRAPH_FILTER_FRACTION:
                # A broad filter on a graph: ask the graph for enough to keep `want` after filtering.
                stretch = min(len(segment), int(np.ceil((want + dead) / fraction * 2)))
                rows, scores = _only(allowed, *self._rank(segment, floats, codes, stretch, stretch, metric, exact, 0))
                if ((rows >= 0).sum(axis=1) >= want).all():
                    return rows, scores
            # A selective filter (or too few hits above): search exactly within the filter's rows (their
            # vectors kept for the next query), asking for as many more as are dead among them.
            if keep_views:
                matching, view = self._filter_view(segment, filtered)  # type: ignore[arg-type]
            else:  # a pool of small segments: its rows are few, and the pool changes with every append
                matching, view = subset, segment.subset(subset)
            hidden = len(matching) - len(subset)
            rows, scores = self._rank(view, floats, codes, want, pool, metric, True, hidden)
            return _only(allowed, np.where(rows >= 0, matching[np.maximum(rows, 0)], -1), scores)
        return _only(allowed, *self._rank(segment, floats, codes, want, pool, metric, exact, dead))

    def _rank(
        self,
        segment: Segment,
        floats: np.ndarray,
        codes: np.ndarray,
        want: int,
        pool: int,
        metric: str,
        exact: bool,
        dead: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of one segment's best `want` (+ `dead`, which may be hidden) for a metric."""
        n = len(segment)
        graph = segment.has_hnsw and not exact
        if metric == "cosine" or (metric == "hybrid" and graph and self.hybrid_graph == "floats"):
            # hybrid on a graph segment: the float graph ranks by cosine itself (docs/BENCHMARKS.md)
            return segment.search_floats(floats, min(want + dead, n), exact=exact)
        if metric == "hamming":
            rows, distances = segment.search_codes(codes, min(want + dead, n), exact=exact)
            return rows, 1.0 - distances / (segment.codes.shape[1] * 8)
        if not graph:
            pool = max(pool, int(np.ceil(n * POOL_FRACTION)))  # a scan costs the same: take more
            # re-ranking most rows, or float32 rows (a pool): rank them all by cosine at once, which one
            # einsum pass does faster than a Hamming scan and a re-rank (segment._dot)
            if (pool + dead) * FULL_RERANK >= n or (segment.floats is not None and segment.floats.dtype == np.float32):
                return segment.search_floats(floats, min(want + dead, n), exact=True)
        rows, _ = segment.search_codes(codes, min(pool + dead, n), exact=exact)
        scores = np.full(rows.shape, -np.inf, dtype=np.float32)
        for q in range(len(rows)):
            valid = rows[q] >= 0
            scores[q, valid] = segment.cosine(rows[q][valid], floats[q])
        return rows, scores

    def _filter_mask(self, segment: Segment, filtered: Filter) -> np.ndarray:
        """Rows of a segment whose key starts with the prefix and whose stored top concepts include the
        tag (at least concepts.TAG_MIN); the last few filters are kept per segment."""
        masks = self._prefixes.setdefault(segment.name, {})
        if filtered not in masks:
            if len(masks) >= PREFIX_CACHE:
                masks.pop(next(iter(masks)))
            prefix, tag = filtered
            mask = segment.table.keys.startswith(prefix) if prefix else np.ones(len(segment), bool)
            if tag:  # a segment without stored concepts has no tagged rows
                tagged = np.zeros(len(segment), bool) if segment.concepts is None else segment.concepts.tagged(self.tag_ids(tag))
                mask = mask & tagged
            masks[filtered] = mask
        return masks[filtered]

    def _pools(self, todo: list[tuple[int, Live]]) -> list[Pooled]:
        """Pools of the small exhaustive segments, one per encoder version with at least two (kept until
        the segments change)."""
        if not self.pooling:
            return []
        groups: dict[str, list[tuple[int, Segment]]] = {}
        for pos, live in todo:
            if poolable(live.segment):
                groups.setdefault(live.segment.encoder, []).append((pos, live.segment))
        pools = []
        for version, members in groups.items():
            if len(members) < 2:
                continue
            key = tuple((pos, s.name) for pos, s in members)
            if version not in self._pooled or self._pooled[version].key != key:
                self._pooled[version] = pool(members)
            pools.append(self._pooled[version])
        return pools

    def _filter_view(self, segment: Segment, filtered: Filter) -> tuple[np.ndarray, Segment]:
        """The rows of a segment a filter keeps and a small exhaustive segment of them (last few kept)."""
        views = self._views.setdefault(segment.name, {})
        if filtered not in views:
            if len(views) >= PREFIX_VIEWS:
                views.pop(next(iter(views)))
            rows = np.flatnonzero(self._filter_mask(segment, filtered))
            views[filtered] = (rows, segment.subset(rows))
        return views[filtered]

    def _locate(self, key: str, bucket: str | None) -> tuple[int, int]:
        if bucket is not None:
            candidates = [object_id(bucket, key)]
        else:
            candidates = [object_id(b, key) for b in self._buckets]
        for candidate in candidates:
            found = self.live.locate(candidate)
            if found is not None:
                return found
        raise KeyNotIndexed(
            f"{key!r} is not in the index: check the key (it is case-sensitive) or index it first"
        )


def _gathered(groups: list[Group], n: int) -> np.ndarray:
    """The float vectors of one query's n hits, in hit order, from their segments' groups."""
    vectors = np.empty((n, groups[0].stored.shape[1] if groups else 0), np.float32)
    for g in groups:
        vectors[g.at] = g.stored
    return vectors
