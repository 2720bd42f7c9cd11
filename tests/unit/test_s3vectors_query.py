"""QueryVectors added to moto (imgsearch.local.s3vectors_query), checked against S3 Vectors' documented
behaviour over real HTTP on the moto server: distances, topK, every filter operator, the return flags
and the 400s the service answers for a bad filter or a bad vector."""

from __future__ import annotations

import math
import uuid
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from imgsearch.local import s3vectors_query
from imgsearch.local.s3vectors_query import MAX_TOP_K, check_filter, matches

DIM = 4


@pytest.fixture
def vectors(moto_endpoint: str, aws_env: None) -> Any:
    """An S3 Vectors client on the moto server, QueryVectors installed."""
    import boto3

    s3vectors_query.install()
    return boto3.client("s3vectors", endpoint_url=moto_endpoint, region_name="us-east-1")


def make_index(
    client: Any, *, metric: str = "cosine", non_filterable: tuple[str, ...] = ("note",)
) -> dict[str, str]:
    bucket = f"vb-{uuid.uuid4().hex[:12]}"
    client.create_vector_bucket(vectorBucketName=bucket)
    created = client.create_index(
        vectorBucketName=bucket,
        indexName="idx",
        dataType="float32",
        dimension=DIM,
        distanceMetric=metric,
        metadataConfiguration={"nonFilterableMetadataKeys": list(non_filterable)},
    )
    assert created["indexArn"].endswith(f"bucket/{bucket}/index/idx")
    return {"vectorBucketName": bucket, "indexName": "idx"}


MOVIES = {
    "a": (
        [1.0, 0.0, 0.0, 0.0],
        {"genre": "drama", "year": 2019, "tags": ["x", "y"], "new": False, "note": "n"},
    ),
    "b": ([0.9, 0.1, 0.0, 0.0], {"genre": "comedy", "year": 2020, "tags": ["y"], "new": True}),
    "c": ([0.0, 1.0, 0.0, 0.0], {"genre": "documentary", "year": 2021, "tags": ["documentary", "romance"]}),
    "d": ([0.0, 0.0, 1.0, 0.0], {"genre": "drama", "year": 2024}),
    "e": ([-1.0, 0.0, 0.0, 0.0], {"year": 1999, "new": True}),
}


@pytest.fixture
def movies(vectors: Any) -> dict[str, str]:
    where = make_index(vectors)
    vectors.put_vectors(
        **where,
        vectors=[{"key": k, "data": {"float32": v}, "metadata": m} for k, (v, m) in MOVIES.items()],
    )
    return where


def keys(
    client: Any, where: dict[str, str], flt: Any = None, *, top_k: int = 10, query: Any = None
) -> list[str]:
    args: dict[str, Any] = {**where, "topK": top_k, "queryVector": {"float32": query or [1.0, 0.0, 0.0, 0.0]}}
    if flt is not None:
        args["filter"] = flt
    return [v["key"] for v in client.query_vectors(**args)["vectors"]]


def test_cosine_distances_are_one_minus_cosine_nearest_first(vectors: Any, movies: dict[str, str]) -> None:
    found = vectors.query_vectors(
        **movies, topK=5, queryVector={"float32": [2.0, 0.0, 0.0, 0.0]}, returnDistance=True
    )
    assert found["distanceMetric"] == "cosine"
    assert [v["key"] for v in found["vectors"]] == ["a", "b", "c", "d", "e"]  # c, d tie at 1: by key
    b = np.array([0.9, 0.1, 0.0, 0.0])
    expected = [0.0, 1 - 0.9 / np.linalg.norm(b), 1.0, 1.0, 2.0]
    assert [v["distance"] for v in found["vectors"]] == pytest.approx(expected, abs=1e-6)
    assert all("metadata" not in v for v in found["vectors"])  # returnMetadata defaults to false


