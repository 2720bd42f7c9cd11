"""Amazon S3 Vectors as the index: one vector per object, PutVectors / DeleteVectors / QueryVectors.

For collections past one query function's memory (docs/S3VECTORS.md). The choices, in short:

- The vector is the model's raw embedding, L2-normalised, as float32 (1280-d for the default model):
  no encoder fit is needed and vectors stay valid across fits. The index uses the cosine metric.
- The vector key is the object key (at most 1024 characters, as S3 keys are at most 1024 bytes): one
  S3 Vectors index holds one images bucket, whose name is kept as metadata. A longer key (a local
  path) is refused as a rejection, never truncated.
- Metadata: filterable `bucket`, `prefixes` (every "dir/" prefix of the key, shallowest first, cut to
  the 2 KB filterable budget; `deep: true` marks a cut list), `content_type` when known; non-filterable
  (declared when the index is created) `etag`, `size`, `sequencer`, `time`, `model`.
- S3 Vectors has no conditional writes. Ordering rule: before a write, GetVectors reads the stored
  sequencer of each key; an add older than the stored version (or identical to it) is skipped, a
  delete older than it is skipped. After the write the keys are read again and an overwrite by an
  older writer that read before us is repaired. A window remains (see `S3VectorsBackend.write`).
- Queries: QueryVectors with topK = offset + k (at most MAX_TOP_K), the prefix as a filter on
  `prefixes`, scores 1 - cosine distance (the segment backend's cosine scale). `hybrid` ranks by
  cosine; `hamming` is refused: this backend keeps no binary codes.

boto3 is imported inside functions (through imgsearch.bucket.client): the core imports without the SDK.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import S3VECTORS_SCHEME, Batch, WriteResult
from .concepts import SCORE_SCALE, TAG_MIN_SCORE, TopConcepts, image_text_vector
from .encode import DEFAULT_BITS
from .errors import BadParameter, ImgSearchError, IndexNotFound, KeyNotIndexed, ModelMismatch
from .modelspec import ModelSpec
from .options import SearchOptions
from .search import Hit
from .segment import ObjectRef, Rejection, normalise_sequencer
from .tagging import TagNames
from .vectorspec import DATA_TYPE, METRIC, NON_FILTERABLE  # the index's fixed parameters (also the stack's)

if TYPE_CHECKING:
    from .text import TextQuery

# Service limits (Amazon S3 User Guide, "S3 Vectors limitations and restrictions"; docs/S3VECTORS.md).
MAX_TOP_K = 100  # top-K results per QueryVectors request
PUT_BATCH = 500  # vectors per PutVectors call
DELETE_BATCH = 500  # keys per DeleteVectors call
GET_BATCH = 100  # keys per GetVectors call
MAX_KEY_CHARS = 1024  # a vector key is 1 to 1024 characters
MAX_REQUEST_BYTES = 20 * 1024 * 1024  # request payload
PAYLOAD_BUDGET = 18 * 1024 * 1024  # what a PutVectors call may take by our estimate
FILTERABLE_BYTES = 2048  # filterable metadata per vector
FILTERABLE_BUDGET = 1900  # what we let filterable metadata take (JSON bytes), leaving a margin

_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z0-9-]*):s3vectors:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"bucket/(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/index/(?P<index>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])"
)


class VectorIndexError(ImgSearchError):
    """S3 Vectors refused a request (the message says what to change)."""


@dataclass(frozen=True)
class VectorIndexRef:
    """Which S3 Vectors index: a vector bucket and index name, or an index ARN (which names both)."""

    bucket: str
    index: str
    arn: str | None = None
    region: str | None = None

    @property
    def uri(self) -> str:
        return f"{S3VECTORS_SCHEME}{self.bucket}/{self.index}"

    @property
    def params(self) -> dict[str, str]:
        """How S3 Vectors requests name the index: the ARN alone, or the bucket and index names."""
        if self.arn:
            return {"indexArn": self.arn}
        return {"vectorBucketName": self.bucket, "indexName": self.index}

    @classmethod
    def parse(cls, text: str) -> VectorIndexRef:
        """`s3vectors://BUCKET/INDEX` or `arn:aws:s3vectors:REGION:ACCOUNT:bucket/BUCKET/index/INDEX`.

        >>> VectorIndexRef.parse("s3vectors://my-vectors/images").params
        {'vectorBucketName': 'my-vectors', 'indexName': 'images'}
        """
        found = _ARN.fullmatch(text)
        if found:
            return cls(found["bucket"], found["index"], arn=text, region=found["region"])
        if text.startswith(S3VECTORS_SCHEME):
            bucket, _, index = text[len(S3VECTORS_SCHEME) :].strip("/").partition("/")
            if _NAME.fullmatch(bucket) and _NAME.fullmatch(index) and ".." not in bucket + index:
                return cls(bucket, index)
        raise BadParameter(
            f"{text!r} is not an S3 Vectors index: write s3vectors://VECTOR-BUCKET/INDEX (names of 3-63 "
            "lower-case letters, digits, hyphens or dots) or the index ARN"
        )


# --- vectors and metadata -----------------------------------------------------------------------------


def key_prefixes(key: str) -> list[str]:
    """Every "dir/" prefix of a key, shallowest first.

    >>> key_prefixes("photos/2024/cat.jpg")
    ['photos/', 'photos/2024/']
    """
    return [key[: i + 1] for i, c in enumerate(key) if c == "/"]


def _json_bytes(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def metadata(
    ref: ObjectRef,
    *,
    content_type: str | None = None,
    model: str = "",
    tags: tuple[list[int], list[int]] | None = None,
) -> dict[str, Any]:
    """The metadata stored with an object's vector (filterable first, then non-filterable).

    `tags`: the image's concept ids scoring at least TAG_MIN and their stored scores (0..255), best
    first, as the filterable lists `tags` and `tag_scores` (a tag filter is `$in` on `tags`)."""
    filterable: dict[str, Any] = {"bucket": ref.bucket}
    if content_type:
        filterable["content_type"] = content_type
    if tags is not None and tags[0]:
        filterable["tags"], filterable["tag_scores"] = tags
    prefixes = key_prefixes(ref.key)
    kept: list[str] = []
    budget = FILTERABLE_BUDGET - _json_bytes({**filterable, "prefixes": [], "deep": True})
    for prefix in prefixes:
        budget -= _json_bytes(prefix) + 1
        if budget < 0:
            break
        kept.append(prefix)
    filterable["prefixes"] = kept
    if len(kept) < len(prefixes):
        filterable["deep"] = True  # a prefix filter cannot see all of this key's prefixes: always a candidate
    stored = {
        **filterable,
        "etag": ref.etag,
        "size": int(ref.size),
        "sequencer": ref.order,
        "time": float(ref.time),
    }
    if model:
        stored["model"] = model
    return stored


def stored_tags(concepts: TopConcepts, row: int) -> tuple[list[int], list[int]]:
    """One image's tags as stored: concept ids scoring at least TAG_MIN_SCORE and their scores, best first."""
    pairs = sorted(
        ((int(s), int(i)) for i, s in zip(concepts.ids[row].tolist(), concepts.scores[row].tolist(), strict=True)
         if s >= TAG_MIN_SCORE),
        reverse=True,
    )
    return [i for _, i in pairs], [s for s, _ in pairs]


