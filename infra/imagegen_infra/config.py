"""Deployment configuration: the `context` of cdk.json, overridable with `cdk deploy -c key=value`.

Two kinds of keys, both validated at synth so a bad value stops the deploy with a message
naming the key, long before CloudFormation (or a cold start) would:

- runtime settings: every field of the functions' `imagegen.settings.Settings` (and of its
  `PollSchedule`) that the stack does not fill in itself, camelCased (`jobDeadlineSeconds`,
  `providerFailover`, ...). They are the settings the local stack takes from IMAGEGEN_*
  variables, and they are validated by Settings itself, the model each function validates its
  environment with at cold start: there is no second copy of those rules here.
- deployment settings, which only the stack reads: `stage`, retention periods, the workflow
  type, API throttling.

A few rules hold for the cloud only, on top of Settings' own (`CloudRules`): upstream URLs and
browser origins must be https, a deadline of at least 30 seconds, an uploads owner that is a
plain name, and Express workflows only for deadlines they can finish in.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from imagegen.credits import DEFAULT_CREDIT_PRICES
from imagegen.settings import PollSchedule, Settings
from imagegen_infra.blueprint import FAIL_FUNCTION, validate_stage
from imagegen_infra.workflow_definition import TASK_TIMEOUT_MARGIN_SECONDS

# The only values CloudWatch Logs accepts as a retention period (and their names in aws_logs).
LOG_RETENTION_NAMES = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
LOG_RETENTION_DAYS = tuple(LOG_RETENTION_NAMES)
# Express executions stop after five minutes (REFERENCE §5) and send no status-change events,
# so the backstop rule cannot see them: a job must end, failure recorded, inside those minutes.
EXPRESS_MAX_DEADLINE_SECONDS = 300 - FAIL_FUNCTION.timeout_seconds - TASK_TIMEOUT_MARGIN_SECONDS

# Settings fields the stack fills in itself: its resources' names, what follows from a
# deployment setting, and what is for the local stack only. Every other field is a context key.
SET_BY_STACK = frozenset(
    {
        "jobs_table",
        "api_keys_table",
        "results_bucket",
        "uploads_bucket",
        "events_topic_arn",
        "state_machine_arn",
        "event_bus_name",
        "webhook_queue_url",
        "provider_secret_id",  # one secret per provider, created by the stack
        "provider_secret_ids",
        "record_retention_days",  # = resultRetentionDays: no record points at deleted images
        "allow_loopback_urls",  # local stack only
        "schedule",  # its fields are context keys of their own
    }
)
# Stand-ins for the names the stack fills in, so Settings can validate the rest before they exist.
_STAND_INS: dict[str, Any] = {
    name: "<set by the stack>"
    for name in (
        "jobs_table",
        "api_keys_table",
        "results_bucket",
        "uploads_bucket",
        "events_topic_arn",
        "state_machine_arn",
        "provider_secret_id",
    )
}


# Where the cloud's default differs from Settings' (which serves the local stack and tests too).
CLOUD_DEFAULTS: dict[str, Any] = {
    "uploadsOwner": "s3-uploads",  # the key owner charged for jobs started by S3 uploads
    "intakeOwner": "event-requests",  # the key owner of jobs requested by events on the bus
}


def runtime_keys() -> dict[str, tuple[str, ...]]:
    """Context key -> where it goes in Settings: (field,) or ("schedule", field)."""
    keys: dict[str, tuple[str, ...]] = {
        to_camel(name): (name,) for name in Settings.model_fields if name not in SET_BY_STACK
    }
    keys.update({to_camel(name): ("schedule", name) for name in PollSchedule.model_fields})
    return keys


class ConfigError(ValueError):
    """A bad deployment setting: the message names each key, its value and what is allowed."""


class DeploymentSettings(BaseModel):
    """The keys only the stack reads, with their defaults (camelCase in cdk.json)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    stage: str | None = Field(
        None, description="deployment name: prefixes every resource name and the stack name"
    )
    result_retention_days: int = Field(
        90, ge=1, description="images, and the job records pointing at them, are deleted after"
    )
    upload_retention_days: int = Field(30, ge=1, le=3650, description="uploads (S3 edits) are deleted after")
    log_retention_days: int = Field(
        90, description="CloudWatch Logs retention and S3 access-log expiry: a value CloudWatch accepts"
    )
    workflow_type: Literal["STANDARD", "EXPRESS"] = Field(
        "STANDARD",
        description="Step Functions type; EXPRESS only if jobDeadlineSeconds <= "
        f"{EXPRESS_MAX_DEADLINE_SECONDS}",
    )
    api_throttle_rate_limit: float = Field(
        10, gt=0, le=10_000, description="API requests per second, whole stage"
    )
    api_throttle_burst_limit: int = Field(20, ge=1, le=5_000, description="API burst, whole stage")

    @field_validator("stage", mode="before")
    @classmethod
    def _stage(cls, stage: Any) -> Any:
        return validate_stage(stage) if isinstance(stage, str) and stage else None

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_NAMES:
            raise ValueError(f"CloudWatch Logs accepts only {list(LOG_RETENTION_DAYS)}")
        return days


