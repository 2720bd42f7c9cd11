"""cdk-nag suppressions: always on one resource, always with the reason."""

from __future__ import annotations

from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

BASIC_EXECUTION = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
VPC_ACCESS_EXECUTION = (
    "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
)


def suppress(
    resource: IConstruct,
    rules: dict[str, str],
    *,
    applies_to: dict[str, list[str]] | None = None,
    children: bool = True,
) -> None:
    """`rules` maps a rule id to why it does not apply to this resource."""
    applies_to = applies_to or {}
    NagSuppressions.add_resource_suppressions(
        resource,
        [
            NagPackSuppression(id=rule, reason=reason, applies_to=applies_to.get(rule))
            for rule, reason in rules.items()
        ],
        apply_to_children=children,
    )
