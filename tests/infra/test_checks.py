"""cdk-nag (AwsSolutions) has nothing unsuppressed; cfn-lint finds no problem; the CDK CLI synthesises offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match

ROOT = Path(__file__).resolve().parents[2]
EXISTING_BUCKET = {
    "imagesBucket": "example-bucket",
    "watchPrefixes": "photos/,scans/",
    "watchSuffixes": ".jpg",
}
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    "context",
    [
        {},
        {
            "architecture": "x86_64",
            "corsOrigins": ["https://example.com"],
            "alarmEmail": "ops@example.com",
            "imagesVersioned": True,
        },
        {"watchPrefixes": "photos/,scans/", "watchSuffixes": ".jpg"},  # a created bucket, watched in part
        EXISTING_BUCKET,
        {**EXISTING_BUCKET, "imagesBucketKmsKeyArn": KMS_KEY, "indexStore": "efs"},
    ],
    ids=["defaults", "options", "created-watched", "existing", "existing-kms-efs"],
)
def test_no_unsuppressed_cdk_nag_findings(synth, context: dict) -> None:
    stack, _ = synth(**context)
    annotations = Annotations.from_stack(stack)
    errors = annotations.find_error("*", Match.string_like_regexp("AwsSolutions-.*"))
    warnings = annotations.find_warning("*", Match.string_like_regexp("AwsSolutions-.*"))
    assert [(e.id, e.entry.data) for e in errors] == []
    assert [(w.id, w.entry.data) for w in warnings] == []


def test_every_suppression_has_a_reason(synth) -> None:
    _, template = synth()
    found = 0
    for resource in template.to_json()["Resources"].values():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            found += 1
            assert len(rule["reason"]) >= 20, rule
    assert found > 0


@pytest.mark.parametrize("context", [{}, EXISTING_BUCKET], ids=["created", "existing"])
def test_cfn_lint_finds_no_errors(synth, tmp_path: Path, context: dict) -> None:
    _, template = synth(**context)
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template.to_json()))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    # W3005 (redundant DependsOn) comes from CDK's own generated dependencies, not from this stack.
    result = subprocess.run(
        [str(cfn_lint), "--ignore-checks", "W3005", "--", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("context", [[], ["-c", "imagesBucket=example-bucket"]], ids=["created", "existing"])
def test_cdk_cli_synthesises_offline(stub_assets: Path, tmp_path: Path, context: list[str]) -> None:
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    assert cdk.exists(), "the pinned CDK CLI is missing: run `npm ci` (make setup does)"
    env = {
        **os.environ,
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "CDK_DISABLE_VERSION_CHECK": "1",
    }
    result = subprocess.run(
        [
            str(cdk),
            "synth",
            "--quiet",
            "--no-notices",
            "--no-version-reporting",
            "-o",
            str(tmp_path / "out"),
            "-c",
            f"assetsDir={stub_assets}",
            *context,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    template = json.loads((tmp_path / "out" / "ImgSearch-dev.template.json").read_text())
    notifications = [
        r for r in template["Resources"].values() if r["Type"] == "Custom::S3BucketNotifications"
    ]
    assert [n["Properties"]["Managed"] for n in notifications] == [not context]
