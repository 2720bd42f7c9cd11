"""Query handler: routes, answers and the error contract (4xx for bad input, never 5xx).

Each test runs on both index backends (segments, s3vectors) unless marked; what S3 Vectors does instead
(no hamming, offset + k at most 100, null counts, no "empty" index) has a test of its own below.
"""

from __future__ import annotations

import base64
import json
import urllib.request

import pytest

from .conftest import THUMBNAILS_BUCKET, LocalAws, make_image, s3vectors_only, segments_only


@pytest.fixture
def indexed(aws: LocalAws) -> LocalAws:
    for i in range(4):
        aws.put(f"set/{i}.png", make_image(100 + i))
    assert aws.ingest_queue() == {"batchItemFailures": []}
    return aws


def test_search_by_raw_image_body_answers_ranked_results_with_presigned_urls(indexed: LocalAws) -> None:
    image = make_image(102)
    status, body = indexed.api(
        "apigw_rest_search_binary.json", body=image, content_type="image/png", query={"k": "2"}
    )
    assert status == 200
    assert set(body) == {
        "results", "metric", "k", "offset", "has_more", "next_offset", "expires_in", "index_version", "took_ms"
    }
    assert (body["metric"], body["k"], len(body["results"])) == ("hybrid", 2, 2)
    assert body["results"][0]["key"] == "set/2.png"
    assert body["results"][0]["score"] >= body["results"][1]["score"]
    with urllib.request.urlopen(body["results"][0]["url"]) as fetched:  # moto on 127.0.0.1
        assert fetched.read() == image


def test_search_by_json_base64_image_and_lowercase_content_type(indexed: LocalAws) -> None:
    payload = json.dumps({"image": base64.b64encode(make_image(101)).decode()})
    event_query = {"k": "1", "metric": "cosine"}
    status, body = indexed.api(
        "apigw_rest_search_json.json",
        body=payload,
        query=event_query,
        content_type="application/json; charset=utf-8",
        content_type_header="content-type",
    )
    assert status == 200 and body["results"][0]["key"] == "set/1.png" and body["metric"] == "cosine"


def test_search_by_key_in_json_and_similar_route(indexed: LocalAws) -> None:
    status, body = indexed.api(
        "apigw_rest_search_json.json", body=json.dumps({"key": "set/3.png"}), query={"k": "2"}
    )
    assert status == 200 and body["results"][0]["key"] == "set/3.png"
    status, body = indexed.api(
        "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "4"}
    )
    assert status == 200 and next(h["key"] for h in body["results"]) == "set/0.png"
    assert len(body["results"]) == 4


def test_prefix_offset_and_min_score_filter_results(indexed: LocalAws) -> None:
    indexed.put("other/x.png", make_image(200))
    indexed.ingest_queue()
    image = make_image(200)
    status, body = indexed.api(
        "apigw_rest_search_binary.json",
        body=image,
        content_type="image/png",
        query={"k": "10", "prefix": "set/"},
    )
    assert status == 200 and {h["key"] for h in body["results"]} == {f"set/{i}.png" for i in range(4)}
    status, body = indexed.api(
        "apigw_rest_search_binary.json", body=image, content_type="image/png", query={"k": "1", "offset": "1"}
    )
    assert status == 200 and body["results"][0]["key"] != "other/x.png"
    status, body = indexed.api(
        "apigw_rest_search_binary.json",
        body=image,
        content_type="image/png",
        query={"k": "10", "min_score": "0.999"},
    )
    assert [h["key"] for h in body["results"]] == ["other/x.png"]


@segments_only("counts are null")
def test_health_reports_counts_model_and_encoder(indexed: LocalAws) -> None:
    status, body = indexed.api("apigw_rest_health.json")
    assert status == 200
    assert (body["status"], body["count"], body["entries"], body["segments"]) == ("ok", 4, 4, 1)
    assert body["model"]["dim"] == 1280 and body["encoder"].startswith("lsh-")
    assert body["backend"] == "segments"


