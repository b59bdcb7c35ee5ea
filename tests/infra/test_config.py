"""cdk.json's context is validated at synth: a bad value stops it with a message naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagegen.credits import DEFAULT_CREDIT_PRICES
from imagegen_infra.config import ConfigError, DeployConfig

pytestmark = pytest.mark.infra

CDK_JSON = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())


def test_cdk_json_runs_the_app_and_documents_every_setting_with_its_default() -> None:
    assert CDK_JSON["app"] == "python infra/app.py"
    context = CDK_JSON["context"]
    documented = {key: context[key] for key in DeployConfig.context_keys()}
    defaults = DeployConfig().model_dump(by_alias=True)
    assert documented == defaults


def test_the_deploy_guide_documents_every_setting() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    assert not [key for key in DeployConfig.context_keys() if f"| `{key}` |" not in guide]


def test_context_values_given_on_the_command_line_are_parsed() -> None:
    config = DeployConfig.from_context(
        {
            "provider": "openai",
            "jobDeadlineSeconds": "600",
            "creditPrices": '{"low": 1, "medium": 2, "auto": 3, "high": 4}',
            "corsAllowOrigins": "https://a.example, https://b.example",
            "someCdkFeatureFlag": True,  # other context keys are not ours and are left alone
        }
    )
    assert config.provider == "openai"
    assert config.job_deadline_seconds == 600
    assert config.credit_prices == {"low": 1, "medium": 2, "auto": 3, "high": 4}
    assert config.cors_allow_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"provider": "midjourney"}, "provider = 'midjourney': unknown provider"),
        (
            {"providerBaseUrl": "http://api.example"},
            "providerBaseUrl = 'http://api.example': must be an https://",
        ),
        ({"jobDeadlineSeconds": 5}, "jobDeadlineSeconds = 5: Input should be greater than or equal to 30"),
        ({"jobDeadlineSeconds": "soon"}, "jobDeadlineSeconds = 'soon': Input should be a valid integer"),
        ({"logRetentionDays": 10}, "logRetentionDays = 10: CloudWatch Logs accepts only"),
        ({"workflowType": "FAST"}, "workflowType = 'FAST': Input should be 'STANDARD' or 'EXPRESS'"),
        ({"creditPrices": {"low": 1}}, "creditPrices = {'low': 1}: must price exactly"),
        ({"corsAllowOrigins": ["ftp://x"]}, "'ftp://x': an origin is"),
        ({"uploadsOwner": "a b"}, "uploadsOwner = 'a b': String should match pattern"),
        ({"apiThrottleRateLimit": 0}, "apiThrottleRateLimit = 0: Input should be greater than 0"),
        ({"workflowType": "EXPRESS"}, "jobDeadlineSeconds must be <= 240, not 900"),
        (
            {"jobDeadlineSecond": 600},
            "jobDeadlineSecond: unknown setting; did you mean 'jobDeadlineSeconds'?",
        ),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(context: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        DeployConfig.from_context(context)
    assert "invalid deployment configuration" in str(refused.value)
    assert expected in str(refused.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as refused:
        DeployConfig.from_context({"provider": "nope", "firstPollSeconds": -1})
    assert "provider" in str(refused.value) and "firstPollSeconds" in str(refused.value)


def test_express_is_allowed_for_short_deadlines() -> None:
    config = DeployConfig.from_context({"workflowType": "EXPRESS", "jobDeadlineSeconds": 240})
    assert config.workflow_type == "EXPRESS"


def test_a_bad_context_stops_synthesis_before_any_resource() -> None:
    from app import build

    with pytest.raises(ConfigError, match="workflowType"):
        build({"workflowType": "SLOW"}, outdir=None)


def test_settings_carry_the_configuration_to_the_functions() -> None:
    config = DeployConfig.from_context(
        {"provider": "apiinone", "resultRetentionDays": 30, "firstPollSeconds": 7, "pollIntervalSeconds": 3}
    )
    settings = config.settings(
        jobs_table="j",
        api_keys_table="k",
        results_bucket="r",
        uploads_bucket="u",
        events_topic_arn="t",
        state_machine_arn="m",
        provider_secret_id="s",
    )
    assert settings.provider == "apiinone"
    assert settings.provider_base_url == ""  # the provider's own public URL
    assert settings.record_retention_days == 30  # a job record lives as long as its images
    assert (settings.schedule.first_poll_seconds, settings.schedule.poll_interval_seconds) == (7, 3)
    assert settings.credit_prices == DEFAULT_CREDIT_PRICES
    assert settings.uploads_owner == "s3-uploads"
