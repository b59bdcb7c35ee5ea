"""A second synthesis with the optional features on (CORS, Express, other numbers): the
context reaches the resources, and cdk-nag stays clean on the paths the default leaves off."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagegen_infra import blueprint as bp
from tests.infra.cfn import only, resources

pytestmark = pytest.mark.infra

ORIGIN = "https://app.example"
CONTEXT = {
    "corsAllowOrigins": [ORIGIN],
    "workflowType": "EXPRESS",
    "jobDeadlineSeconds": 240,
    "logRetentionDays": 30,
    "apiThrottleRateLimit": 3,
    "provider": "openai",
}


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from app import synth

    assembly = synth(str(tmp_path_factory.mktemp("cdk.out.variant")), CONTEXT, fail_on_findings=False)
    return assembly.get_stack_artifact("Imagegen")


def test_no_unacknowledged_finding_with_cors_and_express(variant: Any) -> None:
    findings = [f"{m.id}: {m.entry.data}" for m in variant.messages if m.level.name in ("ERROR", "WARNING")]
    assert not findings, "\n".join(findings)


def test_cors_preflights_the_two_routes_and_errors_carry_the_origin(variant: Any) -> None:
    template = variant.template
    methods = resources(template, "AWS::ApiGateway::Method").values()
    preflights = [m for m in methods if m["HttpMethod"] == "OPTIONS"]
    assert len(preflights) == 2
    for preflight in preflights:
        headers = preflight["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
        assert headers["method.response.header.Access-Control-Allow-Origin"] == f"'{ORIGIN}'"
    for response in resources(template, "AWS::ApiGateway::GatewayResponse").values():
        assert (
            response["ResponseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"]
            == f"'{ORIGIN}'"
        )


def test_context_reaches_the_resources(variant: Any) -> None:
    template = variant.template
    machine = only(template, "AWS::StepFunctions::StateMachine", StateMachineName=bp.STATE_MACHINE)
    assert machine["StateMachineType"] == "EXPRESS"
    function = only(template, "AWS::Lambda::Function", FunctionName=bp.API_FUNCTION.name)
    env = function["Environment"]["Variables"]
    assert (env["IMAGEGEN_PROVIDER"], env["IMAGEGEN_JOB_DEADLINE_SECONDS"]) == ("openai", "240")
    assert {group["RetentionInDays"] for group in resources(template, "AWS::Logs::LogGroup").values()} == {30}
    [stage] = resources(template, "AWS::ApiGateway::Stage").values()
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 3
    assert json.loads(machine["DefinitionString"])["StartAt"] == "CreateTask"