@s3vectors_only
def test_health_on_s3vectors_reports_the_vector_index_with_null_counts(indexed: LocalAws) -> None:
    status, body = indexed.api("apigw_rest_health.json")
    assert status == 200
    assert (body["status"], body["backend"], body["count"], body["entries"], body["rejected"]) == (
        "ok",
        "s3vectors",
        None,
        None,
        None,
    )
    assert body["vector_index"].startswith("s3vectors://")
    assert body["dimension"] == body["model"]["dim"] == 1280
    assert (body["segments"], body["index_version"], body["distance_metric"]) == (0, 0, "cosine")
    assert indexed.count() == 4  # listing every vector: what /health leaves out (O(N) requests)


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"body": b"GIF89a not really", "content_type": "image/gif"}, 400, "not_an_image"),
        ({"body": b"", "content_type": "image/png"}, 400, "empty"),
        ({"body": b"hello", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"body": "{not json", "content_type": "application/json"}, 400, "bad_parameter"),
        ({"body": json.dumps({"image": "%%%"}), "content_type": "application/json"}, 400, "bad_parameter"),
        (
            {"body": json.dumps({"key": "a", "image": "b"}), "content_type": "application/json"},
            400,
            "bad_parameter",
        ),
        (
            {"body": json.dumps({"key": "nope.png"}), "content_type": "application/json"},
            404,
            "key_not_indexed",
        ),
        ({"query": {"k": "zero"}}, 400, "bad_parameter"),
        ({"query": {"k": "0"}}, 400, "bad_parameter"),
        ({"query": {"k": "5000"}}, 400, "bad_parameter"),
        ({"query": {"metric": "euclid"}}, 400, "bad_parameter"),
        ({"query": {"offset": "-1"}}, 400, "bad_parameter"),
        ({"query": {"min_score": "high"}}, 400, "bad_parameter"),
        ({"query": {"colour": "red"}}, 400, "bad_parameter"),
        # strict parsing: what int() and float() would let through
        ({"query": {"k": ""}}, 400, "bad_parameter"),  # k= (and a bare ?k, which arrives as "")
        ({"query": {"k": " 5"}}, 400, "bad_parameter"),  # k=%205
        ({"query": {"k": "+5"}}, 400, "bad_parameter"),  # k=%2B5
        ({"query": {"k": "١٢"}}, 400, "bad_parameter"),  # Arabic-Indic digits
        ({"query": {"k": "1_0"}}, 400, "bad_parameter"),
        ({"query": {"metric": ""}}, 400, "bad_parameter"),
        ({"query": {"offset": "1e20"}}, 400, "bad_parameter"),
        ({"query": {"offset": "100000000000000000000"}}, 400, "bad_parameter"),
        ({"query": {"offset": "10001"}}, 400, "bad_parameter"),  # over MAX_OFFSET
        ({"query": {"offset": ""}}, 400, "bad_parameter"),
        ({"query": {"min_score": "nan"}}, 400, "bad_parameter"),
        ({"query": {"min_score": "inf"}}, 400, "bad_parameter"),
        ({"query": {"min_score": "-inf"}}, 400, "bad_parameter"),
        ({"query": {"min_score": "1e309"}}, 400, "bad_parameter"),
        ({"query": {"min_score": ""}}, 400, "bad_parameter"),
        ({"query": {"min_score": "1.5"}}, 400, "bad_parameter"),  # scores are in [-1, 1]
        ({"query": {"min_score": "1_0"}}, 400, "bad_parameter"),
        # the JSON body: additionalProperties false, bounded nesting, text keys
        (
            {"body": json.dumps({"key": "set/0.png", "k": 3}), "content_type": "application/json"},
            400,
            "bad_parameter",
        ),
        (
            {"body": json.dumps({"image": "aGk=", "extra": 1}), "content_type": "application/json"},
            400,
            "bad_parameter",
        ),
        ({"body": json.dumps({}), "content_type": "application/json"}, 400, "bad_parameter"),
        (
            {"body": json.dumps([{"key": "set/0.png"}]), "content_type": "application/json"},
            400,
            "bad_parameter",
        ),
        ({"body": "[" * 100_000 + "]" * 100_000, "content_type": "application/json"}, 400, "bad_parameter"),
        (
            {"body": '{"key": ' * 50_000 + "1" + "}" * 50_000, "content_type": "application/json"},
            400,
            "bad_parameter",
        ),
        ({"body": '{"key": ' + "1" * 5000 + "}", "content_type": "application/json"}, 400, "bad_parameter"),
        ({"body": '{"key": "\\ud800"}', "content_type": "application/json"}, 400, "bad_parameter"),
        ({"body": json.dumps({"key": ""}), "content_type": "application/json"}, 400, "bad_parameter"),
    ],
)
def test_bad_input_is_a_4xx_with_an_error_body(
    indexed: LocalAws, kwargs: dict, status: int, code: str
) -> None:
    kwargs.setdefault("body", make_image(1))
    kwargs.setdefault("content_type", "image/png")
    got, body = indexed.api("apigw_rest_search_binary.json", **kwargs)
    assert (got, body["error"]["code"]) == (status, code)
    assert body["error"]["message"]


