"""cdk.json's context is validated at synth: a bad value stops it with a message naming the key.
Runtime settings are validated by the functions' own Settings, so synth refuses exactly what a
cold start would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from imagegen.credits import DEFAULT_CREDIT_PRICES
from imagegen.settings import ENV_PREFIX, Settings
from imagegen_infra.config import ConfigError, DeployConfig, runtime_keys

pytestmark = pytest.mark.infra

CDK_JSON = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())


def test_cdk_json_runs_the_app_and_documents_every_setting_with_its_default() -> None:
    assert CDK_JSON["app"] == "python infra/app.py"
    context = CDK_JSON["context"]
    ours = {key: value for key, value in context.items() if not key.startswith("@")}
    assert ours == DeployConfig.defaults()


def test_the_deploy_guide_documents_every_setting_with_its_default_and_local_variable() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    rows = {
        key: cells
        for key, *cells in (
            [cell.strip().strip("`") for cell in line.strip("|").split("|")]
            for line in guide.splitlines()
            if line.startswith("| `")
        )
    }
    assert set(DeployConfig.context_keys()) <= set(rows), "undocumented settings"
    for key, default in DeployConfig.defaults().items():
        try:
            documented = json.loads(rows[key][0])
        except ValueError:
            documented = rows[key][0]  # a plain word: apiframe, STANDARD
        assert documented == default, key
    for key in runtime_keys():  # the runtime settings' column `locally`: their IMAGEGEN_* variable
        assert rows[key][1] == ENV_PREFIX + "_".join(_snake(key)).upper(), key


def _local_settings_variables() -> set[str]:
    """Every IMAGEGEN_* setting the local stack takes from its environment (`make local`)."""
    from imagegen_local.stack import LocalStackConfig

    everything = Settings(jobs_table="j", api_keys_table="k", results_bucket="r", events_topic_arn="t")
    offered = {name: "1" for name in everything.to_environ()}
    config = LocalStackConfig.from_env(
        {**offered, "IMAGEGEN_PROVIDER": "openai", "IMAGEGEN_PROVIDER_BASE_URL": "https://x"}
    )
    taken = set(config.settings_env)
    if config.provider == "openai":
        taken.add("IMAGEGEN_PROVIDER")
    if config.provider_base_url == "https://x":
        taken.add("IMAGEGEN_PROVIDER_BASE_URL")
    return taken


def test_every_setting_the_local_stack_accepts_can_be_set_for_a_cloud_deploy() -> None:
    local = _local_settings_variables()
    assert {"IMAGEGEN_PROVIDER_FAILOVER", "IMAGEGEN_RENDER_TIMEOUT_SECONDS"} <= local  # the probe works
    cloud = {ENV_PREFIX + "_".join(part.upper() for part in _snake(key)) for key in runtime_keys()}
    assert local <= cloud, f"local settings with no cdk.json key: {sorted(local - cloud)}"


def _snake(key: str) -> list[str]:
    words, word = [], ""
    for char in key:
        if char.isupper():
            words.append(word)
            word = char.lower()
        else:
            word += char
    return [*words, word]


def test_runtime_keys_are_the_settings_fields_the_stack_does_not_fill_in() -> None:
    from imagegen.settings import PollSchedule

    fields = {*Settings.model_fields, *PollSchedule.model_fields} - {"schedule"}
    stack_filled = {"jobs_table", "api_keys_table", "results_bucket", "uploads_bucket", "events_topic_arn"}
    stack_filled |= {"state_machine_arn", "provider_secret_id", "provider_secret_ids"}
    stack_filled |= {"record_retention_days", "allow_loopback_urls", "event_bus_name", "webhook_queue_url"}
    assert set(runtime_keys()) == {to_camel(name) for name in fields - stack_filled}


# A value Settings refuses, per runtime key: synth refuses it with Settings' own words.
REFUSED_BY_SETTINGS = {
    "maxCreateAttempts": ("max_create_attempts", 0),
    "renderTimeoutSeconds": ("render_timeout_seconds", 0),
    "maxUploadBytes": ("max_upload_bytes", 0),
    "resultUrlTtlSeconds": ("result_url_ttl_seconds", 10),
    "retryMaxSeconds": ("retry_max_seconds", 301),
    "providerFailover": ("provider_failover", ["midjourney"]),
    "providerBaseUrls": ("provider_base_urls", {"midjourney": "https://x.example"}),
    "creditPrices": ("credit_prices", {"low": -1, "medium": 1, "auto": 1, "high": 1}),
}


@pytest.mark.parametrize("key", sorted(REFUSED_BY_SETTINGS))
def test_runtime_settings_are_refused_by_the_rules_the_functions_apply(key: str) -> None:
    field, value = REFUSED_BY_SETTINGS[key]
    base = {"jobs_table": "j", "api_keys_table": "k", "results_bucket": "r", "events_topic_arn": "t"}
    schedule = {} if field in Settings.model_fields else {field: value}
    fields = {field: value} if field in Settings.model_fields else {}
    with pytest.raises(ValidationError) as cold_start:
        Settings.model_validate({**base, **fields, "schedule": schedule})
    settings_message = str(cold_start.value.errors()[0]["msg"]).removeprefix("Value error, ")

    with pytest.raises(ConfigError) as synth:
        DeployConfig.from_context({key: value})
    assert f"{key} = {value!r}: {settings_message}" in str(synth.value)


def test_context_values_given_on_the_command_line_are_parsed() -> None:
    config = DeployConfig.from_context(
        {
            "provider": "openai",
            "jobDeadlineSeconds": "600",
            "creditPrices": '{"low": 1, "medium": 2, "auto": 3, "high": 4}',
            "corsAllowOrigins": "https://a.example, https://b.example",
            "providerFailover": "apiinone,openai",
            "providerBaseUrls": '{"apiinone": "https://apiinone.example"}',
            "renderTimeoutSeconds": "120",
            "stage": "dev",
            "someCdkFeatureFlag": True,  # other context keys are not ours and are left alone
        }
    )
    runtime = config.runtime
    assert runtime.provider == "openai"
    assert runtime.job_deadline_seconds == 600
    assert runtime.credit_prices == {"low": 1, "medium": 2, "auto": 3, "high": 4}
    assert runtime.cors_allow_origins == ["https://a.example", "https://b.example"]
    assert runtime.provider_chain == ["openai", "apiinone"]
    assert runtime.provider_base_urls == {"apiinone": "https://apiinone.example"}
    assert runtime.render_timeout_seconds == 120
    assert config.stage == "dev"


def test_null_and_an_empty_stage_mean_the_default() -> None:
    assert DeployConfig.from_context({"stage": None, "providerBaseUrl": None}) == DeployConfig()
    assert DeployConfig.from_context({"stage": ""}).stage is None


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"provider": "midjourney"}, "provider = 'midjourney': unknown provider"),
        ({"stage": "Dev"}, "stage = 'Dev': a stage is 1-12 lowercase letters"),
        ({"stage": "a-very-long-stage"}, "stage = 'a-very-long-stage': a stage is 1-12"),
        (
            {"providerBaseUrls": {"openai": "http://api.example"}},
            "providerBaseUrls = {'openai': 'http://api.example'}: ['openai']: must be https://",
        ),
        ({"resultRetentionDays": 5000}, "resultRetentionDays = 5000: Input should be less than or equal"),
        (
            {"providerBaseUrl": "http://api.example"},
            "providerBaseUrl = 'http://api.example': must be an https://",
        ),
        ({"jobDeadlineSeconds": 5}, "jobDeadlineSeconds = 5: Input should be greater than or equal to 30"),
        ({"jobDeadlineSeconds": "soon"}, "jobDeadlineSeconds = 'soon': Input should be a valid integer"),
        ({"logRetentionDays": 10}, "logRetentionDays = 10: CloudWatch Logs accepts only"),
        ({"workflowType": "FAST"}, "workflowType = 'FAST': Input should be 'STANDARD' or 'EXPRESS'"),
        ({"creditPrices": {"low": 1}}, "creditPrices = {'low': 1}: credit_prices lacks"),
        (
            {"creditPrices": {**DEFAULT_CREDIT_PRICES, "hihg": 1}},
            "creditPrices = {'low': 4, 'medium': 9, 'auto': 24, 'high': 24, 'hihg': 1}: unknown qualities",
        ),
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
        event_bus_name="b",
        webhook_queue_url="q",
        provider_secret_id="s",
    )
    assert settings.provider == "apiinone"
    assert settings.provider_base_url == ""  # the provider's own public URL
    assert settings.record_retention_days == 30  # a job record lives as long as its images
    assert (settings.schedule.first_poll_seconds, settings.schedule.poll_interval_seconds) == (7, 3)
    assert settings.credit_prices == DEFAULT_CREDIT_PRICES
    assert settings.uploads_owner == "s3-uploads"
    assert (settings.jobs_table, settings.provider_secret_id, settings.provider_secret_ids) == ("j", "s", {})
    # What a function reads back from that environment at cold start is the same configuration.
    assert Settings.from_environ(settings.to_environ()) == settings
