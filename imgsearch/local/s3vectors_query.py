"""QueryVectors for moto's S3 Vectors backend, which has none (moto 5.2): exact search, documented filters.

`install()` patches moto in this process (call it before the first S3 Vectors request reaches a moto
server: the server builds its routes for a service on that service's first request). It adds:

- QueryVectors: exact nearest neighbours over the stored vectors by the index's metric (cosine
  distance = 1 - cos; euclidean = the L2 distance), `topK` (1..MAX_TOP_K), `filter` with the
  documented operators ($eq $ne $gt $gte $lt $lte $in $nin $exists $and $or; a bare value is $eq;
  several conditions in one object are ANDed; $eq and $in on a list value match any element; $ne and
  $nin match objects without the key), `returnDistance`, `returnMetadata`. A filter naming a
  non-filterable key, an unknown operator or a value of the wrong type is a 400 ValidationException.
- CreateIndex keeps the metadata configuration (non-filterable keys, shown by GetIndex) and answers
  with the index ARN, as the service does.
- PutVectors checks what the service documents: no zero vector under cosine, finite values, at most
  2 KB of filterable metadata (counted here as its compact UTF-8 JSON), 40 KB in all, 50 keys.

Ties are broken by key, so results are deterministic (the service is approximate and makes no such promise).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

MAX_TOP_K = 100  # top-K results per QueryVectors request (S3 Vectors limitations)
FILTERABLE_BYTES = 2048
METADATA_BYTES = 40 * 1024
METADATA_KEYS = 50
COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
LOGICAL = ("$and", "$or")
MARK = "_imgsearch_query_vectors"


class FilterError(ValueError):
    """A metadata filter the service would refuse (400)."""


# --- filters --------------------------------------------------------------------------------------------


def _primitive(value: Any) -> bool:
    return isinstance(value, str | bool) or (isinstance(value, int | float) and math.isfinite(value))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_filter(where: Any, non_filterable: frozenset[str] = frozenset()) -> None:
    """Raise FilterError for a filter S3 Vectors documents as invalid."""
    if not isinstance(where, dict) or not where:
        raise FilterError("a filter must be a non-empty JSON object")
    for name, condition in where.items():
        if name in LOGICAL:
            if not isinstance(condition, list) or not condition:
                raise FilterError(f"{name} takes a non-empty array of filters")
            for part in condition:
                check_filter(part, non_filterable)
            continue
        if name.startswith("$"):
            raise FilterError(f"unknown operator {name!r} at the top of a filter (use $and or $or)")
        if name in non_filterable:
            raise FilterError(
                f"metadata key {name!r} is non-filterable in this index and cannot be used in a filter"
            )
        if _primitive(condition):
            continue
        if not isinstance(condition, dict) or not condition:
            raise FilterError(
                f"the condition on {name!r} must be a string, number, boolean or an operator object"
            )
        for operator, value in condition.items():
            if operator not in COMPARISONS:
                raise FilterError(
                    f"unknown operator {operator!r} on {name!r}: use one of {', '.join(COMPARISONS)}"
                )
            if operator in ("$eq", "$ne") and not _primitive(value):
                raise FilterError(f"{operator} on {name!r} takes a string, number or boolean")
            if operator in ("$gt", "$gte", "$lt", "$lte") and not _number(value):
                raise FilterError(f"{operator} on {name!r} takes a number")
            if operator in ("$in", "$nin") and (
                not isinstance(value, list) or not value or not all(_primitive(v) for v in value)
            ):
                raise FilterError(
                    f"{operator} on {name!r} takes a non-empty array of strings, numbers or booleans"
                )
            if operator == "$exists" and not isinstance(value, bool):
                raise FilterError(f"$exists on {name!r} takes true or false")


def _same(stored: Any, value: Any) -> bool:
    """Equality that keeps booleans, numbers and strings apart (true is not 1)."""
    if isinstance(stored, bool) or isinstance(value, bool):
        return isinstance(stored, bool) and isinstance(value, bool) and stored is value
    if _number(stored) and _number(value):
        return float(stored) == float(value)
    return isinstance(stored, str) and isinstance(value, str) and stored == value


def _values(stored: Any) -> list[Any]:
    return list(stored) if isinstance(stored, list) else [stored]


def _compare(stored: Any, value: float, operator: str) -> bool:
    tests = {
        "$gt": lambda s: s > value,
        "$gte": lambda s: s >= value,
        "$lt": lambda s: s < value,
        "$lte": lambda s: s <= value,
    }
    return any(_number(s) and tests[operator](float(s)) for s in _values(stored))


def _condition(meta: dict[str, Any], name: str, operator: str, value: Any) -> bool:
    present = name in meta
    stored = meta.get(name)
    if operator == "$exists":
        return present is value
    if operator == "$eq":
        return present and any(_same(s, value) for s in _values(stored))
    if operator == "$ne":
        return not (present and any(_same(s, value) for s in _values(stored)))
    if operator == "$in":
        return present and any(_same(s, v) for s in _values(stored) for v in value)
    if operator == "$nin":
        return not (present and any(_same(s, v) for s in _values(stored) for v in value))
    return present and _compare(stored, value, operator)


def matches(where: dict[str, Any], meta: dict[str, Any]) -> bool:
    """Whether metadata satisfies a (checked) filter."""
    for name, condition in where.items():
        if name == "$and":
            ok = all(matches(part, meta) for part in condition)
        elif name == "$or":
            ok = any(matches(part, meta) for part in condition)
        elif isinstance(condition, dict):
            ok = all(_condition(meta, name, op, value) for op, value in condition.items())
        else:
            ok = _condition(meta, name, "$eq", condition)
        if not ok:
            return False
    return True


# --- search ---------------------------------------------------------------------------------------------


def distances(query: np.ndarray, stored: np.ndarray, metric: str) -> np.ndarray:
    """Distances as S3 Vectors reports them: cosine 1 - cos, euclidean the L2 distance (float32 inputs)."""
    q = np.asarray(query, dtype=np.float32).astype(np.float64)
    x = np.asarray(stored, dtype=np.float32).astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1) * np.linalg.norm(q)
        return 1.0 - (x @ q) / np.maximum(norms, 1e-30)
    return np.linalg.norm(x - q, axis=1)


def query(
    vectors: dict[str, Any],
    *,
    dimension: int,
    metric: str,
    top_k: int,
    query_vector: Any,
    where: Any = None,
    non_filterable: frozenset[str] = frozenset(),
    return_distance: bool = False,
    return_metadata: bool = False,
) -> list[dict[str, Any]]:
    """QueryVectors over moto's stored vectors (key → object with .data and .metadata); raises FilterError."""
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise FilterError(f"topK must be between 1 and {MAX_TOP_K}, inclusive")
    data = (query_vector or {}).get("float32") if isinstance(query_vector, dict) else None
    if not isinstance(data, list) or len(data) != dimension:
        got = len(data) if isinstance(data, list) else 0
        raise FilterError(f"the query vector must have {dimension} dimensions, not {got}")
    q = np.asarray(data, dtype=np.float64)
    if not np.isfinite(q).all() or (metric == "cosine" and not np.any(q)):
        raise FilterError("the query vector must be finite (and not zero for the cosine metric)")
    if where is not None:
        check_filter(where, non_filterable)
    keys = sorted(k for k, v in vectors.items() if where is None or matches(where, v.metadata or {}))
    if not keys:
        return []
    found = distances(q, np.array([vectors[k].data["float32"] for k in keys]), metric)
    order = sorted(range(len(keys)), key=lambda i: (found[i], keys[i]))[:top_k]
    results = []
    for i in order:
        item: dict[str, Any] = {"key": keys[i]}
        if return_distance:
            item["distance"] = float(found[i])
        if return_metadata:
            item["metadata"] = vectors[keys[i]].metadata or {}
        results.append(item)
    return results


