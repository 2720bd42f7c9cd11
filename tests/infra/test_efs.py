"""indexStore=efs: the index on an encrypted EFS file system mounted by the three functions at /mnt/index."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match, Template

HANDLERS = {f"lambdas.{n}.handler.handler" for n in ("ingest", "query", "compact")}


@pytest.fixture(scope="module")
def efs(synth):
    return synth(indexStore="efs")


@pytest.fixture(scope="module")
def template(efs) -> Template:
    return efs[1]


def _functions(template: Template) -> dict[str, dict]:
    return {
        f["Properties"]["Handler"]: f["Properties"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] in HANDLERS
    }


def _ref(template: Template, kind: str) -> str:
    (name,) = template.find_resources(kind)
    return name


def test_the_file_system_is_encrypted_retained_and_reached_through_one_access_point(
    template: Template,
) -> None:
    template.resource_count_is("AWS::EFS::FileSystem", 1)
    template.has_resource(
        "AWS::EFS::FileSystem",
        {
            "Properties": Match.object_like({"Encrypted": True, "ThroughputMode": "elastic"}),
            "DeletionPolicy": "Retain",
        },
    )
    template.resource_count_is("AWS::EFS::AccessPoint", 1)
    template.has_resource_properties(
        "AWS::EFS::AccessPoint",
        {
            "FileSystemId": {"Ref": _ref(template, "AWS::EFS::FileSystem")},
            "PosixUser": {"Uid": "1001", "Gid": "1001"},
            "RootDirectory": {
                "Path": "/imgsearch-index",
                "CreationInfo": {"OwnerUid": "1001", "OwnerGid": "1001", "Permissions": "750"},
            },
        },
    )


def test_mount_targets_in_two_isolated_subnets_without_nat_or_internet(template: Template) -> None:
    template.resource_count_is("AWS::EFS::MountTarget", 2)
    template.resource_count_is("AWS::EC2::Subnet", 2)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::InternetGateway", 0)
    for subnet in template.find_resources("AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False


def test_s3_is_reached_through_a_gateway_endpoint(template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Gateway",
            "ServiceName": {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, ".s3"]]},
            "RouteTableIds": Match.any_value(),
        },
    )


def test_the_vpc_logs_its_flows(template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::FlowLog",
        {"ResourceType": "VPC", "TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"},
    )


def test_every_function_mounts_the_access_point_at_mnt_index_inside_the_vpc(template: Template) -> None:
    access_point = _ref(template, "AWS::EFS::AccessPoint")
    functions = _functions(template)
    assert set(functions) == HANDLERS
    groups = set()
    for props in functions.values():
        (mount,) = props["FileSystemConfigs"]
        assert mount["LocalMountPath"] == "/mnt/index"
        assert {"Ref": access_point} in mount["Arn"]["Fn::Join"][1]
        assert props["Environment"]["Variables"]["INDEX_URI"] == "/mnt/index"
        vpc = props["VpcConfig"]
        assert len(vpc["SubnetIds"]) == 2
        groups.add(json.dumps(vpc["SecurityGroupIds"]))
    assert len(groups) == 1  # one security group for the three functions


def test_nfs_reaches_the_file_system_only_from_the_functions(template: Template) -> None:
    (functions_group,) = json.loads(
        next(iter({json.dumps(p["VpcConfig"]["SecurityGroupIds"]) for p in _functions(template).values()}))
    )
    mount_groups = {
        json.dumps(m["Properties"]["SecurityGroups"])
        for m in template.find_resources("AWS::EFS::MountTarget").values()
    }
    (file_system_group,) = json.loads(mount_groups.pop())
    assert not mount_groups
    ingress = [
        r["Properties"]
        for r in template.find_resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == file_system_group
    ]
    assert len(ingress) == 1
    assert (ingress[0]["FromPort"], ingress[0]["ToPort"], ingress[0]["SourceSecurityGroupId"]) == (
        2049,
        2049,
        functions_group,
    )
    (group,) = [
        g["Properties"]
        for name, g in template.find_resources("AWS::EC2::SecurityGroup").items()
        if {"Fn::GetAtt": [name, "GroupId"]} == file_system_group
    ]
    assert "SecurityGroupIngress" not in group


def test_functions_may_mount_and_write_through_the_access_point(template: Template) -> None:
    statements = [
        s
        for p in template.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    mounts = [s for s in statements if s["Action"] == "elasticfilesystem:ClientMount"]
    writes = [s for s in statements if s["Action"] == "elasticfilesystem:ClientWrite"]
    assert len(mounts) == len(writes) == 3
    for s in mounts:
        assert "elasticfilesystem:AccessPointArn" in s["Condition"]["StringEquals"]


def test_no_index_bucket_and_no_lifecycle_rule_on_efs(template: Template) -> None:
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 3  # images, access logs, and thumbnails (tests/infra/test_thumbnails.py): no index
    assert not [name for name in buckets if name.startswith("StorageIndex")]
    assert "imgsearch-retired" not in json.dumps(buckets)
    assert "s3:PutObjectTagging" not in json.dumps(template.find_resources("AWS::IAM::Policy"))
    outputs = template.find_outputs("*")
    assert "IndexBucketName" not in outputs and {"IndexFileSystemId", "IndexAccessPointId"} <= set(outputs)


def test_the_threshold_trigger_reaches_the_lambda_api_through_an_interface_endpoint(
    synth, template: Template
) -> None:
    (compaction,) = [
        n
        for n, f in template.find_resources("AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == "lambdas.compact.handler.handler"
    ]
    template.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {
            "VpcEndpointType": "Interface",
            "ServiceName": {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, ".lambda"]]},
            "PrivateDnsEnabled": True,
            "PolicyDocument": {
                "Statement": [
                    {
                        "Action": "lambda:InvokeFunction",
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Resource": {"Fn::GetAtt": [compaction, "Arn"]},
                    }
                ],
                "Version": "2012-10-17",
            },
        },
    )
    # Without the trigger nothing in the VPC needs the Lambda API: no interface endpoint (nothing billed idle).
    _, schedule_only = synth(indexStore="efs", compactAfterSegments=0)
    endpoints = schedule_only.find_resources("AWS::EC2::VPCEndpoint")
    assert [e["Properties"]["VpcEndpointType"] for e in endpoints.values()] == ["Gateway"]


def test_the_s3_mode_has_no_vpc(synth) -> None:
    _, template = synth()
    for kind in ("AWS::EC2::VPC", "AWS::EFS::FileSystem", "AWS::EC2::VPCEndpoint"):
        template.resource_count_is(kind, 0)
    assert not any("VpcConfig" in p for p in _functions(template).values())


def test_no_unsuppressed_cdk_nag_findings(efs) -> None:
    stack, _ = efs
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