def with_tag(where: dict[str, Any] | None, ids: Sequence[int]) -> dict[str, Any]:
    """A filter that also asks for one of these concept ids among the stored `tags`."""
    tagged = {"tags": {"$in": [int(i) for i in ids]}}
    return tagged if where is None else {"$and": [where, tagged]}


def prefix_filter(prefix: str | None) -> tuple[dict[str, Any] | None, bool]:
    """(the QueryVectors filter for a key prefix, whether the filter alone is exact).

    The prefix's directory part ("a/b/" of "a/b/c") is matched against the stored `prefixes` list
    (`$eq` on a list matches any element); entries whose list was cut (`deep`) always match. The rest
    of the prefix, and the cut entries, are checked on the returned keys.
    """
    if not prefix:
        return None, True
    directory = prefix[: prefix.rfind("/") + 1]
    if not directory:
        return None, False
    return {"$or": [{"prefixes": {"$eq": directory}}, {"deep": {"$eq": True}}]}, directory == prefix


def unit_vector(raw: np.ndarray) -> np.ndarray | None:
    """The embedding L2-normalised as float32, or None if it is not finite or is zero (cosine refuses it)."""
    x = np.asarray(raw, dtype=np.float32).reshape(-1)
    if not np.isfinite(x).all():
        return None
    norm = float(np.linalg.norm(x))
    if not math.isfinite(norm) or norm <= 1e-12:
        return None
    return (x / norm).astype(np.float32)


