"""indexBackend=s3vectors: an S3 Vectors bucket and index instead of the index bucket and compaction;
ingest and query get only the vector operations they need, on that index; the default is unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from stacks.config import ContextError, from_context
from stacks.wiring import (
    VECTOR_DATA_TYPE,
    VECTOR_DISTANCE_METRIC,
    VECTOR_INGEST_ACTIONS,
    VECTOR_NON_FILTERABLE_KEYS,
    VECTOR_QUERY_ACTIONS,
)

INGEST, QUERY, COMPACT = (f"lambdas.{n}.handler.handler" for n in ("ingest", "query", "compact"))


@pytest.fixture(scope="module")
def vectors(synth) -> tuple[Any, Template]:
    return synth(indexBackend="s3vectors")


@pytest.fixture(scope="module")
def template(vectors: tuple[Any, Template]) -> Template:
    return vectors[1]


def _functions(template: Template) -> dict[str, dict[str, Any]]:
    return {
        f["Properties"]["Handler"]: f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"].startswith("lambdas.")
    }


def _role_statements(template: Template, handler: str) -> list[dict[str, Any]]:
    """Every policy statement attached to the role of the function with this handler."""
    role = _functions(template)[handler]["Role"]["Fn::GetAtt"][0]
    statements = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return sorted([actions] if isinstance(actions, str) else actions)


def _index_logical_id(template: Template) -> str:
    (name,) = template.find_resources("AWS::S3Vectors::Index")
    return name


def test_the_vector_bucket_and_index_are_created_retained(template: Template) -> None:
    template.resource_count_is("AWS::S3Vectors::VectorBucket", 1)
    template.resource_count_is("AWS::S3Vectors::Index", 1)
    template.has_resource(
        "AWS::S3Vectors::VectorBucket",
        {
            "Properties": Match.object_like({"EncryptionConfiguration": {"SseType": "AES256"}}),
            "DeletionPolicy": "Retain",
        },
    )
    (bucket,) = template.find_resources("AWS::S3Vectors::VectorBucket")
    template.has_resource(
        "AWS::S3Vectors::Index",
        {
            "Properties": Match.object_like(
                {
                    "DataType": "float32",
                    "Dimension": 1280,
                    "DistanceMetric": "cosine",
                    "MetadataConfiguration": {"NonFilterableMetadataKeys": list(VECTOR_NON_FILTERABLE_KEYS)},
                    "VectorBucketArn": {"Fn::GetAtt": [bucket, "VectorBucketArn"]},
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )
    for kind in ("AWS::S3Vectors::VectorBucket", "AWS::S3Vectors::Index"):
        for resource in template.find_resources(
            kind
        ).values():  # named by CloudFormation: stages can share an account
            assert (
                "VectorBucketName" not in resource["Properties"] and "IndexName" not in resource["Properties"]
            )


def test_the_non_filterable_keys_are_the_ones_the_backend_writes() -> None:
    from imgsearch.s3vectors import DATA_TYPE, METRIC, NON_FILTERABLE

    assert tuple(NON_FILTERABLE) == VECTOR_NON_FILTERABLE_KEYS
    assert (DATA_TYPE, METRIC) == (VECTOR_DATA_TYPE, VECTOR_DISTANCE_METRIC)


def test_the_dimension_follows_context(synth) -> None:
    _, template = synth(indexBackend="s3vectors", vectorDimension=512)
    template.has_resource_properties("AWS::S3Vectors::Index", {"Dimension": 512})


def test_no_index_bucket_and_no_compaction(template: Template) -> None:
    assert set(_functions(template)) == {INGEST, QUERY}
    template.resource_count_is("AWS::Events::Rule", 0)
    template.resource_count_is("AWS::S3::Bucket", 3)  # images, access logs, thumbnails (test_thumbnails.py); no index
    outputs = template.to_json()["Outputs"]
    assert "IndexBucketName" not in outputs and "IndexUri" not in outputs
    assert outputs["VectorIndexArn"]["Value"] == {"Fn::GetAtt": [_index_logical_id(template), "IndexArn"]}
    alarms = json.dumps(template.find_resources("AWS::CloudWatch::Alarm"))
    assert "Compaction" not in alarms and "IngestErrors" in alarms and "QueryErrors" in alarms


def test_functions_learn_the_backend_and_index_arn_from_their_environment(template: Template) -> None:
    arn = {"Fn::GetAtt": [_index_logical_id(template), "IndexArn"]}
    for handler in (INGEST, QUERY):
        env = _functions(template)[handler]["Environment"]["Variables"]
        assert env["INDEX_BACKEND"] == "s3vectors" and env["VECTOR_INDEX_ARN"] == arn
        assert "INDEX_URI" not in env and "COMPACT_FUNCTION_NAME" not in env


@pytest.mark.parametrize(
    ("handler", "wanted"), [(INGEST, VECTOR_INGEST_ACTIONS), (QUERY, VECTOR_QUERY_ACTIONS)]
)
def test_each_function_gets_only_its_vector_actions_on_the_index(
    template: Template, handler: str, wanted: tuple[str, ...]
) -> None:
    arn = {"Fn::GetAtt": [_index_logical_id(template), "IndexArn"]}
    statements = _role_statements(template, handler)
    vector = [s for s in statements if any(a.startswith("s3vectors:") for a in _actions(s))]
    assert [(_actions(s), s["Resource"]) for s in vector] == [(sorted(wanted), arn)]
    assert not any("Condition" in s for s in vector)
    index_bucket_actions = {"s3:PutObject", "s3:PutObjectTagging", "s3:GetObjectTagging"}
    # writes go only to the thumbnails bucket (tests/infra/test_thumbnails.py): there is no index bucket
    elsewhere = [s for s in statements if "StorageThumbnails" not in json.dumps(s["Resource"])]
    assert not index_bucket_actions & {a for s in elsewhere for a in _actions(s)}


def test_the_default_backend_has_no_vector_resources(synth) -> None:
    _, template = synth()
    for kind in ("AWS::S3Vectors::VectorBucket", "AWS::S3Vectors::Index"):
        template.resource_count_is(kind, 0)
    functions = _functions(template)
    assert COMPACT in functions
    for handler in (INGEST, QUERY):
        env = functions[handler]["Environment"]["Variables"]
        assert "INDEX_URI" in env and "INDEX_BACKEND" not in env
        assert not any(
            a.startswith("s3vectors:") for s in _role_statements(template, handler) for a in _actions(s)
        )


@pytest.mark.parametrize(
    "context",
    [
        {"indexBackend": "s3vectors"},
        {"indexBackend": "s3vectors", "imagesBucket": "example-bucket", "watchPrefixes": "photos/"},
    ],
    ids=["created", "existing"],
)
def test_no_unsuppressed_cdk_nag_findings(synth, context: dict[str, Any]) -> None:
    stack, _ = synth(**context)
    annotations = Annotations.from_stack(stack)
    errors = annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    warnings = annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert [(e.id, e.entry.data) for e in errors] == []
    assert [(w.id, w.entry.data) for w in warnings] == []


def test_cfn_lint_finds_no_errors(template: Template, tmp_path: Path) -> None:
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template.to_json()))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", "W3005", "--", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _config(tmp: Path, **context: object) -> Any:
    for part in ("deps", "model", "code"):
        (tmp / part).mkdir(exist_ok=True)
    values = {"assetsDir": str(tmp), **context}
    return from_context(values.get)


def test_context_defaults_to_segments(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert (config.indexBackend, config.vectorDimension) == ("segments", 1280)
    assert _config(tmp_path, indexBackend="s3vectors", defaultMetric="cosine").indexBackend == "s3vectors"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"indexBackend": "opensearch"}, "indexBackend='opensearch' is not one of segments, s3vectors"),
        (
            {"indexBackend": "s3vectors", "indexStore": "efs"},
            "indexStore=efs applies to the segment backend only",
        ),
        ({"indexBackend": "s3vectors", "defaultMetric": "hamming"}, "keeps no binary codes"),
        ({"vectorDimension": 5000}, r"vectorDimension=5000 is out of range \(allowed: 1..4096\)"),
    ],
)
def test_bad_backend_context_is_refused_with_a_clear_message(
    tmp_path: Path, context: dict, message: str
) -> None:
    with pytest.raises(ContextError, match=message):
        _config(tmp_path, **context)
