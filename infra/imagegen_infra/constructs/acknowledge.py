"""Acknowledging a cdk-nag finding: always on one resource, always with the reason."""

from __future__ import annotations

from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

# How cdk-nag writes the ARN of an AWS-managed policy in its findings.
MANAGED_POLICY = "arn:<AWS::Partition>:iam::aws:policy"


def acknowledge(
    resource: IConstruct,
    rule: str,
    reason: str,
    *,
    applies_to: list[str] | None = None,
    generated_children: bool = False,
) -> None:
    """Accept AwsSolutions-`rule` on `resource`, limited to `applies_to` findings when given.
    `generated_children` extends it to the children CDK generates (a role's DefaultPolicy)."""
    NagSuppressions.add_resource_suppressions(
        resource,
        [NagPackSuppression(id=f"AwsSolutions-{rule}", reason=reason, applies_to=applies_to)],
        apply_to_children=generated_children,
    )