def key_problem(key: str) -> tuple[str, str] | None:
    """(code, reason) if S3 Vectors cannot take this object key as a vector key, else None."""
    if not key:
        return "bad_key", "empty object key"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "bad_key", "the key is not valid Unicode text (it holds a lone surrogate)"
    if len(key) > MAX_KEY_CHARS:
        return "key_too_long", (
            f"the key has {len(key)} characters; S3 Vectors keys are at most {MAX_KEY_CHARS}: use a shorter key"
        )
    return None


def score(distance: float, metric: str) -> float:
    """A distance as the segment backend's score: cosine similarity (higher is closer), in [-1, 1].

    cosine: the service returns 1 - cos. euclidean (unit vectors): |a - b|^2 = 2 - 2 cos.
    """
    similarity = 1.0 - distance if metric == "cosine" else 1.0 - distance * distance / 2.0
    return round(min(max(similarity, -1.0), 1.0), 6)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- writes ---------------------------------------------------------------------------------------------


@dataclass
class Change:
    """What a batch does to one key: put a vector (with metadata) or delete it, at an S3 sequencer order."""

    key: str
    order: str
    etag: str = ""
    vector: list[float] | None = None  # None: a delete
    meta: dict[str, Any] | None = None

    @property
    def is_delete(self) -> bool:
        return self.vector is None


@dataclass
class Plan:
    """A batch resolved against what the index holds: what to put, what to delete, what to skip."""

    puts: list[Change] = field(default_factory=list)
    deletes: list[Change] = field(default_factory=list)
    skipped: int = 0  # older than the stored version (or identical to it)
    refused: list[Rejection] = field(default_factory=list)
    rejected: int = 0  # rejections the batch brought


@dataclass(frozen=True)
class Stored:
    order: str
    etag: str


