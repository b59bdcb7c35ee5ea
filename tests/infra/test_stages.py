"""Several deployments in one account and region: a stage names every resource and the stack,
the default deployment keeps the names it always had, and two stages share no name."""

from __future__ import annotations

from typing import Any

import pytest

from imagegen_infra import blueprint as bp
from tests.infra.cfn import render
from tests.infra.conftest import STACK_ID, VARIANT_STACK_ID, VARIANT_STAGE

pytestmark = pytest.mark.infra

# Top-level properties named *Name that are no physical name: a metric, the API's stage in its
# URL, a topic's display text, and inline IAM policy names (unique per role, not per account).
NOT_PHYSICAL_NAMES = {"MetricName", "StageName", "DisplayName", "PolicyName"}


def physical_names(template: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(type, name) of every resource created under a name of its own -> its logical id (a table
    and a state machine may share a name: each type is a namespace). References to other
    resources (a permission's FunctionName) are not names of their own."""
    names: dict[tuple[str, str], str] = {}
    for logical_id, resource in template["Resources"].items():
        for key, value in resource.get("Properties", {}).items():
            if not key.endswith("Name") or key in NOT_PHYSICAL_NAMES:
                continue
            if isinstance(value, dict) and set(value) & {"Ref", "Fn::GetAtt"}:
                continue
            name = (resource["Type"], render(value, account="111122223333", region="eu-west-1"))
            assert name not in names, f"{name} is used twice in one stack"
            names[name] = logical_id
    return names


def test_the_default_deployment_keeps_todays_names() -> None:
    default = bp.Blueprint()
    assert (default.stack_name, default.prefix) == ("imagegen", "imagegen")
    assert (default.jobs_table.name, default.api_keys_table.name) == ("imagegen-jobs", "imagegen-api-keys")
    assert (default.events_topic, default.alarms_topic) == ("imagegen-events", "imagegen-alarms")
    assert (default.state_machine, default.provider_secret) == ("imagegen-jobs", "imagegen/provider-api-key")
    assert default.bucket_name("results", "1", "r") == "imagegen-results-1-r"
    assert [f.name for f in default.all_functions] == [
        "imagegen-api",
        "imagegen-create-task",
        "imagegen-poll-task",
        "imagegen-finalize-job",
        "imagegen-fail-job",
        "imagegen-s3-edit",
        "imagegen-s3-edit-result",
        "imagegen-sweep-jobs",
        "imagegen-job-events",
        "imagegen-intake",
        "imagegen-webhooks",
    ]
    assert (default.event_bus, default.intake_queue, default.webhook_queue) == (
        "imagegen-events",
        "imagegen-intake",
        "imagegen-webhooks",
    )
    assert default.dead_letter_queues == [
        "imagegen-backstop-dlq",
        "imagegen-fail-job-dlq",
        "imagegen-s3-edit-dlq",
        "imagegen-s3-edit-result-dlq",
        "imagegen-job-events-stream-dlq",
        "imagegen-intake-dlq",
        "imagegen-webhooks-dlq",
    ]
    assert (default.api_name, default.dashboard, default.service_name) == (
        "imagegen-api",
        "imagegen",
        "imagegen",
    )
    # What the local stack and older code import.
    assert default.jobs_table == bp.JOBS_TABLE and default.api_function == bp.API_FUNCTION
    assert bp.STACK_NAME == "imagegen"


def test_a_stage_prefixes_the_stack_and_every_name(stack_artifact: Any, variant: Any) -> None:
    assert (stack_artifact.stack_name, stack_artifact.id) == (STACK_ID, STACK_ID)
    assert (variant.stack_name, variant.id) == (VARIANT_STACK_ID, VARIANT_STACK_ID)
    names = physical_names(variant.template)
    assert len(names) > 40  # tables, buckets, functions, queues, topics, alarms, log groups...
    unprefixed = [name for name in names if f"imagegen-{VARIANT_STAGE}" not in name[1]]
    assert not unprefixed


def test_two_stages_share_no_name(template: dict[str, Any], variant: Any) -> None:
    default, dev = physical_names(template), physical_names(variant.template)
    assert not set(default) & set(dev)
    # Both have every kind of named resource: the comparison covers them all.
    kinds = {resource["Type"] for resource in template["Resources"].values()}
    assert kinds == {resource["Type"] for resource in variant.template["Resources"].values()}


def test_data_outlives_a_stage(variant: Any) -> None:
    for resource in variant.template["Resources"].values():
        if resource["Type"] in ("AWS::DynamoDB::Table", "AWS::S3::Bucket"):
            assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("stage", ["Dev", "-dev", "dev-", "dev_1", "a-very-long-stage", ""])
def test_a_stage_must_fit_every_name(stage: str) -> None:
    with pytest.raises(ValueError, match="a stage is"):
        bp.validate_stage(stage)


def test_the_longest_stage_fits_the_longest_bucket_name() -> None:
    names = bp.Blueprint.for_stage("a" * bp.STAGE_MAX_LENGTH)
    longest = max(
        (names.bucket_name(purpose, "123456789012", "ap-southeast-2") for purpose in bp.BUCKET_PURPOSES),
        key=len,
    )
    assert len(longest) <= 63  # S3's limit
    assert max(len(f.name) for f in names.all_functions) <= 64  # Lambda's
    assert all(len(name) <= 80 for name in names.dead_letter_queues)  # SQS's