DEEP_PAGES = [{"k": "1000"}, {"offset": "10000"}]  # past S3 Vectors' top-K limit (offset + k <= 100)


@pytest.mark.parametrize(
    "query",
    [
        {"k": "007"},
        {"k": "100"},
        {"offset": "90"},
        {"min_score": "-1"},
        {"min_score": "1e-3"},
        {"prefix": ""},
    ],
)
def test_values_at_the_documented_bounds_are_accepted(indexed: LocalAws, query: dict[str, str]) -> None:
    status, body = indexed.api(
        "apigw_rest_search_binary.json", body=make_image(102), content_type="image/png", query=query
    )
    assert status == 200, body
    assert body["k"] == (int(query["k"]) if "k" in query else 10)


@segments_only("offset + k <= 100")
@pytest.mark.parametrize("query", DEEP_PAGES)
def test_deep_pages_at_the_documented_bounds_are_accepted(indexed: LocalAws, query: dict[str, str]) -> None:
    status, body = indexed.api(
        "apigw_rest_search_binary.json", body=make_image(102), content_type="image/png", query=query
    )
    assert status == 200, body
    assert body["k"] == (int(query["k"]) if "k" in query else 10)


@s3vectors_only
@pytest.mark.parametrize("query", DEEP_PAGES)
def test_deep_pages_past_the_top_k_limit_are_a_400_on_s3vectors(
    indexed: LocalAws, query: dict[str, str]
) -> None:
    status, body = indexed.api(
        "apigw_rest_search_binary.json", body=make_image(102), content_type="image/png", query=query
    )
    assert (status, body["error"]["code"]) == (400, "bad_parameter")
    assert "offset + k <= 100" in body["error"]["message"]


@segments_only("no binary codes")
def test_hamming_ranks_by_the_binary_codes(indexed: LocalAws) -> None:
    status, body = indexed.api(
        "apigw_rest_search_binary.json",
        body=make_image(102),
        content_type="image/png",
        query={"metric": "hamming"},
    )
    assert status == 200 and body["metric"] == "hamming" and body["results"][0]["key"] == "set/2.png"


@s3vectors_only
@pytest.mark.parametrize("route", ["search", "similar"])
def test_hamming_on_s3vectors_is_a_400_saying_it_keeps_no_binary_codes(indexed: LocalAws, route: str) -> None:
    if route == "search":
        status, body = indexed.api(
            "apigw_rest_search_binary.json",
            body=make_image(102),
            content_type="image/png",
            query={"metric": "hamming"},
        )
    else:
        status, body = indexed.api(
            "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"metric": "hamming"}
        )
    assert (status, body["error"]["code"]) == (400, "bad_parameter")
    assert "keeps no binary codes" in body["error"]["message"] and "metric=cosine" in body["error"]["message"]


