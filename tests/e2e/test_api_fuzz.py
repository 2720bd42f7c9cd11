"""Schemathesis against the local stack's API, from docs/openapi.yaml: no 5xx, every status documented,
every answer of the documented content type and schema, and invalid input (negative cases) refused.

Bounded: EXAMPLES generated cases per operation and phase (the examples, coverage and fuzzing phases),
each request with a timeout; the file takes well under a minute on two cores. scripts/fuzz_api.py runs the same
with a larger bound and prints the figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import Stack, synthetic_image

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
EXAMPLES = 100
REQUEST_SECONDS = 10.0


@schemathesis.check
def negative_data_rejected_as_sent(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """schemathesis' negative_data_rejection, for the request as it was sent: a query parameter whose
    generated value is None or an empty list never reaches the wire (the HTTP client drops it: `{"x": []}`
    sends no `x`), so a case made negative only by one is a valid request, and a 200 for it is right.
    (An extra parameter with an empty list of values is what the derandomized run generated once `tag`
    was in the contract: "query violates additionalProperties", answered 200, and no extra parameter in
    its reproduction; docs/RELIABILITY.md.)"""
    if any(value is None or (isinstance(value, list | tuple) and not value) for value in (case.query or {}).values()):
        return None
    return negative_data_rejection(ctx, response, case)  # type: ignore[no-any-return]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejected_as_sent,
]


def fuzz_config(max_examples: int) -> schemathesis.Config:
    """Positive and negative cases; no Hypothesis database or cache written into the working tree."""
    return schemathesis.Config.from_dict(
        {
            "cache": {"enabled": False},
            "generation": {"mode": "all", "max-examples": max_examples, "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True, "generate-duplicate-query-parameters": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


schema = schemathesis.openapi.from_path(SPEC, config=fuzz_config(EXAMPLES))


@pytest.fixture(scope="module")
def fuzzed(stack: Stack) -> Stack:
    """The stack with something indexed, so /search by image and /similar reach the index (a seed no other
    end-to-end test uses, so their searches by image still find their own images first)."""
    key = "fuzz/seed.jpg"
    stack.s3().put_object(
        Bucket=stack.bucket, Key=key, Body=synthetic_image(31_337_001), ContentType="image/jpeg"
    )
    stack.wait_for(lambda: stack.call("GET", f"/similar/{key}?k=1")[0] == 200, f"{key} to be searchable", 90)
    return stack


def answer_is_json_in_the_error_shape(response: Any) -> None:
    """Every 4xx/5xx is {"error": {"code", "message"}} (the documented Error), whatever the operation."""
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]  # lower-case names, lists of values
        assert content_type.startswith("application/json"), response.headers
        body = json.loads(response.content)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body


@schema.parametrize()
# derandomize: the same cases on every run, so `make test` is reproducible; scripts/fuzz_api.py runs random
# cases for as long as asked (docs/RELIABILITY.md). One random run here once reported a negative case
# ("query violates additionalProperties" with the x-api-key header this call always sets) accepted with a
# 200 that its reproduction did not show; it is kept as a note in docs/RELIABILITY.md, not hidden here.
@hypothesis.settings(
    deadline=None, suppress_health_check=list(hypothesis.HealthCheck), print_blob=False, derandomize=True
)
def test_the_api_keeps_its_contract(case: schemathesis.Case, fuzzed: Stack) -> None:
    response = case.call_and_validate(
        base_url=fuzzed.api, headers={"x-api-key": fuzzed.key}, checks=CHECKS, timeout=REQUEST_SECONDS
    )
    answer_is_json_in_the_error_shape(response)
