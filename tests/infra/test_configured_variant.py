"""The `dev` deployment with the optional features on (CORS, Express, provider failover, other
numbers): the context reaches the resources, and cdk-nag stays clean on the paths the default
leaves off."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagegen.settings import Settings
from imagegen_infra import blueprint as bp
from tests.infra.cfn import actions_of, logical_id, only, render, resources, role_statements
from tests.infra.conftest import ORIGIN, VARIANT_STAGE

pytestmark = pytest.mark.infra

NAMES = bp.Blueprint.for_stage(VARIANT_STAGE)


def test_no_unacknowledged_finding_with_cors_express_and_failover(variant: Any) -> None:
    findings = [f"{m.id}: {m.entry.data}" for m in variant.messages if m.level.name in ("ERROR", "WARNING")]
    assert not findings, "\n".join(findings)


def test_cors_preflights_every_route_and_errors_carry_the_origin(variant: Any) -> None:
    template = variant.template
    methods = resources(template, "AWS::ApiGateway::Method").values()
    preflights = [m for m in methods if m["HttpMethod"] == "OPTIONS"]
    assert len(preflights) == len({path for _, path in bp.API_ROUTES})
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
    machine = only(template, "AWS::StepFunctions::StateMachine", StateMachineName=NAMES.state_machine)
    assert machine["StateMachineType"] == "EXPRESS"
    function = only(template, "AWS::Lambda::Function", FunctionName=NAMES.api_function.name)
    env = function["Environment"]["Variables"]
    assert (env["IMAGEGEN_PROVIDER"], env["IMAGEGEN_JOB_DEADLINE_SECONDS"]) == ("openai", "240")
    assert {group["RetentionInDays"] for group in resources(template, "AWS::Logs::LogGroup").values()} == {30}
    [stage] = resources(template, "AWS::ApiGateway::Stage").values()
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 3
    assert json.loads(machine["DefinitionString"])["StartAt"] == "CreateTask"


def test_failover_settings_reach_the_functions_as_they_will_read_them(variant: Any) -> None:
    template = variant.template
    env = render(
        only(template, "AWS::Lambda::Function", FunctionName=NAMES.function("create_task").name)[
            "Environment"
        ]["Variables"]
    )
    settings = Settings.from_environ(env)  # what the function does at cold start
    assert settings.provider_chain == ["openai", "apiinone"]
    assert settings.provider_base_url_for("apiinone") == "https://apiinone.example"
    assert settings.provider_base_url_for("openai") == ""  # OpenAI's own public URL
    assert (settings.render_timeout_seconds, settings.max_upload_bytes) == (120, 1048576)
    primary = logical_id(template, "AWS::SecretsManager::Secret", Name=NAMES.provider_secret)
    failover = logical_id(template, "AWS::SecretsManager::Secret", Name=NAMES.provider_secret_for("apiinone"))
    assert settings.provider_secret_id_for("openai") == f"<{primary}>"
    assert settings.provider_secret_id_for("apiinone") == f"<{failover}>"


def test_each_provider_secret_is_read_only_by_the_functions_that_call_providers(variant: Any) -> None:
    template = variant.template
    secrets = sorted(resources(template, "AWS::SecretsManager::Secret"))
    assert len(secrets) == 2
    for spec in NAMES.all_functions:
        readable = sorted(
            resource["Ref"]
            for statement in role_statements(template, spec.name)
            if "secretsmanager:GetSecretValue" in actions_of(statement)
            for resource in (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
        )
        calls_providers = spec.name in (NAMES.function("create_task").name, NAMES.function("poll_task").name)
        assert readable == (secrets if calls_providers else []), spec.name