def test_euclidean_index_returns_l2_distances(vectors: Any) -> None:
    where = make_index(vectors, metric="euclidean")
    vectors.put_vectors(
        **where,
        vectors=[
            {"key": "near", "data": {"float32": [1.0, 1.0, 0.0, 0.0]}},
            {"key": "far", "data": {"float32": [4.0, 5.0, 0.0, 0.0]}},
        ],
    )
    found = vectors.query_vectors(
        **where, topK=2, queryVector={"float32": [1.0, 2.0, 0.0, 0.0]}, returnDistance=True
    )
    assert found["distanceMetric"] == "euclidean"
    assert [(v["key"], v["distance"]) for v in found["vectors"]] == [
        ("near", 1.0),
        ("far", pytest.approx(math.sqrt(18))),
    ]


def test_top_k_limits_the_results_and_is_bounded_by_the_service_limit(
    vectors: Any, movies: dict[str, str]
) -> None:
    assert keys(vectors, movies, top_k=2) == ["a", "b"]
    with pytest.raises(ClientError) as refused:
        keys(vectors, movies, top_k=MAX_TOP_K + 1)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_return_metadata_gives_every_key_including_non_filterable(
    vectors: Any, movies: dict[str, str]
) -> None:
    found = vectors.query_vectors(
        **movies, topK=1, queryVector={"float32": [1.0, 0, 0, 0]}, returnMetadata=True
    )
    (hit,) = found["vectors"]
    assert hit["metadata"] == MOVIES["a"][1]
    assert "distance" not in hit


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"genre": "drama"}, ["a", "d"]),  # a bare value is $eq
        ({"genre": {"$eq": "drama"}}, ["a", "d"]),
        ({"genre": {"$ne": "drama"}}, ["b", "c", "e"]),  # e has no genre: $ne matches it
        ({"year": {"$gt": 2020}}, ["c", "d"]),
        ({"year": {"$gte": 2020}}, ["b", "c", "d"]),
        ({"year": {"$lt": 2020}}, ["a", "e"]),
        ({"year": {"$lte": 2020}}, ["a", "b", "e"]),
        ({"year": {"$gte": 2020, "$lte": 2021}}, ["b", "c"]),  # two operators on one key: AND
        ({"genre": {"$in": ["comedy", "documentary"]}}, ["b", "c"]),
        ({"genre": {"$nin": ["comedy", "documentary"]}}, ["a", "d", "e"]),
        ({"genre": {"$exists": True}}, ["a", "b", "c", "d"]),
        ({"genre": {"$exists": False}}, ["e"]),
        (
            {"tags": {"$eq": "documentary"}},
            ["c"],
        ),  # $eq on a list matches any element (the documented example)
        ({"tags": {"$in": ["x", "romance"]}}, ["a", "c"]),
        ({"tags": {"$ne": "y"}}, ["c", "d", "e"]),
        ({"new": True}, ["b", "e"]),  # booleans are not numbers: year 1 would not match
        ({"$and": [{"genre": "drama"}, {"year": {"$gte": 2020}}]}, ["d"]),
        ({"$or": [{"genre": "comedy"}, {"year": {"$lt": 2000}}]}, ["b", "e"]),
        ({"genre": "drama", "year": 2019}, ["a"]),  # several keys: AND
        ({"$or": [{"$and": [{"genre": "drama"}, {"new": False}]}, {"year": 2021}]}, ["a", "c"]),
    ],
)
def test_filters_select_as_documented(
    vectors: Any, movies: dict[str, str], flt: Any, expected: list[str]
) -> None:
    assert sorted(keys(vectors, movies, flt)) == expected


def test_a_filter_is_applied_before_top_k(vectors: Any, movies: dict[str, str]) -> None:
    """Results are the nearest matching vectors, not the nearest vectors then filtered."""
    assert keys(vectors, movies, {"genre": "drama"}, top_k=1, query=[0.0, 0.0, 1.0, 0.0]) == ["d"]
    assert keys(vectors, movies, {"year": 1999}, top_k=1) == ["e"]


