"""Typed settings, read from the environment once per cold start and validated.

The environment is read in one place, `current_settings()`, which the handlers reach through
imagegen.runtime; infra and the local stack build Settings themselves and hand functions its
`to_environ()`. Everything below the handlers is handed a Settings object (or the plain
values it needs), so nothing deeper reads os.environ.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from imagegen.credits import DEFAULT_CREDIT_PRICES

ENV_PREFIX = "IMAGEGEN_"
# Settings given as JSON objects in the environment; lists are comma-separated.
JSON_FIELDS = ("credit_prices", "provider_base_urls", "provider_secret_ids")


class PollSchedule(BaseModel):
    """How the workflow waits. Waits are computed here and handed to Step Functions through
    `SecondsPath`, so tests run with zero waits and production can be tuned without a deploy
    of the definition."""

    # The seeds' renders take 3-10 s (docs/decisions.md, "Fast and cheap"): the first poll comes
    # when the fastest of them is done, not later.
    first_poll_seconds: int = Field(default=3, ge=0, le=300)
    poll_interval_seconds: int = Field(default=2, ge=0, le=300)
    # Adaptive: from the second poll on, wait until the finish the upstream's own progress
    # predicts (elapsed x (100 - p) / p, rounded down, at least 1 s and at most
    # max_poll_interval_seconds); without a progress figure, poll_interval_seconds. Off: every
    # poll waits poll_interval_seconds (the old fixed schedule).
    adaptive_polling: bool = True
    max_poll_interval_seconds: int = Field(default=10, ge=1, le=300)
    retry_base_seconds: float = Field(default=1.0, ge=0, le=60)
    retry_max_seconds: int = Field(default=30, ge=0, le=300)
    max_create_attempts: int = Field(default=6, ge=1, le=50)
    max_poll_errors: int = Field(default=10, ge=1, le=100)


class Settings(BaseModel):
    jobs_table: str
    api_keys_table: str
    results_bucket: str
    events_topic_arn: str
    state_machine_arn: str = ""
    uploads_bucket: str = ""
    uploads_owner: str = ""  # the key owner charged for jobs started by S3 uploads
    intake_owner: str = ""  # the key owner of jobs requested by events (the intake queue)
    event_bus_name: str = ""  # our EventBridge bus: job events go there as well as to the topic
    webhook_queue_url: str = ""  # deliveries waiting for their (next) attempt
    # The first retry of a failed webhook delivery waits up to this long; each later one twice
    # as long (full jitter), up to 15 minutes, for 24 hours.
    webhook_first_retry_seconds: int = Field(default=5, ge=1, le=900)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)  # S3 edits: larger uploads are rejected
    # Upstream providers (docs/providers.md). `provider` serves new jobs; `provider_failover`
    # lists, in order, where a job goes when the one before it keeps failing transiently on
    # create before any task exists. A base URL or secret id of a provider comes from the
    # per-provider map, else from the shared value (base URL: else the provider's public URL).
    provider: str = "apiframe"
    provider_failover: list[str] = Field(default_factory=list)
    # Origins a browser may call the API from (the API function answers with the CORS header;
    # API Gateway answers preflights). Empty: no CORS.
    cors_allow_origins: list[str] = Field(default_factory=list)
    provider_base_url: str = ""
    provider_base_urls: dict[str, str] = Field(default_factory=dict)
    provider_secret_id: str = ""
    provider_secret_ids: dict[str, str] = Field(default_factory=dict)
    credit_prices: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CREDIT_PRICES))
    job_deadline_seconds: int = Field(default=900, ge=1, le=86_400)
    result_url_ttl_seconds: int = Field(default=3600, ge=60, le=604_800)
    record_retention_days: int = Field(default=90, ge=1, le=3650)
    upstream_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    # Read timeout of a call that renders before it answers (OpenAI): above the slowest
    # high-quality render, below the create-task function's timeout (300 s).
    render_timeout_seconds: float = Field(default=240.0, gt=0, le=900)
    allow_loopback_urls: bool = False  # the local stack only: everything runs on 127.0.0.1 there
    schedule: PollSchedule = Field(default_factory=PollSchedule)

    @field_validator("credit_prices")
    @classmethod
    def _every_quality_priced(cls, prices: dict[str, int]) -> dict[str, int]:
        missing = set(DEFAULT_CREDIT_PRICES) - set(prices)
        if missing:
            raise ValueError(f"credit_prices lacks {sorted(missing)}")
        if any(p < 0 for p in prices.values()):
            raise ValueError("credit prices must be >= 0")
        return prices

    @field_validator("provider_failover", "cors_allow_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @model_validator(mode="after")
    def _providers_known(self) -> Settings:
        from imagegen.providers import PROVIDERS  # lazily: only validation needs the registry

        named = {self.provider, *self.provider_failover, *self.provider_base_urls, *self.provider_secret_ids}
        unknown = sorted(named - set(PROVIDERS))
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; known: {sorted(PROVIDERS)}")
        return self

    @property
    def provider_chain(self) -> list[str]:
        """The primary provider, then the failover ones in order, each once."""
        return list(dict.fromkeys([self.provider, *self.provider_failover]))

    def provider_base_url_for(self, name: str) -> str:
        """The base URL of provider `name`; empty means the provider's own public URL."""
        return self.provider_base_urls.get(name) or self.provider_base_url

    def provider_secret_id_for(self, name: str) -> str:
        return self.provider_secret_ids.get(name) or self.provider_secret_id

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        schedule: dict[str, Any] = {}
        for name, value in env.items():
            if not name.startswith(ENV_PREFIX):
                continue
            key = name.removeprefix(ENV_PREFIX).lower()
            if key in PollSchedule.model_fields:
                schedule[key] = value
            elif key in cls.model_fields:
                values[key] = _json_setting(name, value) if key in JSON_FIELDS else value
        values["schedule"] = schedule
        try:
            return cls.model_validate(values)
        except ValidationError as exc:  # a deploy mistake: say which variable, once, at cold start
            raise RuntimeError(f"invalid imagegen configuration: {exc}") from exc

    def to_environ(self) -> dict[str, str]:
        """The inverse of from_environ: what infra and the local stack put in a function's env."""
        env: dict[str, str] = {}
        for key, value in self.model_dump(exclude={"schedule"}).items():
            if key in JSON_FIELDS:
                env[ENV_PREFIX + key.upper()] = json.dumps(value, separators=(",", ":"))
            elif isinstance(value, list):
                env[ENV_PREFIX + key.upper()] = ",".join(value)
            elif isinstance(value, bool):
                env[ENV_PREFIX + key.upper()] = "true" if value else "false"
            else:
                env[ENV_PREFIX + key.upper()] = str(value)
        for key, value in self.schedule.model_dump().items():
            env[ENV_PREFIX + key.upper()] = str(value)
        return env


