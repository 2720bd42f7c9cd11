"""docs/openapi.yaml is what scripts/openapi.py generates from the query handler's routes now, the handler serves
that contract at GET /openapi.json, it serves exactly the documented routes, and its answers match the documented
schemas (on both index backends: the S3 Vectors answers have null counts, OpenAPI 3.1's `type: [integer, "null"]`)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from .conftest import FakeContext, LocalAws, load_event, make_image

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "docs" / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
SEARCHES = [("post", "/search"), ("get", "/search"), ("get", "/similar/{key}")]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openapi_script", ROOT / "scripts" / "openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _script()
OPERATIONS = [(method.upper(), path) for path, item in SPEC["paths"].items() for method in item]
JSON_OPERATIONS = [
    (method, path)
    for method, path in OPERATIONS
    if "application/json"
    in next(iter(SPEC["paths"][path][method.lower()]["responses"].values())).get("content", {})
    or "$ref" in next(iter(SPEC["paths"][path][method.lower()]["responses"].values()))
]


def check(body: object, schema: dict) -> None:
    """Validate an answer against an OpenAPI 3.1 schema (JSON Schema 2020-12 with OpenAPI's formats)."""
    OAS31Validator(schema).validate(body)


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


def test_the_committed_document_is_what_the_script_generates_from_the_routes_now(aws: LocalAws) -> None:
    """Drift: a route, a parameter, a bound (imgsearch.options) or an answer changed without
    `.venv/bin/python scripts/openapi.py` being run, on either index backend."""
    assert SPEC_PATH.read_text(encoding="utf-8") == script.render(script.document(aws.query.contract())), (
        "docs/openapi.yaml is out of date: run .venv/bin/python scripts/openapi.py"
    )


def test_the_api_serves_its_contract_without_the_key_and_it_is_the_committed_documents_source(aws: LocalAws) -> None:
    event = load_event("apigw_rest_health.json")
    event.update(path="/openapi.json", queryStringParameters=None, multiValueQueryStringParameters=None)
    event["headers"].pop("x-api-key")
    response = aws.query.handler(event, FakeContext())
    served = json.loads(response["body"])
    assert response["statusCode"] == 200 and response["multiValueHeaders"]["Content-Type"] == ["application/json"]
    assert script.document(served) == SPEC  # the committed document is the served one with the answers added
    assert served["paths"]["/openapi.json"]["get"]["security"] == []
    for item in served["paths"].values():
        for operation in item.values():
            assert "422" not in operation["responses"]  # a refused parameter is a 400 bad_parameter
            for parameter in operation.get("parameters", []):
                assert "anyOf" not in parameter["schema"], parameter  # a query string has no null


def test_every_handler_route_is_documented_and_every_documented_operation_is_served(aws: LocalAws) -> None:
    routes = aws.query.app._static_routes + aws.query.app._dynamic_routes
    served = {(r.method, r.path) for r in routes}
    for method, rule in served:
        compiled = next(r.rule for r in routes if (r.method, r.path) == (method, rule))
        assert any(m == method and compiled.match(_example_path(p)) for m, p in OPERATIONS), (method, rule)
    for method, path in OPERATIONS:
        assert any(r.method == method and r.rule.match(_example_path(path)) for r in routes), (method, path)


def test_only_the_page_ping_and_the_contract_are_public_and_only_the_page_is_not_json() -> None:
    assert [(m, p) for m, p in OPERATIONS if (m, p) not in JSON_OPERATIONS] == [("GET", "/")]
    public = sorted((m, p) for m, p in OPERATIONS if SPEC["paths"][p][m.lower()].get("security") == [])
    assert public == [("GET", "/"), ("GET", "/openapi.json"), ("GET", "/ping")]
    assert SPEC["security"] == [{"apiKey": []}]
    assert SPEC["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}


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

    for method, path in SEARCHES:
        operation = SPEC["paths"][path][method]
        query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert set(query) == set(QUERY_PARAMETERS), (method, path)
        schema = {name: parameter["schema"] for name, parameter in query.items()}
        assert (schema["k"]["minimum"], schema["k"]["maximum"]) == (1, MAX_K)
        assert (schema["offset"]["minimum"], schema["offset"]["maximum"]) == (0, MAX_OFFSET)
        assert (schema["min_score"]["minimum"], schema["min_score"]["maximum"]) == MIN_SCORE_RANGE
        assert schema["metric"] == {"type": "string", "enum": list(METRICS)}
        assert schema["prefix"] == {"type": "string", "maxLength": MAX_PREFIX_CHARS}
        assert schema["tag"] == {"type": "string", "maxLength": MAX_TAG_CHARS}
        assert (schema["expand"]["minimum"], schema["expand"]["maximum"]) == (0, MAX_EXPAND)
        assert schema["collapse"] == {"type": "boolean"}
        assert schema["q"] == {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
        assert query["q"]["required"] is (method == "get" and path == "/search")  # words alone need the words
        assert not any(p["required"] for name, p in query.items() if name != "q")
    words = SPEC["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    (text,) = [s for s in words["text"]["anyOf"] if s["type"] == "string"]
    assert (text["minLength"], text["maxLength"]) == (1, MAX_TEXT_CHARS)


def test_the_json_body_forbids_other_fields_and_the_raw_image_types_are_documented() -> None:
    content = SPEC["paths"]["/search"]["post"]["requestBody"]["content"]
    body = content["application/json"]["schema"]
    assert (body["type"], body["additionalProperties"], sorted(body["properties"])) == (
        "object",
        False,
        ["image", "key", "text"],
    )
    from stacks.wiring import BINARY_MEDIA_TYPES

    assert set(content) == {*BINARY_MEDIA_TYPES, "application/json"}  # what the gateway passes as binary
