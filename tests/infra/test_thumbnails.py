"""Thumbnails in a bucket of their own when the index is not on S3 (EFS, S3 Vectors): the page loads them by
presigned URL, which only S3 gives. On the default stack they stay beside the index, with no extra bucket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from imgsearch.store import THUMBNAIL_PREFIX

VARIANTS = {"efs": {"indexStore": "efs"}, "s3vectors": {"indexBackend": "s3vectors"}}
HANDLERS = {"ingest": "lambdas.ingest.handler.handler", "query": "lambdas.query.handler.handler"}


def _functions(template: Template) -> dict[str, dict[str, Any]]:
    by_handler = {f["Properties"]["Handler"]: f["Properties"] for f in template.find_resources("AWS::Lambda::Function").values()}
    return {name: by_handler[handler] for name, handler in HANDLERS.items()}


def _thumbnails_bucket(template: Template) -> str | None:
    found = [name for name in template.find_resources("AWS::S3::Bucket") if name.startswith("StorageThumbnails")]
    assert len(found) <= 1
    return found[0] if found else None


def _role_actions_on(template: Template, function: dict[str, Any], resource: Any) -> set[str]:
    role = function["Role"]["Fn::GetAtt"][0]
    actions: set[str] = set()
    for policy in template.find_resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if resource in resources:
                granted = statement["Action"]
                actions |= {granted} if isinstance(granted, str) else set(granted)
    return actions


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_an_index_off_s3_gets_a_private_thumbnails_bucket_ingest_writes_and_query_presigns(synth, variant: str) -> None:
    _, template = synth(**VARIANTS[variant])
    bucket = _thumbnails_bucket(template)
    assert bucket is not None
    props = template.find_resources("AWS::S3::Bucket")[bucket]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True
    }
    assert "LoggingConfiguration" in props and "BucketEncryption" in props
    uri = {"Fn::Join": ["", ["s3://", {"Ref": bucket}]]}
    objects = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, f"/{THUMBNAIL_PREFIX}*"]]}
    functions = _functions(template)
    for name, function in functions.items():
        assert function["Environment"]["Variables"]["THUMBNAIL_URI"] == uri, name
    assert _role_actions_on(template, functions["ingest"], objects) == {"s3:PutObject"}
    assert _role_actions_on(template, functions["query"], objects) == {"s3:GetObject"}  # to presign, nothing else
    assert "DeleteObject" not in json.dumps(template.find_resources("AWS::IAM::Policy"))


def test_the_default_stack_keeps_thumbnails_beside_the_index_with_no_bucket_or_variable(synth) -> None:
    _, template = synth()
    assert _thumbnails_bucket(template) is None
    for name, function in _functions(template).items():
        assert "THUMBNAIL_URI" not in function["Environment"]["Variables"], name