class S3VectorsBackend:
    """An Amazon S3 Vectors index behind the IndexBackend interface.

    >>> backend = S3VectorsBackend.open("s3vectors://my-vectors/images")  # doctest: +SKIP
    """

    name = "s3vectors"

    def __init__(
        self,
        where: VectorIndexRef,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        bucket: str | None = None,
        max_top_k: int = MAX_TOP_K,
        verify: bool = True,
    ) -> None:
        if client is None:
            from .bucket import client as make_client

            client = make_client("s3vectors", endpoint_url=endpoint_url, region=region or where.region)
        self.where = where
        self.client = client
        self.bucket = bucket  # the one images bucket this index holds (None: not checked)
        self.max_top_k = max_top_k
        self.verify_writes = verify
        self.model = ""  # set by ensure(): the model's sha256 prefix, kept with every vector
        self.tagging = TagNames()  # tag names ↔ concept ids, from the model folder when first needed
        self._info: dict[str, Any] | None = None

    @classmethod
    def open(
        cls,
        location: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        bucket: str | None = None,
    ) -> S3VectorsBackend:
        return cls(VectorIndexRef.parse(location), endpoint_url=endpoint_url, region=region, bucket=bucket)

    # --- the index itself -------------------------------------------------------------------------

    def info(self, *, fresh: bool = False) -> dict[str, Any]:
        """GetIndex: dimension, distance metric, metadata configuration (cached)."""
        if self._info is None or fresh:
            self._info = self._call("get_index", **self.where.params)["index"]
        return self._info

    @property
    def dimension(self) -> int:
        return int(self.info()["dimension"])

    @property
    def metric(self) -> str:
        return str(self.info().get("distanceMetric", METRIC))

    def create(self, *, dimension: int) -> None:
        """Create the vector bucket (if missing) and the index (if missing) the way the CDK stack does."""
        if self.where.arn:
            raise BadParameter("create an index by bucket and name (s3vectors://BUCKET/INDEX), not by ARN")
        from botocore.exceptions import ClientError

        try:
            self.client.get_vector_bucket(vectorBucketName=self.where.bucket)
        except ClientError as error:
            if _code(error) != "NotFoundException":
                raise
            self.client.create_vector_bucket(vectorBucketName=self.where.bucket)
        try:
            self.info(fresh=True)
            return
        except IndexNotFound:
            pass
        self.client.create_index(
            vectorBucketName=self.where.bucket,
            indexName=self.where.index,
            dataType=DATA_TYPE,
            dimension=int(dimension),
            distanceMetric=METRIC,
            metadataConfiguration={"nonFilterableMetadataKeys": list(NON_FILTERABLE)},
        )
        self.info(fresh=True)

    def ensure(self, spec: ModelSpec, *, bits: int = DEFAULT_BITS) -> None:
        """Check the index takes this model's embeddings (its dimension); `bits` is unused (no codes)."""
        dimension = self.dimension
        if dimension != spec.output_dim:
            raise ModelMismatch(
                f"the S3 Vectors index {self.where.uri} holds {dimension}-d vectors but {spec.name} gives "
                f"{spec.output_dim}-d embeddings: use the index's model, or a new index of dimension {spec.output_dim}"
            )
        self.model = spec.sha256[:16]

    # --- writes -----------------------------------------------------------------------------------

    def write(self, batch: Batch) -> WriteResult:
        """Apply a batch under the ordering rule: plan (read stored sequencers), apply, verify.

        No conditional writes exist, so two writers of one key can still interleave: if writer A (older
        event) reads the key, then B (newer) reads, writes and verifies, and only then A writes, A's
        older version stays until the key's next change (verify catches every interleaving in which
        A's write lands before B's verify). The ingest function's If-Match GET narrows this further:
        an event whose object was overwritten or deleted before the GET is never written at all.
        """
        plan = self.plan(batch)
        self.apply(plan)
        retries = self.verify(plan) if self.verify_writes else 0
        return WriteResult(
            indexed=len(plan.puts),
            deleted=len(plan.deletes),
            rejected=plan.rejected + len(plan.refused),
            retries=retries,
            skipped=plan.skipped,
            refused=tuple(plan.refused),
        )

    def plan(self, batch: Batch) -> Plan:
        """Resolve a batch per key (newest change wins, a delete wins a tie), then against the stored
        sequencers: what to put, what to delete, what is stale."""
        plan = Plan(rejected=len(batch.rejections))
        raw = batch.raw()
        concepts = batch.concepts()
        adds: dict[str, tuple[str, int, Change]] = {}
        for position, ref in enumerate(batch.refs):
            self._check_bucket(ref)
            problem = key_problem(ref.key)
            vector = unit_vector(raw[position]) if problem is None else None
            if vector is None:
                code, reason = problem or (
                    "bad_vector",
                    "the embedding is zero or not finite; S3 Vectors cosine refuses it",
                )
                plan.refused.append(
                    Rejection(bucket=ref.bucket, key=ref.key, etag=ref.etag, code=code, reason=reason)
                )
                continue
            if len(vector) != self.dimension:
                raise ModelMismatch(
                    f"embeddings of {len(vector)} dimensions for the {self.dimension}-d index {self.where.uri}"
                )
            tags = stored_tags(concepts, position) if concepts is not None else None
            meta = metadata(ref, content_type=batch.content_types[position], model=self.model, tags=tags)
            change = Change(ref.key, ref.order, ref.etag, vector.tolist(), meta)
            previous = adds.get(ref.key)
            if previous is None or (ref.order, position) >= previous[:2]:
                adds[ref.key] = (ref.order, position, change)
        deletes: dict[str, Change] = {}
        for ref in batch.deletes:
            self._check_bucket(ref)
            if key_problem(ref.key) is not None:
                continue  # such a key was never stored
            if ref.key not in deletes or ref.order >= deletes[ref.key].order:
                deletes[ref.key] = Change(ref.key, ref.order, ref.etag)
        changes: dict[str, Change] = {key: change for key, (_, _, change) in adds.items()}
        for key, delete in deletes.items():
            if key not in changes or delete.order >= changes[key].order:
                changes[key] = delete  # a tombstone hides entries up to its own sequencer (as segments)
        stored = self.stored(list(changes))
        for key, change in changes.items():
            held = stored.get(key)
            if change.is_delete:
                if held is not None and held.order > change.order:
                    plan.skipped += 1  # a newer upload is held: this delete is stale
                else:
                    plan.deletes.append(change)  # nothing held is fine too: deleting is idempotent
            elif held is not None and (
                held.order > change.order or (held.order == change.order and held.etag == change.etag)
            ):
                plan.skipped += 1  # stale, or the same version again
            else:
                plan.puts.append(change)
        return plan

    def apply(self, plan: Plan) -> None:
        """PutVectors and DeleteVectors for a plan, in batches within the service limits."""
        for chunk in self._put_chunks(plan.puts):
            self._call(
                "put_vectors",
                **self.where.params,
                vectors=[{"key": c.key, "data": {"float32": c.vector}, "metadata": c.meta} for c in chunk],
            )
        for part in _chunks(plan.deletes, DELETE_BATCH):
            self._call("delete_vectors", **self.where.params, keys=[c.key for c in part])

    def verify(self, plan: Plan) -> int:
        """Read the written keys again and repair what an older writer overwrote meanwhile; the repairs.

        A put found holding an older sequencer is put again; a delete found undone by an older upload
        is deleted again. A put found gone is left gone: a newer delete and a stale one look the same.
        """
        stored = self.stored([c.key for c in plan.puts] + [c.key for c in plan.deletes])
        again = Plan()
        for change in plan.puts:
            held = stored.get(change.key)
            if held is not None and held.order < change.order:
                again.puts.append(change)
        for change in plan.deletes:
            held = stored.get(change.key)
            if held is not None and held.order < change.order:
                again.deletes.append(change)
        if again.puts or again.deletes:
            self.apply(again)
        return len(again.puts) + len(again.deletes)

    def stored(self, keys: Sequence[str]) -> dict[str, Stored]:
        """The sequencer and ETag held for each of these keys (absent keys are left out)."""
        found: dict[str, Stored] = {}
        for chunk in _chunks(list(dict.fromkeys(keys)), GET_BATCH):
            response = self._call("get_vectors", **self.where.params, keys=list(chunk), returnMetadata=True)
            for vector in response.get("vectors", []):
                meta = vector.get("metadata") or {}
                found[vector["key"]] = Stored(
                    normalise_sequencer(str(meta.get("sequencer", "0"))), str(meta.get("etag", ""))
                )
        return found

    def _put_chunks(self, puts: Sequence[Change]) -> Iterator[list[Change]]:
        """Up to PUT_BATCH vectors per call, and under the request payload limit: a float goes out as
        about 24 bytes of JSON (17 digits, sign, separator), so a 1280-d vector is about 30 KB."""
        chunk: list[Change] = []
        size = 0
        for change in puts:
            weight = 24 * len(change.vector or ()) + _json_bytes(change.meta) + len(change.key) + 64
            if chunk and (len(chunk) >= PUT_BATCH or size + weight > PAYLOAD_BUDGET):
                yield chunk
                chunk, size = [], 0
            chunk.append(change)
            size += weight
        if chunk:
            yield chunk

    def _check_bucket(self, ref: ObjectRef) -> None:
        if self.bucket is not None and ref.bucket != self.bucket:
            raise BadParameter(
                f"{ref.bucket}/{ref.key}: the S3 Vectors index {self.where.uri} holds bucket {self.bucket!r} "
                "only (vector keys are object keys); use one index per images bucket"
            )

    # --- queries ----------------------------------------------------------------------------------

    def search(self, embeddings: np.ndarray, options: SearchOptions) -> list[list[Hit]]:
        """Top-k hits for each raw embedding. `hybrid` ranks by cosine; `exact` is ignored (the service
        decides how it searches); offset + k is at most MAX_TOP_K."""
        want = self._check(options)
        queries = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        results = []
        for row in queries:
            vector = unit_vector(row)
            if vector is None:
                raise BadParameter("the query embedding is zero or not finite")
            results.append(self._search(vector.tolist(), options, want))
        return results

    def search_key(self, key: str, bucket: str | None, options: SearchOptions) -> list[Hit]:
        """ "More like this": search with the vector stored for an object key."""
        want = self._check(options)
        return self._search(self._stored_vector(key, bucket), options, want)

    def _stored_vector(self, key: str, bucket: str | None) -> list[float]:
        """The vector stored for an object key (KeyNotIndexed if there is none, or it is of another bucket)."""
        found = []
        if key_problem(key) is None:
            response = self._call(
                "get_vectors", **self.where.params, keys=[key], returnData=True, returnMetadata=True
            )
            found = response.get("vectors", [])
        if not found or (
            bucket is not None and (found[0].get("metadata") or {}).get("bucket", bucket) != bucket
        ):
            raise KeyNotIndexed(
                f"{key!r} is not in the index: check the key (it is case-sensitive) or index it first"
            )
        return [float(x) for x in found[0]["data"]["float32"]]

    def search_text(
        self,
        query: TextQuery,
        options: SearchOptions,
        *,
        image: np.ndarray | None = None,
        key: str | None = None,
        bucket: str | None = None,
    ) -> list[Hit]:
        """Words alone: QueryVectors along the words' direction (cosine; no stored concepts re-rank here).
        With an image or a key: image + IMAGE_TEXT_WEIGHT × direction, as the segment backend does."""
        want = self._check(options)
        direction = np.asarray(query.direction, dtype=np.float32).reshape(-1)
        if image is not None and key is not None:
            raise BadParameter("give an image or a key with the words, not both")
        origin = None
        if key is not None:
            origin = np.asarray(self._stored_vector(key, bucket), dtype=np.float32)
        elif image is not None:
            origin = unit_vector(np.asarray(image, dtype=np.float32).reshape(-1))
            if origin is None:
                raise BadParameter("the query embedding is zero or not finite")
        vector = direction if origin is None else image_text_vector(origin, direction)
        if origin is None:
            options = replace(options, expand=0)  # words alone are not expanded (as on segments)
        return self._search(vector.astype(np.float32).tolist(), options, want)

    def thumbnail_store(self) -> None:
        """No thumbnails: this backend has no store of its own beside the vector index."""
        return None

    def _check(self, options: SearchOptions) -> int:
        if options.collapse:
            raise BadParameter(
                "collapse is not available on the s3vectors index backend: it keeps no binary codes to tell "
                "near-copies by"
            )
        if options.tag:
            self.tagging.ids(options.tag)  # an unknown tag is a 400, not an empty page
        if options.metric == "hamming":
            raise BadParameter(
                "metric=hamming is not available on the s3vectors index backend: it keeps no binary codes; "
                "use metric=cosine (metric=hybrid ranks by cosine here)"
            )
        want = options.offset + options.k
        if want > self.max_top_k:
            raise BadParameter(
                f"offset + k is {want}; the s3vectors index backend returns at most {self.max_top_k} results "
                f"per query (S3 Vectors' top-K limit): ask for offset + k <= {self.max_top_k}"
            )
        return want

    def _search(self, vector: list[float], options: SearchOptions, want: int) -> list[Hit]:
        if options.expand:
            vector = self._expanded(vector, options)
        where, exact = prefix_filter(options.prefix)
        if options.tag:
            where = with_tag(where, self.tagging.ids(options.tag))
        top_k = want if exact else self.max_top_k
        while True:
            found, metric = self._query(vector, top_k, where)
            hits = [
                hit
                for hit in (self._hit(v, metric, self.tagging.names()) for v in found)
                if not options.prefix or hit.key.startswith(options.prefix)
            ]
            if len(hits) >= want or len(found) < top_k or top_k >= self.max_top_k:
                break
            top_k = self.max_top_k  # filtered out on our side: ask for as many as the service gives
        page = []
        for hit in hits[options.offset : options.offset + options.k]:
            if options.min_score is not None and hit.score < options.min_score:
                break
            page.append(hit)
        return page

    def _expanded(self, vector: list[float], options: SearchOptions) -> list[float]:
        """α-query expansion as the segment backend does it: unit(q + Σ max(s, 0)^α d) over the first
        `expand` hits (their vectors read with GetVectors), then searched again."""
        from .search import EXPAND_ALPHA

        count = options.expand or 0  # called only when it is on
        first = self._search(vector, replace(options, k=count, offset=0, min_score=None, expand=0), count)
        if not first:
            return vector
        found = self._call(
            "get_vectors", **self.where.params, keys=[h.key for h in first], returnData=True, returnMetadata=False
        ).get("vectors", [])
        data = {v["key"]: np.asarray(v["data"]["float32"], dtype=np.float32) for v in found}
        moved = np.asarray(vector, dtype=np.float32).copy()
        for hit in first:
            if hit.key in data:
                moved += max(hit.score, 0.0) ** EXPAND_ALPHA * data[hit.key]
        return (moved / max(float(np.linalg.norm(moved)), 1e-12)).astype(np.float32).tolist()

    def _query(
        self, vector: list[float], top_k: int, where: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], str]:
        args: dict[str, Any] = {
            **self.where.params,
            "topK": top_k,
            "queryVector": {"float32": vector},
            "returnMetadata": True,
            "returnDistance": True,
        }
        if where:
            args["filter"] = where
        found: list[dict[str, Any]] = []
        metric = METRIC
        while True:  # QueryVectors may page a large topK (nextToken): follow it up to top_k
            response = self._call("query_vectors", **args)
            found.extend(response.get("vectors", []))
            metric = response.get("distanceMetric", metric)
            token = response.get("nextToken")
            if not token or len(found) >= top_k:
                return found[:top_k], metric
            args["nextToken"] = token

    @staticmethod
    def _hit(vector: dict[str, Any], metric: str, names: Sequence[str]) -> Hit:
        meta = vector.get("metadata") or {}
        ids, scores = meta.get("tags") or [], meta.get("tag_scores") or []
        tags = tuple(
            (names[int(i)], round(int(p) / SCORE_SCALE, 3))
            for i, p in zip(ids, scores, strict=False)
            if 0 <= int(i) < len(names)
        )
        return Hit(
            key=vector["key"],
            score=score(float(vector.get("distance", 1.0)), metric),
            bucket=str(meta.get("bucket", "")),
            etag=str(meta.get("etag", "")),
            size=int(meta.get("size", 0)),
            tags=tags,
        )

    # --- facts ------------------------------------------------------------------------------------

    def count(self) -> None:
        """None: S3 Vectors has no count, and listing every key per health check would cost O(N)."""
        return None

    def scan_count(self) -> int:
        """The number of vectors, by listing every key (ListVectors pages of 1000; O(N) requests)."""
        return sum(1 for _ in self.keys())

    def keys(self) -> Iterator[str]:
        """Every vector key, a ListVectors page at a time."""
        args: dict[str, Any] = {**self.where.params, "maxResults": 1000}
        while True:
            response = self._call("list_vectors", **args)
            for vector in response.get("vectors", []):
                yield vector["key"]
            token = response.get("nextToken")
            if not token:
                return
            args["nextToken"] = token

    def health(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "backend": self.name,
            "count": None,
            "entries": None,
            "segments": 0,
            "rejected": None,
            "encoder": "",
            "index_version": 0,
            "vector_index": self.where.uri,
        }
        try:
            info = self.info(fresh=True)
        except IndexNotFound as error:
            return {**facts, "status": "missing", "message": str(error)}
        return {
            **facts,
            "status": "ok",
            "dimension": int(info["dimension"]),
            "distance_metric": info.get("distanceMetric", METRIC),
        }

    # --- errors -----------------------------------------------------------------------------------

    def _call(self, operation: str, **args: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client, operation)(**args)
        except ClientError as error:
            code = _code(error)
            message = error.response.get("Error", {}).get("Message", "") or str(error)
            if code in ("NotFoundException", "NoSuchIndex", "NoSuchVectorBucket"):
                raise IndexNotFound(
                    f"no S3 Vectors index at {self.where.uri}: deploy with -c indexBackend=s3vectors, or "
                    f"create it (imgsearch export --create ...) ({message})"
                ) from None
            if code == "ValidationException":
                raise VectorIndexError(
                    f"S3 Vectors refused {operation} on {self.where.uri}: {message}"
                ) from None
            raise


def _code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))
