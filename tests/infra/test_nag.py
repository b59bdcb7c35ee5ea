"""cdk-nag's AwsSolutions checks: no finding is left unacknowledged, and every acknowledgement
is on a specific resource, with a reason, from a list reviewed here."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.infra

# Every rule we acknowledge somewhere, and why in one line (the full reasons are in the code).
ACKNOWLEDGED = {
    "AwsSolutions-APIG2": "the API function validates bodies with pydantic, answering in our error shape",
    "AwsSolutions-APIG3": "no WAF web ACL by default (fixed monthly cost); keys and throttling guard the API",
    "AwsSolutions-APIG4": "the API function authenticates X-API-Key itself, locally and in the cloud",
    "AwsSolutions-COG4": "same: no Cognito, API keys checked by the function",
    "AwsSolutions-IAM4": "CDK's own roles: API Gateway's logging role, the bucket notifications handler",
    "AwsSolutions-IAM5": "X-Ray and log delivery accept only '*'; object keys are per job or upload",
    "AwsSolutions-SMG4": "an upstream vendor's key cannot be rotated by Secrets Manager",
    "AwsSolutions-SQS3": "the EventBridge target's DLQ is itself a DLQ",
}


def _findings(stack_artifact: Any) -> list[str]:
    return [
        f"{message.id}: {message.entry.data}"
        for message in stack_artifact.messages
        if message.level.name in ("ERROR", "WARNING")
    ]


def test_no_unacknowledged_finding(stack_artifact: Any) -> None:
    findings = _findings(stack_artifact)
    assert not findings, (
        "cdk-nag findings (fix them, or suppress on the resource with a reason):\n" + "\n".join(findings)
    )


def _suppressions(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (logical_id, rule)
        for logical_id, resource in template["Resources"].items()
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
    ]


def test_suppressions_are_per_resource_reasoned_and_reviewed(template: dict[str, Any]) -> None:
    assert "cdk_nag" not in template.get("Metadata", {}), "no stack-wide suppressions"
    suppressions = _suppressions(template)
    assert suppressions
    for logical_id, rule in suppressions:
        assert rule["id"] in ACKNOWLEDGED, f"{logical_id}: {rule['id']} is not in the reviewed list"
        assert len(rule["reason"]) >= 60, f"{logical_id}: {rule['id']} needs a real reason"
        if rule["id"] in ("AwsSolutions-IAM4", "AwsSolutions-IAM5"):
            assert rule.get("applies_to"), f"{logical_id}: {rule['id']} must name what it acknowledges"
    assert {rule["id"] for _, rule in suppressions} == set(ACKNOWLEDGED), (
        "a reviewed rule is no longer needed"
    )


def test_wildcard_acknowledgements_are_only_xray_logs_and_object_keys(template: dict[str, Any]) -> None:
    for logical_id, rule in _suppressions(template):
        if rule["id"] != "AwsSolutions-IAM5":
            continue
        for applies in rule["applies_to"]:
            text = applies if isinstance(applies, str) else json.dumps(applies)
            assert text == "Resource::*" or text.startswith("Resource::<Storage"), (logical_id, text)
