"""What the three functions share: runtime, architecture, code asset, layers, logs, tracing."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from .filesystem import IndexFileSystem
from .nag import BASIC_EXECUTION, VPC_ACCESS_EXECUTION, suppress
from .wiring import FunctionSpec, function_environment

RUNTIME = lambda_.Runtime.PYTHON_3_12  # the layers are built for cp312 (layers/build.py)


class Assets(Construct):
    """The dependency layer, the model layer and the function code, from folders built by layers/build.py."""

    def __init__(
        self, scope: Construct, construct_id: str, *, folder: Path, architecture: lambda_.Architecture
    ) -> None:
        super().__init__(scope, construct_id)
        self.architecture = architecture
        self.deps = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(str(folder / "deps")),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[architecture],
            description="numpy, onnxruntime, pillow, usearch, Powertools (layers/requirements.txt)",
        )
        self.model = lambda_.LayerVersion(
            self,
            "Model",
            code=lambda_.Code.from_asset(str(folder / "model")),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[architecture],
            description="ONNX image model and its model.json, at /opt/model",
        )
        self.code = lambda_.Code.from_asset(str(folder / "code"))


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    assets: Assets,
    spec: FunctionSpec,
    memory_mb: int,
    timeout_seconds: int,
    environment: dict[str, str],
    description: str,
    reserved_concurrency: int | None = None,
    file_system: IndexFileSystem | None = None,
) -> lambda_.Function:
    """A function of the stack; with `file_system`, placed in its VPC with the index mounted at /mnt/index."""
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.DESTROY,
    )
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        architecture=assets.architecture,
        handler=spec.handler,
        code=assets.code,
        layers=[assets.deps, assets.model] if spec.with_model else [assets.deps],
        memory_size=memory_mb,
        timeout=Duration.seconds(timeout_seconds),
        environment=function_environment(spec, environment),
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group,
        reserved_concurrent_executions=reserved_concurrency,
        description=description,
        **(file_system.function_options() if file_system else {}),
    )
    managed = "AWSLambdaBasicExecutionRole only lets the function write its own CloudWatch logs."
    wildcard = "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level scoping (Resource: *)."
    if file_system:
        managed += (
            " AWSLambdaVPCAccessExecutionRole only lets Lambda manage the function's network interfaces"
            " in the index file system's VPC."
        )
        wildcard += (
            " elasticfilesystem:ClientMount is on Resource * only with the condition"
            " elasticfilesystem:AccessPointArn = the index access point (CDK's EFS mount grant)."
        )
    suppress(
        function,
        {
            "AwsSolutions-IAM4": managed,
            "AwsSolutions-IAM5": wildcard,
            "AwsSolutions-L1": "Python 3.12 on purpose: the dependency layer is built for cp312 manylinux_2_28 (layers/build.py).",
        },
        applies_to={
            "AwsSolutions-IAM4": [BASIC_EXECUTION] + ([VPC_ACCESS_EXECUTION] if file_system else []),
            "AwsSolutions-IAM5": ["Resource::*"],
        },
    )
    return function