class CloudRules(BaseModel):
    """What a cloud deployment asks of runtime settings beyond Settings' own rules."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    job_deadline_seconds: int = Field(ge=30)  # no upstream renders faster; cold starts come first
    # Charged for every job an upload starts: a plain name, as API key owners are.
    uploads_owner: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")
    intake_owner: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")
    provider_base_url: str
    provider_base_urls: dict[str, str]
    cors_allow_origins: list[str]
    credit_prices: dict[str, int]

    @field_validator("provider_base_url")
    @classmethod
    def _https(cls, url: str) -> str:
        if url and not url.startswith("https://"):
            raise ValueError("must be an https:// URL (the provider key travels with every request)")
        return url

    @field_validator("provider_base_urls")
    @classmethod
    def _every_url_https(cls, urls: dict[str, str]) -> dict[str, str]:
        plain = sorted(name for name, url in urls.items() if not url.startswith("https://"))
        if plain:
            raise ValueError(f"{plain}: must be https:// URLs (the provider key travels with every request)")
        return urls

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            local = origin.startswith(("http://localhost", "http://127.0.0.1"))
            if origin != "*" and not origin.startswith("https://") and not local:
                raise ValueError(f"{origin!r}: an origin is '*', https://host or a localhost URL")
        return origins

    @field_validator("credit_prices")
    @classmethod
    def _known_qualities(cls, prices: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(prices) - set(DEFAULT_CREDIT_PRICES))
        if unknown:  # a misspelt quality would otherwise be priced by nobody
            raise ValueError(f"unknown qualities {unknown}; priced are {sorted(DEFAULT_CREDIT_PRICES)}")
        return prices


class DeployConfig(BaseModel):
    """A validated deployment: its own settings, and the functions' Settings without the names of
    the resources (which `settings()` adds)."""

    model_config = ConfigDict(frozen=True)

    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    runtime: Settings = Field(default_factory=lambda: _validated_runtime({}, DeploymentSettings()))

    # --- the deployment's keys, by name -----------------------------------------------------------
    @property
    def stage(self) -> str | None:
        return self.deployment.stage

    @property
    def result_retention_days(self) -> int:
        return self.deployment.result_retention_days

    @property
    def upload_retention_days(self) -> int:
        return self.deployment.upload_retention_days

    @property
    def log_retention_days(self) -> int:
        return self.deployment.log_retention_days

    @property
    def log_retention_name(self) -> str:
        """The aws_logs.RetentionDays member for log_retention_days."""
        return LOG_RETENTION_NAMES[self.deployment.log_retention_days]

    @property
    def workflow_type(self) -> str:
        return self.deployment.workflow_type

    @property
    def api_throttle_rate_limit(self) -> float:
        return self.deployment.api_throttle_rate_limit

    @property
    def api_throttle_burst_limit(self) -> int:
        return self.deployment.api_throttle_burst_limit

    # --- keys and defaults ----------------------------------------------------------------------
    @classmethod
    def deployment_keys(cls) -> list[str]:
        return [field.alias or name for name, field in DeploymentSettings.model_fields.items()]

    @classmethod
    def context_keys(cls) -> list[str]:
        return [*cls.deployment_keys(), *runtime_keys()]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every context key with its default value, as JSON (what cdk.json lists)."""
        config = cls()
        runtime = config.runtime.model_dump(mode="json")
        values = config.deployment.model_dump(mode="json", by_alias=True)
        for key, path in runtime_keys().items():
            values[key] = runtime[path[0]] if len(path) == 1 else runtime[path[0]][path[1]]
        return values

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> DeployConfig:
        """Our keys out of a CDK context (which also holds feature flags and CLI settings)."""
        keys = cls.context_keys()
        problems = [
            f"  - {key}: unknown setting; did you mean {close[0]!r}?"
            for key in context
            if key not in keys and (close := difflib.get_close_matches(key, keys, n=1, cutoff=0.85))
        ]
        values = {key: _from_context(context[key]) for key in keys if key in context}
        values = {key: value for key, value in values.items() if value is not None}  # null: the default
        deployment = None
        try:
            deployment = DeploymentSettings.model_validate(
                {key: value for key, value in values.items() if key in cls.deployment_keys()}
            )
        except ValidationError as exc:
            problems += [_describe(error) for error in exc.errors(include_url=False)]
        runtime_values = {key: value for key, value in values.items() if key in runtime_keys()}
        runtime, runtime_problems = _runtime(runtime_values, deployment or DeploymentSettings())
        problems += runtime_problems
        if not problems and deployment and runtime:
            problems += _cloud_problems(deployment, runtime)
        if problems:
            raise ConfigError(
                'invalid deployment configuration (cdk.json "context" or -c key=value):\n'
                + "\n".join(dict.fromkeys(problems))
            )
        assert deployment is not None and runtime is not None
        return cls(deployment=deployment, runtime=runtime)

    def settings(
        self,
        *,
        jobs_table: str,
        api_keys_table: str,
        results_bucket: str,
        uploads_bucket: str,
        events_topic_arn: str,
        state_machine_arn: str,
        event_bus_name: str,
        webhook_queue_url: str,
        provider_secret_id: str,
        provider_secret_ids: Mapping[str, str] | None = None,
    ) -> Settings:
        """The functions' Settings: resource names from the stack, the rest as validated."""
        return self.runtime.model_copy(
            update={
                "jobs_table": jobs_table,
                "api_keys_table": api_keys_table,
                "results_bucket": results_bucket,
                "uploads_bucket": uploads_bucket,
                "events_topic_arn": events_topic_arn,
                "state_machine_arn": state_machine_arn,
                "event_bus_name": event_bus_name,
                "webhook_queue_url": webhook_queue_url,
                "provider_secret_id": provider_secret_id,
                "provider_secret_ids": dict(provider_secret_ids or {}),
            }
        )