def check_put(vectors: list[dict[str, Any]], *, metric: str, non_filterable: frozenset[str]) -> None:
    """Raise FilterError for vectors PutVectors would refuse (the documented data and metadata limits)."""
    for vector in vectors:
        key = vector.get("key", "")
        data = np.asarray((vector.get("data") or {}).get("float32") or [], dtype=np.float64)
        if not np.isfinite(data).all():
            raise FilterError(f"Invalid record for key '{key}': vector data must be finite")
        if metric == "cosine" and not np.any(data):
            raise FilterError(
                f"Invalid record for key '{key}': zero vectors are not allowed for the cosine metric"
            )
        meta = vector.get("metadata") or {}
        if not isinstance(meta, dict):
            raise FilterError(f"Invalid record for key '{key}': metadata must be an object")
        filterable = {k: v for k, v in meta.items() if k not in non_filterable}
        if len(meta) > METADATA_KEYS:
            raise FilterError(f"Invalid record for key '{key}': more than {METADATA_KEYS} metadata keys")
        if _size(filterable) > FILTERABLE_BYTES:
            raise FilterError(
                f"Invalid record for key '{key}': filterable metadata is over {FILTERABLE_BYTES} bytes"
            )
        if _size(meta) > METADATA_BYTES:
            raise FilterError(f"Invalid record for key '{key}': metadata is over {METADATA_BYTES} bytes")


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


