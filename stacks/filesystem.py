"""The index on EFS (context indexStore=efs): a VPC without NAT, an encrypted file system, an access point.

The functions mount the access point at /mnt/index (INDEX_URI=/mnt/index); the core package's
LocalStore does compare-and-swap there by lock file plus atomic rename, and keeps superseded objects
in `.retired/` for its grace period before deleting them (so no lifecycle rule is needed).

What reaches what: the functions sit in two isolated subnets (no route to the internet). NFS reaches
the file system only from the functions' security group; S3 is reached through a gateway endpoint
(images for ingest; presigning needs no network); a Lambda interface endpoint is added only when the
ingest function invokes compaction (stacks/ingest.py). SQS polling, API Gateway and EventBridge
invoke the functions from outside the VPC; logs, EMF metrics and X-Ray go through Lambda itself.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from .wiring import EFS_ACCESS_POINT_PATH, EFS_MOUNT_PATH, EFS_POSIX_ID

NFS_PORT = 2049


class IndexFileSystem(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,  # isolated subnets: no NAT gateway, no internet gateway, nothing billed idle
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="Functions", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.S3, subnets=[self.subnets]
                )
            },
        )
        flow_logs = logs.LogGroup(
            self, "FlowLogs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

        self.functions = ec2.SecurityGroup(
            self,
            "FunctionsSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="imgsearch functions: NFS to the index file system, HTTPS to VPC endpoints",
        )
        # The subnets route nowhere but to the S3 gateway endpoint and the VPC's own interface endpoints;
        # S3's prefix-list id cannot be resolved in an environment-agnostic template.
        self.functions.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to the S3 gateway endpoint and interface endpoints"
        )
        file_system_group = ec2.SecurityGroup(
            self,
            "FileSystemSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="imgsearch index file system: NFS from the imgsearch functions only",
        )
        self.file_system = efs.FileSystem(
            self,
            "FileSystem",
            vpc=self.vpc,
            vpc_subnets=self.subnets,
            security_group=file_system_group,
            encrypted=True,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,  # pay per use: nothing provisioned while idle
            allow_anonymous_access=False,  # clients authenticate with IAM (the functions' roles)
            enable_automatic_backups=True,
            removal_policy=RemovalPolicy.RETAIN,  # the index, like the buckets, outlives the stack
        )
        self.access_point = self.file_system.add_access_point(
            "AccessPoint",
            path=EFS_ACCESS_POINT_PATH,
            create_acl=efs.Acl(owner_uid=EFS_POSIX_ID, owner_gid=EFS_POSIX_ID, permissions="750"),
            posix_user=efs.PosixUser(uid=EFS_POSIX_ID, gid=EFS_POSIX_ID),
        )

    def function_options(self) -> dict[str, Any]:
        """lambda_.Function keyword arguments: the VPC placement and the mount at /mnt/index.

        Mounting grants elasticfilesystem:ClientMount/ClientWrite through the access point, and opens
        NFS from the functions' security group to the file system's.
        """
        return {
            "vpc": self.vpc,
            "vpc_subnets": self.subnets,
            "security_groups": [self.functions],
            "filesystem": lambda_.FileSystem.from_efs_access_point(self.access_point, EFS_MOUNT_PATH),
        }

    def lambda_endpoint(self, *, invoke: lambda_.IFunction, callers: ec2.IConnectable) -> None:
        """A Lambda interface endpoint that lets `callers` invoke the one function `invoke` (and nothing else)."""
        group = ec2.SecurityGroup(
            self,
            "LambdaEndpointSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="imgsearch Lambda API endpoint: HTTPS from the imgsearch functions only",
        )
        endpoint = self.vpc.add_interface_endpoint(
            "LambdaEndpoint",
            service=ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
            subnets=self.subnets,
            private_dns_enabled=True,
            open=False,
            security_groups=[group],
        )
        endpoint.connections.allow_default_port_from(callers, "HTTPS from the imgsearch functions")
        endpoint.add_to_policy(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()],
                actions=["lambda:InvokeFunction"],
                resources=[invoke.function_arn],
            )
        )