def _json_setting(name: str, value: str) -> Any:
    if not value.strip():
        return {}
    try:
        return json.loads(value)
    except ValueError as exc:
        raise RuntimeError(f"invalid imagegen configuration: {name} is not valid JSON: {exc}") from exc


# The environment variables of the function being invoked, where one process runs several
# functions: the local stack's runtime sets it, per invocation, to the function's configuration
# (Environment.Variables), as Lambda hands each function its own. Unset in Lambda, where the
# process environment is the function's.
FUNCTION_ENVIRONMENT: ContextVar[Mapping[str, str] | None] = ContextVar(
    "imagegen_function_environment", default=None
)


def environment_key() -> tuple[tuple[str, str], ...]:
    """The IMAGEGEN_* variables of the function being invoked: all its settings depend on."""
    environment = FUNCTION_ENVIRONMENT.get()
    source = os.environ if environment is None else environment
    return tuple(sorted((k, v) for k, v in source.items() if k.startswith(ENV_PREFIX)))


@lru_cache(maxsize=32)
def settings_for(variables: tuple[tuple[str, str], ...]) -> Settings:
    return Settings.from_environ(dict(variables))


def current_settings() -> Settings:
    """Settings of the function being invoked, validated once per distinct environment: once per
    cold start in Lambda (cleared by tests through imagegen.runtime.reset)."""
    return settings_for(environment_key())