@s3vectors_only
def test_hybrid_on_s3vectors_ranks_by_cosine(indexed: LocalAws) -> None:
    answers = [
        indexed.api(
            "apigw_rest_search_binary.json",
            body=make_image(102),
            content_type="image/png",
            query={"metric": m},
        )[1]
        for m in ("hybrid", "cosine")
    ]
    hybrid, cosine = ([(h["key"], h["score"]) for h in a["results"]] for a in answers)
    assert hybrid == cosine and answers[0]["metric"] == "hybrid"


def test_a_query_parameter_given_twice_is_400(indexed: LocalAws) -> None:
    from .conftest import FakeContext, load_event

    event = load_event("apigw_rest_similar.json")
    event["queryStringParameters"] = {"k": "2"}
    event["multiValueQueryStringParameters"] = {"k": ["1", "2"]}
    event.update(path="/similar/set/0.png", pathParameters={"key": "set/0.png"})
    response = indexed.query.handler(event, FakeContext())
    body = json.loads(response["body"])
    assert (response["statusCode"], body["error"]["code"]) == (400, "bad_parameter")
    assert "once" in body["error"]["message"]


def test_bad_parameter_messages_name_the_allowed_values(indexed: LocalAws) -> None:
    for query, named in [
        ({"metric": ""}, "hybrid, cosine, hamming"),
        ({"k": "+5"}, "from 1 to 1000"),
        ({"k": "0"}, "from 1 to 1000"),  # refused by the typed parameter first: the core's message all the same
        ({"metric": "euclid"}, "hybrid, cosine, hamming"),
        ({"expand": "51"}, "from 0 to 50"),
        ({"offset": "1e20"}, "from 0 to 10000"),
        ({"min_score": "nan"}, "from -1 to 1"),
        ({"colour": "red"}, "k, metric, min_score, prefix, offset"),
    ]:
        status, body = indexed.api(
            "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query=query
        )
        assert status == 400 and named in body["error"]["message"], (query, body)


def test_search_options_validate_themselves_whoever_builds_them() -> None:
    from imgsearch.errors import BadParameter
    from imgsearch.options import MAX_OFFSET, SearchOptions

    assert SearchOptions(k=5, metric="cosine", min_score=0.5, prefix="a/", offset=MAX_OFFSET, exact=True)
    for bad in [
        {"k": 0},
        {"k": True},
        {"k": 2.0},
        {"metric": "euclid"},
        {"min_score": float("nan")},
        {"min_score": float("inf")},
        {"min_score": -1.01},
        {"offset": -1},
        {"offset": MAX_OFFSET + 1},
        {"exact": "yes"},
    ]:
        with pytest.raises(BadParameter):
            SearchOptions(**bad)
    parsed = SearchOptions.from_query(
        {"k": ["3"], "metric": "hamming", "min_score": "-0.5", "prefix": "set/", "offset": "2"},
        default_k=10,
        default_metric="hybrid",
    )
    assert parsed == SearchOptions(k=3, metric="hamming", min_score=-0.5, prefix="set/", offset=2)
    assert SearchOptions.from_query(None, default_k=7, default_metric="cosine") == SearchOptions(
        k=7, metric="cosine"
    )
    # expand not given: the backend's default (re-ranking on segments); expand=0 turns it off
    assert SearchOptions.from_query(None, default_k=7, default_metric="cosine").expand is None
    assert SearchOptions.from_query({"expand": "0"}, default_k=7, default_metric="cosine").expand == 0