@pytest.mark.parametrize(
    "flt",
    [
        {"note": "n"},  # a non-filterable key
        {"genre": {"$regex": "dr.*"}},
        {"$not": [{"genre": "drama"}]},
        {"year": {"$gt": "2020"}},
        {"genre": {"$in": []}},
        {"genre": {"$in": "drama"}},
        {"genre": {"$exists": "yes"}},
        {"$and": []},
        {"genre": ["drama"]},
        {},
    ],
    ids=[
        "non-filterable",
        "unknown-op",
        "unknown-logical",
        "gt-string",
        "in-empty",
        "in-scalar",
        "exists-text",
        "and-empty",
        "bare-list",
        "empty",
    ],
)
def test_an_invalid_filter_is_a_400(vectors: Any, movies: dict[str, str], flt: Any) -> None:
    with pytest.raises(ClientError) as refused:
        keys(vectors, movies, flt)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_query_vector_of_the_wrong_dimension_is_a_400(vectors: Any, movies: dict[str, str]) -> None:
    with pytest.raises(ClientError) as refused:
        keys(vectors, movies, query=[1.0, 0.0])
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_a_missing_index_is_not_found(vectors: Any) -> None:
    with pytest.raises(ClientError) as missing:
        vectors.query_vectors(
            vectorBucketName="vb-none-here", indexName="idx", topK=1, queryVector={"float32": [1.0] * DIM}
        )
    assert missing.value.response["Error"]["Code"] == "NotFoundException"


def test_the_index_arn_names_the_index_too(vectors: Any, movies: dict[str, str]) -> None:
    arn = vectors.get_index(**movies)["index"]["indexArn"]
    assert keys(vectors, {"indexArn": arn}, top_k=1) == ["a"]


def test_get_index_shows_the_non_filterable_keys(vectors: Any, movies: dict[str, str]) -> None:
    index = vectors.get_index(**movies)["index"]
    assert index["metadataConfiguration"] == {"nonFilterableMetadataKeys": ["note"]}


@pytest.mark.parametrize(
    ("vector", "meta"),
    [
        ([0.0, 0.0, 0.0, 0.0], {}),  # zero vector under cosine
        ([1.0, 0.0, 0.0, 0.0], {"big": "x" * 2100}),  # over 2 KB filterable
        ([1.0, 0.0, 0.0, 0.0], {f"k{i}": i for i in range(51)}),  # over 50 keys
    ],
    ids=["zero", "filterable-too-large", "too-many-keys"],
)
def test_put_vectors_refuses_what_the_service_refuses(
    vectors: Any, vector: list[float], meta: dict[str, Any]
) -> None:
    where = make_index(vectors)
    with pytest.raises(ClientError) as refused:
        vectors.put_vectors(**where, vectors=[{"key": "k", "data": {"float32": vector}, "metadata": meta}])
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_large_non_filterable_metadata_is_accepted(vectors: Any) -> None:
    where = make_index(vectors)
    vectors.put_vectors(
        **where, vectors=[{"key": "k", "data": {"float32": [1.0, 0, 0, 0]}, "metadata": {"note": "x" * 5000}}]
    )
    assert keys(vectors, where) == ["k"]


def test_install_is_idempotent(vectors: Any, movies: dict[str, str]) -> None:
    s3vectors_query.install()
    assert keys(vectors, movies, top_k=1) == ["a"]


def test_filter_helpers_agree_with_the_server_on_nested_lists() -> None:
    check_filter({"$or": [{"a": {"$in": [1, "x", True]}}, {"b": {"$exists": True}}]})
    assert matches({"a": {"$in": [1]}}, {"a": [3, 1.0]})
    assert not matches({"a": {"$in": [1]}}, {"a": [True]})
    assert matches({"$or": [{"a": 1}, {"b": {"$exists": True}}]}, {"b": None})
