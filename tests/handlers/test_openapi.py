"""The query handler serves exactly the routes of docs/openapi.yaml, with answers that match its schemas
(on both index backends: the S3 Vectors answers have null counts, checked as OpenAPI 3.0's `nullable`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from .conftest import LocalAws, make_image

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
OPERATIONS = [(method.upper(), path) for path, item in SPEC["paths"].items() for method in item]
JSON_OPERATIONS = [
    (method, path)
    for method, path in OPERATIONS
    if "application/json"
    in next(iter(SPEC["paths"][path][method.lower()]["responses"].values())).get("content", {})
    or "$ref" in next(iter(SPEC["paths"][path][method.lower()]["responses"].values()))
]


def check(body: object, schema: dict) -> None:
    """Validate an answer against an OpenAPI 3.0 schema (jsonschema would ignore `nullable`)."""
    OAS30Validator(schema).validate(body)


def _example_path(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "set/0.png", path)


def _schema(status: str, method: str, path: str) -> dict:
    response = SPEC["paths"][path][method.lower()]["responses"][status]
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].split("/")[-1]]
    schema = dict(response["content"]["application/json"]["schema"])
    return {**schema, "components": SPEC["components"]}


def test_the_openapi_document_is_valid() -> None:
    validate(SPEC)


def test_every_handler_route_is_documented_and_every_documented_operation_is_served(aws: LocalAws) -> None:
    routes = aws.query.app._static_routes + aws.query.app._dynamic_routes
    served = {(r.method, r.path) for r in routes}
    for method, rule in served:
        compiled = next(r.rule for r in routes if (r.method, r.path) == (method, rule))
        assert any(m == method and compiled.match(_example_path(p)) for m, p in OPERATIONS), (method, rule)
    for method, path in OPERATIONS:
        assert any(r.method == method and r.rule.match(_example_path(path)) for r in routes), (method, path)


def test_only_the_page_is_public_and_not_json() -> None:
    assert [(m, p) for m, p in OPERATIONS if (m, p) not in JSON_OPERATIONS] == [("GET", "/")]
    assert SPEC["paths"]["/"]["get"]["security"] == []


@pytest.mark.parametrize(("method", "path"), JSON_OPERATIONS)
def test_answers_match_the_documented_schema(aws: LocalAws, method: str, path: str) -> None:
    aws.put("set/0.png", make_image(500))
    aws.put("set/1.png", make_image(501))
    aws.ingest_queue()
    sample = {"/search": "apigw_rest_search_binary.json", "/health": "apigw_rest_health.json"}.get(
        path, "apigw_rest_similar.json"
    )
    kwargs: dict = {"path": _example_path(path)}
    if path == "/search":
        kwargs.update(body=make_image(500), content_type="image/png")
    if "{" in path:
        kwargs["key"] = "set/0.png"
    status, body = aws.api(sample, **kwargs)
    documented = SPEC["paths"][path][method.lower()]["responses"]
    assert str(status) in documented
    check(body, _schema(str(status), method, path))
    if "parameters" in SPEC["paths"][path][method.lower()]:  # and an error answer matches the error schema
        status, body = aws.api(sample, query={"k": "-3"}, **kwargs)
        assert status == 400
        check(body, _schema("400", method, path))


def _response_schema(response: dict) -> dict:
    if "$ref" in response:
        response = SPEC["components"]["responses"][response["$ref"].split("/")[-1]]
    return dict(response["content"]["application/json"]["schema"])


def test_every_error_status_is_documented_in_the_error_shape() -> None:
    for method, path in OPERATIONS:
        for status, response in SPEC["paths"][path][method.lower()]["responses"].items():
            if int(status) >= 400:
                assert _response_schema(response) == {"$ref": "#/components/schemas/Error"}, (
                    method,
                    path,
                    status,
                )


def test_every_status_api_gateway_itself_can_answer_is_documented() -> None:
    """The Gateway Responses (stacks/wiring.py) of fixed status: on every operation (403 where a key is needed)."""
    from stacks.wiring import GATEWAY_RESPONSES

    for method, path in OPERATIONS:
        operation = SPEC["paths"][path][method.lower()]
        needs_key = operation.get("security", SPEC["security"]) != []
        for response in GATEWAY_RESPONSES:
            if response.status is None or response.type in (
                "MISSING_AUTHENTICATION_TOKEN",
                "BAD_REQUEST_BODY",
            ):
                continue  # the family defaults; an unknown route is no operation; no request models
            if response.type == "INVALID_API_KEY" and not needs_key:
                continue
            assert str(response.status) in operation["responses"], (method, path, response.type)
        for status in ("400", "408", "414", "431"):  # what the HTTP layer refuses (imgsearch/local/api.py)
            assert status in operation["responses"], (method, path, status)


def test_gateway_response_bodies_match_the_error_schema() -> None:
    import json

    from stacks.wiring import GATEWAY_RESPONSES

    schema = {**SPEC["components"]["schemas"]["Error"], "components": SPEC["components"]}
    for response in GATEWAY_RESPONSES:
        check(json.loads(response.body), schema)
        assert "$" not in response.message and "#" not in response.message  # a mapping template's syntax


def test_documented_parameter_bounds_are_the_ones_the_code_enforces() -> None:
    from imgsearch.options import (
        MAX_EXPAND,
        MAX_OFFSET,
        MAX_PREFIX_CHARS,
        MAX_TAG_CHARS,
        MAX_TEXT_CHARS,
        MIN_SCORE_RANGE,
        QUERY_PARAMETERS,
    )
    from imgsearch.search import MAX_K, METRICS

    parameters = SPEC["components"]["parameters"]
    assert (parameters["k"]["schema"]["minimum"], parameters["k"]["schema"]["maximum"]) == (1, MAX_K)
    assert (parameters["offset"]["schema"]["minimum"], parameters["offset"]["schema"]["maximum"]) == (
        0,
        MAX_OFFSET,
    )
    score = parameters["min_score"]["schema"]
    assert (score["minimum"], score["maximum"]) == MIN_SCORE_RANGE
    assert parameters["metric"]["schema"]["enum"] == list(METRICS)
    assert parameters["prefix"]["schema"]["maxLength"] == MAX_PREFIX_CHARS
    assert parameters["tag"]["schema"]["maxLength"] == MAX_TAG_CHARS
    assert (parameters["expand"]["schema"]["minimum"], parameters["expand"]["schema"]["maximum"]) == (0, MAX_EXPAND)
    words = SPEC["components"]["schemas"]["Words"]
    assert parameters["q"]["schema"] == {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
    assert (words["minLength"], words["maxLength"]) == (1, MAX_TEXT_CHARS)
    (required_q,) = [p for p in SPEC["paths"]["/search"]["get"]["parameters"] if p.get("name") == "q"]
    assert required_q["required"] and required_q["schema"] == parameters["q"]["schema"]
    for path in ("/search", "/similar/{key}"):
        documented = {
            parameters[p["$ref"].split("/")[-1]]["name"]
            for p in SPEC["paths"][path][next(iter(SPEC["paths"][path]))]["parameters"]
            if "$ref" in p
        }
        assert documented == set(QUERY_PARAMETERS)


def test_the_json_body_forbids_other_fields() -> None:
    body = SPEC["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert [(v["required"], v["additionalProperties"], sorted(v["properties"])) for v in body["oneOf"]] == [
        (["image"], False, ["image", "text"]),
        (["key"], False, ["key", "text"]),
        (["text"], False, ["text"]),
    ]