def test_too_large_image_is_413(indexed: LocalAws, monkeypatch) -> None:
    monkeypatch.setattr(indexed.query, "MAX_QUERY_BYTES", 1000)
    image = make_image(1, size=256)
    status, body = indexed.api("apigw_rest_search_binary.json", body=image, content_type="image/png")
    assert (status, body["error"]["code"]) == (413, "too_large")
    payload = json.dumps({"image": base64.b64encode(image).decode()})
    status, body = indexed.api("apigw_rest_search_json.json", body=payload)
    assert (status, body["error"]["code"]) == (413, "too_large")


def test_unknown_route_is_404_in_the_error_shape(indexed: LocalAws) -> None:
    status, body = indexed.api("apigw_rest_health.json", path="/nothing-here")
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_the_search_page_is_served_at_the_root_as_html(aws: LocalAws) -> None:
    from .conftest import FakeContext, load_event

    event = load_event("apigw_rest_health.json")
    event.update(resource="/", path="/")
    event["headers"].pop("x-api-key", None)
    event["requestContext"].update(resourcePath="/", path="/dev/")
    response = aws.query.handler(event, FakeContext())
    assert response["statusCode"] == 200
    content_type = (response.get("headers") or {}).get("Content-Type") or response["multiValueHeaders"][
        "Content-Type"
    ][0]
    assert content_type.startswith("text/html")
    assert response["body"].lstrip().lower().startswith("<!doctype html>")
    assert "x-api-key" in response["body"]


@segments_only("an empty vector index answers 200")
def test_search_before_anything_is_indexed_is_503_not_ready(aws: LocalAws) -> None:
    status, body = aws.api("apigw_rest_search_binary.json", body=make_image(1), content_type="image/png")
    assert (status, body["error"]["code"]) == (503, "index_not_ready")


@s3vectors_only
def test_search_on_an_empty_vector_index_answers_no_results(aws: LocalAws) -> None:
    status, body = aws.api("apigw_rest_search_binary.json", body=make_image(1), content_type="image/png")
    assert (status, body["results"], body["index_version"]) == (200, [], 0)


@s3vectors_only
def test_a_missing_vector_index_is_health_missing_and_search_503(aws: LocalAws, monkeypatch) -> None:
    from imgsearch.s3vectors import S3VectorsBackend, VectorIndexRef

    real = aws.query.backend
    gone = VectorIndexRef(real.where.bucket, "no-such-index")
    monkeypatch.setattr(aws.query, "backend", S3VectorsBackend(gone, client=real.client, bucket=real.bucket))
    status, body = aws.api("apigw_rest_health.json")
    assert (status, body["status"], body["backend"]) == (200, "missing", "s3vectors")
    assert "no S3 Vectors index" in body["message"]
    status, body = aws.api("apigw_rest_search_binary.json", body=make_image(1), content_type="image/png")
    assert (status, body["error"]["code"]) == (503, "index_not_ready")


