"""Deployment configuration: the `context` of cdk.json, overridable with `cdk deploy -c key=value`.

Validated once at synth, so a bad value stops the deploy with a message naming the key, long
before CloudFormation (or a cold start) would. The values then become the functions' Settings,
which validate them again at cold start.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from imagegen.credits import DEFAULT_CREDIT_PRICES
from imagegen.providers import PROVIDERS
from imagegen.settings import PollSchedule, Settings
from imagegen_infra.blueprint import FAIL_FUNCTION
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


class ConfigError(ValueError):
    """A bad deployment setting: the message names each key, its value and what is allowed."""


class DeployConfig(BaseModel):
    """Every key of cdk.json's context that we read, with its default (camelCase in cdk.json)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    provider: str = Field(
        "apiframe", description=f"the upstream that renders the images, one of {sorted(PROVIDERS)}"
    )
    provider_base_url: str | None = Field(
        None, description="the upstream's base URL (https); default: the provider's public API"
    )
    credit_prices: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_CREDIT_PRICES),
        description="credits charged per image, by quality: low, medium, auto, high",
    )
    job_deadline_seconds: int = Field(
        900, ge=30, le=86_400, description="a job not done by then fails (and is refunded)"
    )
    poll_interval_seconds: int = Field(2, ge=1, le=300, description="wait between two polls of the upstream")
    first_poll_seconds: int = Field(5, ge=0, le=300, description="wait before the first poll")
    result_retention_days: int = Field(
        90, ge=1, le=3650, description="images, and the job records pointing at them, are deleted after"
    )
    upload_retention_days: int = Field(30, ge=1, le=3650, description="uploads (S3 edits) are deleted after")
    log_retention_days: int = Field(
        90, description="CloudWatch Logs retention and S3 access-log expiry: a value CloudWatch accepts"
    )
    workflow_type: Literal["STANDARD", "EXPRESS"] = Field(
        "STANDARD",
        description=f"Step Functions type; EXPRESS only if jobDeadlineSeconds <= "
        f"{EXPRESS_MAX_DEADLINE_SECONDS}",
    )
    api_throttle_rate_limit: float = Field(
        10, gt=0, le=10_000, description="API requests per second, whole stage"
    )
    api_throttle_burst_limit: int = Field(20, ge=1, le=5_000, description="API burst, whole stage")
    cors_allow_origins: list[str] = Field(
        default_factory=list, description="origins browsers may call the API from; empty: CORS off"
    )
    uploads_owner: str = Field(
        "s3-uploads",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9._@-]+$",
        description="the key owner charged for jobs started by S3 uploads",
    )

    # `cdk deploy -c creditPrices='{"low":1,...}'` hands us strings: accept JSON for structured values.
    @field_validator("credit_prices", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _list_of_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else value.split(",")
            return [origin.strip() for origin in value if origin.strip()]
        return value

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, name: str) -> str:
        if name not in PROVIDERS:
            raise ValueError(f"unknown provider; known: {sorted(PROVIDERS)}")
        return name

    @field_validator("provider_base_url")
    @classmethod
    def _https(cls, url: str | None) -> str | None:
        if not url:
            return None
        if not url.startswith("https://"):
            raise ValueError("must be an https:// URL (the provider key travels with every request)")
        return url.rstrip("/")

    @field_validator("credit_prices")
    @classmethod
    def _every_quality_priced(cls, prices: dict[str, int]) -> dict[str, int]:
        if set(prices) != set(DEFAULT_CREDIT_PRICES):
            raise ValueError(f"must price exactly {sorted(DEFAULT_CREDIT_PRICES)}, got {sorted(prices)}")
        if any(price < 0 for price in prices.values()):
            raise ValueError("prices must be >= 0")
        return prices

    @field_validator("log_retention_days")
    @classmethod
    def _cloudwatch_retention(cls, days: int) -> int:
        if days not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs accepts only {LOG_RETENTION_DAYS}")
        return days

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            local = origin.startswith(("http://localhost", "http://127.0.0.1"))
            if origin != "*" and not origin.startswith("https://") and not local:
                raise ValueError(f"{origin!r}: an origin is '*', https://host or a localhost URL")
        return origins

    @model_validator(mode="after")
    def _express_fits(self) -> DeployConfig:
        if self.workflow_type == "EXPRESS" and self.job_deadline_seconds > EXPRESS_MAX_DEADLINE_SECONDS:
            raise ValueError(
                "workflowType EXPRESS stops executions after 5 minutes, leaving longer jobs unfinished: "
                f"jobDeadlineSeconds must be <= {EXPRESS_MAX_DEADLINE_SECONDS}, "
                f"not {self.job_deadline_seconds}"
            )
        return self

    @property
    def log_retention_name(self) -> str:
        """The aws_logs.RetentionDays member for log_retention_days."""
        return LOG_RETENTION_NAMES[self.log_retention_days]

    @classmethod
    def context_keys(cls) -> list[str]:
        return [field.alias or name for name, field in cls.model_fields.items()]

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> DeployConfig:
        """Our keys out of a CDK context (which also holds feature flags and CLI settings)."""
        keys = cls.context_keys()
        problems = [
            f"  - {key}: unknown setting; did you mean {close[0]!r}?"
            for key in context
            if key not in keys and (close := difflib.get_close_matches(key, keys, n=1, cutoff=0.85))
        ]
        values = {key: context[key] for key in keys if key in context}
        try:
            config = cls.model_validate(values)
        except ValidationError as exc:
            problems += [_describe(error) for error in exc.errors(include_url=False)]
        if problems:
            raise ConfigError(
                'invalid deployment configuration (cdk.json "context" or -c key=value):\n'
                + "\n".join(problems)
            )
        return config

    def settings(
        self,
        *,
        jobs_table: str,
        api_keys_table: str,
        results_bucket: str,
        uploads_bucket: str,
        events_topic_arn: str,
        state_machine_arn: str,
        provider_secret_id: str,
    ) -> Settings:
        """The functions' Settings: resource names from the stack, the rest from here."""
        return Settings(
            jobs_table=jobs_table,
            api_keys_table=api_keys_table,
            results_bucket=results_bucket,
            uploads_bucket=uploads_bucket,
            uploads_owner=self.uploads_owner,
            cors_allow_origins=self.cors_allow_origins,
            events_topic_arn=events_topic_arn,
            state_machine_arn=state_machine_arn,
            provider=self.provider,
            provider_base_url=self.provider_base_url or "",  # empty: the provider's public API
            provider_secret_id=provider_secret_id,
            credit_prices=self.credit_prices,
            job_deadline_seconds=self.job_deadline_seconds,
            # A job record lives as long as its images: no record points at deleted objects.
            record_retention_days=self.result_retention_days,
            schedule=PollSchedule(
                first_poll_seconds=self.first_poll_seconds, poll_interval_seconds=self.poll_interval_seconds
            ),
        )


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a rule across keys: its message names them
        return f"  - {message}"
    key = ".".join(str(part) for part in error["loc"])
    return f"  - {key} = {error.get('input')!r}: {message}"