# --- moto -----------------------------------------------------------------------------------------------


def install() -> None:
    """Patch moto's S3 Vectors responses in this process (idempotent)."""
    from moto.core.responses import ActionResult
    from moto.s3vectors import responses, urls
    from moto.s3vectors.exceptions import ValidationError

    response_class = responses.S3VectorsResponse
    if getattr(response_class, MARK, False):
        return

    def index_of(self: Any) -> Any:
        return self.s3vectors_backend.get_index(
            self._get_param("vectorBucketName"), self._get_param("indexName"), self._get_param("indexArn")
        )

    def non_filterable(index: Any) -> frozenset[str]:
        config = getattr(index, "metadataConfiguration", None) or {}
        return frozenset(config.get("nonFilterableMetadataKeys") or ())

    def query_vectors(self: Any) -> Any:
        self._validate_index_params(
            self._get_param("indexArn"), self._get_param("indexName"), self._get_param("vectorBucketName")
        )
        index = index_of(self)
        try:
            found = query(
                index.vectors,
                dimension=index.dimension,
                metric=index.distance_metric,
                top_k=self._get_param("topK"),
                query_vector=self._get_param("queryVector"),
                where=self._get_param("filter"),
                non_filterable=non_filterable(index),
                return_distance=bool(self._get_param("returnDistance", False)),
                return_metadata=bool(self._get_param("returnMetadata", False)),
            )
        except FilterError as error:
            raise ValidationError(str(error)) from None
        return ActionResult({"vectors": found, "distanceMetric": index.distance_metric})

    original_create = response_class.create_index
    original_put = response_class.put_vectors

    def create_index(self: Any) -> Any:
        original_create(self)
        backend = self.s3vectors_backend
        bucket = (
            self._get_param("vectorBucketName")
            or backend.get_vector_bucket(
                vector_bucket_arn=self._get_param("vectorBucketArn")
            ).vector_bucket_name
        )
        index = backend.get_index(bucket, self._get_param("indexName"), None)
        config = self._get_param("metadataConfiguration") or {}
        index.metadataConfiguration = {
            "nonFilterableMetadataKeys": list(config.get("nonFilterableMetadataKeys") or [])
        }
        return ActionResult({"indexArn": index.index_arn})

    def put_vectors(self: Any) -> Any:
        index = index_of(self)
        try:
            check_put(
                self._get_param("vectors") or [],
                metric=index.distance_metric,
                non_filterable=non_filterable(index),
            )
        except FilterError as error:
            raise ValidationError(str(error)) from None
        return original_put(self)

    for name, method in (
        ("query_vectors", query_vectors),
        ("create_index", create_index),
        ("put_vectors", put_vectors),
    ):
        setattr(response_class, name, method)
    urls.url_paths.setdefault("{0}/QueryVectors$", response_class.dispatch)
    setattr(response_class, MARK, True)