def test_unexpected_error_is_500_without_internals(indexed: LocalAws, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(indexed.query.backend, "search", boom)
    status, body = indexed.api("apigw_rest_search_binary.json", body=make_image(1), content_type="image/png")
    assert (status, body["error"]["code"]) == (500, "internal")
    assert "secret" not in body["error"]["message"]


def test_hits_carry_tags_and_a_tag_filter_keeps_only_images_with_that_tag(indexed: LocalAws) -> None:
    status, body = indexed.api("apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "10"})
    assert status == 200
    tagged = [hit for hit in body["results"] if hit["tags"]]
    assert tagged, "the indexed images carry their top concepts"
    name = tagged[0]["tags"][0][0]
    status, body = indexed.api(
        "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "10", "tag": name}
    )
    assert status == 200 and body["results"]
    assert all(name in [t[0] for t in hit["tags"]] for hit in body["results"])
    status, body = indexed.api(
        "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"tag": "no such class"}
    )
    assert (status, body["error"]["code"]) == (400, "bad_parameter") and "unknown tag" in body["error"]["message"]


# --- words: GET /search?q=, JSON {"text"}, image or key + words ----------------------------------------


def unique_tags(aws: LocalAws) -> dict[str, str]:
    """key → the top tag of that indexed image that no other indexed image carries (segments keep tags)."""
    status, body = aws.api("apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "10"})
    assert status == 200
    tags = {hit["key"]: [t[0] for t in hit["tags"]] for hit in body["results"]}
    unique = {}
    for key, names in tags.items():
        others = {n for other, ns in tags.items() if other != key for n in ns}
        mine = [n for n in names if n not in others]
        if mine:
            unique[key] = mine[0]
    return unique


@segments_only("words alone are re-ranked by stored concepts on segments; S3 Vectors ranks by their direction (below)")
def test_words_alone_find_the_image_tagged_with_them(indexed: LocalAws) -> None:
    unique = unique_tags(indexed)
    assert len(unique) >= 2, unique
    for key, name in unique.items():
        status, body = indexed.api("apigw_rest_similar.json", path="/search", query={"q": name, "k": "4"})
        assert status == 200, body
        assert body["results"][0]["key"] == key, (name, body["results"])
        assert body["text"]["query"] == name
        assert body["text"]["matched"][0][0] == name  # the class named by the words comes first
        scores = [hit["score"] for hit in body["results"]]
        assert scores == sorted(scores, reverse=True) and 0.0 <= scores[-1] <= scores[0] <= 1.0
        # the same words as a JSON body: the same ranking
        status, posted = indexed.api("apigw_rest_search_json.json", body=json.dumps({"text": name}), query={"k": "4"})
        assert status == 200 and [h["key"] for h in posted["results"]] == [h["key"] for h in body["results"]]


def test_words_on_either_backend_answer_ranked_images_and_what_the_words_matched(indexed: LocalAws) -> None:
    status, body = indexed.api("apigw_rest_similar.json", path="/search", query={"q": "a golden retriever", "k": "3"})
    assert status == 200, body
    assert len(body["results"]) == 3 and all(h["key"].startswith("set/") for h in body["results"])
    assert body["text"]["matched"][0][0] == "golden retriever"


def test_words_that_match_no_concept_are_a_400_naming_them(indexed: LocalAws) -> None:
    status, body = indexed.api("apigw_rest_similar.json", path="/search", query={"q": "xyzzy"})
    assert (status, body["error"]["code"]) == (400, "no_concept_match")
    assert "xyzzy" in body["error"]["message"]


@pytest.mark.parametrize(
    ("query", "body", "needle"),
    [
        ({}, None, "needs the words"),
        ({"q": "   "}, None, "non-empty"),
        ({"q": "x" * 501}, None, "limit is 500"),
        ({"q": "dog"}, json.dumps({"text": "cat"}), "once"),
        ({}, json.dumps({"text": ""}), "non-empty"),
        ({}, json.dumps({"text": 5}), "non-empty string"),
        ({}, json.dumps({"image": "AAAA", "key": "set/0.png", "text": "dog"}), "not both"),
        ({}, json.dumps({"text": "dog", "words": "cat"}), "'words'"),
    ],
)
def test_bad_words_are_a_400_saying_what_to_send(
    indexed: LocalAws, query: dict[str, str], body: str | None, needle: str
) -> None:
    if body is None:
        status, answer = indexed.api("apigw_rest_similar.json", path="/search", query=query)
    else:
        status, answer = indexed.api("apigw_rest_search_json.json", body=body, query=query)
    assert (status, answer["error"]["code"]) == (400, "bad_parameter"), answer
    assert needle in answer["error"]["message"]


def gap(results: list[dict[str, object]], first: str, second: str) -> float:
    scores = {hit["key"]: hit["score"] for hit in results}
    return float(scores[first]) - float(scores[second])  # type: ignore[arg-type]


@segments_only("the named image is picked by its stored tag (the rule itself is the same on S3 Vectors: below)")
def test_an_image_or_a_key_with_words_pulls_the_ranking_toward_the_named_image(indexed: LocalAws) -> None:
    """Synthetic images barely differ along any concept, so the query image stays first here (on photos the
    named class takes the top 10: docs/TEXT-SEARCH.md); the words must still close the gap to the image they
    name, and every way of asking must give the same answer."""
    unique = unique_tags(indexed)
    target, name = next((k, n) for k, n in unique.items() if k != "set/0.png")
    status, alone = indexed.api("apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "4"})
    assert status == 200 and alone["results"][0]["key"] == "set/0.png"
    by_key = [
        indexed.api("apigw_rest_search_json.json", body=json.dumps({"key": "set/0.png", "text": name}), query={"k": "4"}),
        indexed.api("apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "4", "q": name}),
    ]
    by_image = [
        indexed.api(
            "apigw_rest_search_binary.json", body=make_image(100), content_type="image/png", query={"k": "4", "q": name}
        ),
        indexed.api(
            "apigw_rest_search_json.json",
            body=json.dumps({"image": base64.b64encode(make_image(100)).decode(), "text": name}),
            query={"k": "4"},
        ),
    ]
    for group in (by_key, by_image):
        assert all(status == 200 for status, _ in group), group
        assert len({json.dumps([(h["key"], h["score"]) for h in body["results"]]) for _, body in group}) == 1
        body = group[0][1]
        assert body["text"]["query"] == name
        assert gap(body["results"], "set/0.png", target) < gap(alone["results"], "set/0.png", target)
        keys = [h["key"] for h in body["results"]]
        assert keys.index(target) <= [h["key"] for h in alone["results"]].index(target)


@s3vectors_only
def test_an_indexed_key_with_words_on_s3vectors_pulls_toward_the_words(indexed: LocalAws) -> None:
    """The words' best image gains on the one they rank last when that last one is the query."""
    status, words = indexed.api("apigw_rest_search_json.json", body=json.dumps({"text": "traffic light"}), query={"k": "4"})
    assert status == 200 and len(words["results"]) == 4
    best, last = words["results"][0]["key"], words["results"][-1]["key"]
    status, alone = indexed.api("apigw_rest_similar.json", path=f"/similar/{last}", key=last, query={"k": "4"})
    status, both = indexed.api(
        "apigw_rest_search_json.json", body=json.dumps({"key": last, "text": "traffic light"}), query={"k": "4"}
    )
    assert status == 200 and both["text"]["query"] == "traffic light"
    assert gap(both["results"], last, best) < gap(alone["results"], last, best)


def test_a_key_with_words_that_is_not_indexed_is_a_404(indexed: LocalAws) -> None:
    status, body = indexed.api(
        "apigw_rest_search_json.json", body=json.dumps({"key": "nope.png", "text": "dog"}), query={}
    )
    assert (status, body["error"]["code"]) == (404, "key_not_indexed")


# --- paging and URL expiry ----------------------------------------------------------------------------


def test_answers_say_whether_there_is_another_page_and_where_it_starts(indexed: LocalAws) -> None:
    def page(offset: int) -> dict[str, object]:
        status, body = indexed.api(
            "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "3", "offset": str(offset)}
        )
        assert status == 200, body
        return body

    first = page(0)
    assert (first["offset"], first["has_more"], first["next_offset"], len(first["results"])) == (0, True, 3, 3)
    second = page(first["next_offset"])  # type: ignore[arg-type]
    assert (second["has_more"], second["next_offset"], len(second["results"])) == (False, None, 1)  # 4 images
    keys = [h["key"] for h in first["results"] + second["results"]]  # type: ignore[operator]
    assert sorted(keys) == [f"set/{i}.png" for i in range(4)]  # the pages are one ranking, no overlap
    exact = page(1)
    assert exact["has_more"] is False and len(exact["results"]) == 3  # exactly the last 3: no further page


def test_a_request_may_ask_for_shorter_lived_urls_but_not_longer(indexed: LocalAws) -> None:
    status, body = indexed.api(
        "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "1", "expires": "60"}
    )
    assert status == 200 and body["expires_in"] == 60
    assert "X-Amz-Expires=60" in body["results"][0]["url"]
    status, body = indexed.api("apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "1"})
    assert body["expires_in"] == indexed.query.PRESIGN_SECONDS
    assert f"X-Amz-Expires={indexed.query.PRESIGN_SECONDS}" in body["results"][0]["url"]
    too_long = str(indexed.query.PRESIGN_SECONDS + 1)
    status, body = indexed.api(
        "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"expires": too_long}
    )
    assert (status, body["error"]["code"]) == (400, "bad_parameter")
    assert f"expires must be a whole number from 1 to {indexed.query.PRESIGN_SECONDS}" in body["error"]["message"]


# --- collapse: near-copies --------------------------------------------------------------------------------


@segments_only("S3 Vectors keeps no codes: collapse is a 400 there (below)")
def test_collapse_keeps_one_of_each_set_of_near_copies(indexed: LocalAws) -> None:
    indexed.put("set/copy-of-0.png", make_image(100))  # the same picture as set/0.png under another key
    assert indexed.ingest_queue() == {"batchItemFailures": []}
    query = {"k": "5", "metric": "cosine"}
    status, plain = indexed.api("apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query=query)
    assert status == 200 and {h["key"] for h in plain["results"][:2]} == {"set/0.png", "set/copy-of-0.png"}
    status, collapsed = indexed.api(
        "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={**query, "collapse": "true"}
    )
    assert status == 200
    keys = [h["key"] for h in collapsed["results"]]
    assert keys[0] in {"set/0.png", "set/copy-of-0.png"} and len({"set/0.png", "set/copy-of-0.png"} & set(keys)) == 1
    order = [h["key"] for h in plain["results"]]
    assert keys == [k for k in order if k in keys]  # what stays keeps its rank order


@s3vectors_only
def test_collapse_on_s3vectors_is_a_400_naming_the_backend(indexed: LocalAws) -> None:
    status, body = indexed.api(
        "apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"collapse": "true"}
    )
    assert (status, body["error"]["code"]) == (400, "bad_parameter") and "s3vectors" in body["error"]["message"]


# --- thumbnails ---------------------------------------------------------------------------------------------


def test_hits_carry_a_thumbnail_made_at_ingest(indexed: LocalAws) -> None:
    """Beside a segment index on S3; in THUMBNAIL_URI's bucket for S3 Vectors (the stack's thumbnails bucket)."""
    import io

    from PIL import Image

    status, body = indexed.api("apigw_rest_similar.json", path="/similar/set/0.png", key="set/0.png", query={"k": "4"})
    assert status == 200
    where = indexed.index_bucket if indexed.backend == "segments" else THUMBNAILS_BUCKET
    for hit in body["results"]:
        assert "/thumbs/" in hit["thumb_url"] and hit["etag"] in hit["thumb_url"] and where in hit["thumb_url"]
        with urllib.request.urlopen(hit["thumb_url"]) as fetched:  # moto on 127.0.0.1
            thumb = Image.open(io.BytesIO(fetched.read()))
        assert thumb.format == "JPEG" and max(thumb.size) <= 160


def test_without_a_thumbnail_location_an_index_with_no_store_of_its_own_keeps_none() -> None:
    from imgsearch import thumbnails
    from imgsearch.store import S3Store

    assert thumbnails.store("", None) is None  # S3 Vectors without THUMBNAIL_URI: hits carry no thumb_url
    kept = thumbnails.store("s3://thumbs-bucket/p", None)
    assert isinstance(kept, S3Store) and (kept.bucket, kept.prefix) == ("thumbs-bucket", "p")


def test_ping_says_up_and_ready_and_nothing_more(indexed: LocalAws) -> None:
    status, body = indexed.api("apigw_rest_health.json", path="/ping")
    assert (status, body) == (200, {"status": "ok", "ready": True})