def _from_context(value: Any) -> Any:
    """`-c key=value` hands the app strings: JSON text of a list or an object is decoded (an
    invalid one is left to fail validation as the string it is)."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _settings_input(values: Mapping[str, Any], record_retention_days: int | None = None) -> dict[str, Any]:
    """Settings' input for these runtime context values, with the stack's stand-ins."""
    fields: dict[str, Any] = dict(_STAND_INS)
    if record_retention_days is not None:
        fields["record_retention_days"] = record_retention_days
    schedule: dict[str, Any] = {}
    for key, value in values.items():
        path = runtime_keys()[key]
        if len(path) == 1:
            fields[path[0]] = value
        else:
            schedule[path[1]] = value
    fields["schedule"] = schedule
    return fields


def _validated_runtime(values: Mapping[str, Any], deployment: DeploymentSettings) -> Settings:
    values = {**CLOUD_DEFAULTS, **values}
    return Settings.model_validate(_settings_input(values, deployment.result_retention_days))


def _runtime(values: Mapping[str, Any], deployment: DeploymentSettings) -> tuple[Settings | None, list[str]]:
    """Settings validates the runtime keys. Each key alone first, so every error is told with
    its key (a rule of the whole model, such as an unknown provider, included) even when other
    keys are wrong too; then all together, for rules across keys."""
    alone: dict[str, tuple[Any, dict[str, Any]]] = {
        key: (value, _settings_input({key: value})) for key, value in values.items()
    }
    # The job records live as long as their images: resultRetentionDays is Settings' too.
    retention = deployment.result_retention_days
    alone["resultRetentionDays"] = (retention, _settings_input({}, retention))
    problems: list[str] = []
    for key, (value, fields) in alone.items():
        try:
            Settings.model_validate(fields)
        except ValidationError as exc:
            problems += [_describe(error, key, value) for error in exc.errors(include_url=False)]
    if problems:
        return None, problems
    try:
        return _validated_runtime(values, deployment), []
    except ValidationError as exc:
        return None, [_describe(error) for error in exc.errors(include_url=False)]


def _cloud_problems(deployment: DeploymentSettings, runtime: Settings) -> list[str]:
    problems: list[str] = []
    try:
        CloudRules.model_validate(runtime.model_dump(include=set(CloudRules.model_fields)))
    except ValidationError as exc:
        problems += [_describe(error) for error in exc.errors(include_url=False)]
    if deployment.workflow_type == "EXPRESS" and runtime.job_deadline_seconds > EXPRESS_MAX_DEADLINE_SECONDS:
        problems.append(
            "  - workflowType EXPRESS stops executions after 5 minutes, leaving longer jobs unfinished: "
            f"jobDeadlineSeconds must be <= {EXPRESS_MAX_DEADLINE_SECONDS}, "
            f"not {runtime.job_deadline_seconds}"
        )
    return problems


def _describe(error: Mapping[str, Any], key: str | None = None, value: Any = None) -> str:
    """One line per problem: the context key, the value given, what is wrong."""
    message = str(error["msg"]).removeprefix("Value error, ")
    loc = [str(part) for part in error["loc"]]
    if key is None and loc:  # a field of one of our models: its name or its alias
        key, value = to_camel(loc[-1]), error.get("input")
    if key is None:  # a rule across keys: its message names them
        return f"  - {message}"
    return f"  - {key} = {value!r}: {message}"
