"""Wiring: builds the domain objects from Settings, once per cold start.

Clients are created on first use, not at import, so a handler pays only for what its path
touches and tests can clear the cache between cases (`reset()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import boto3
from botocore.config import Config

from imagegen.events import EventPublisher
from imagegen.jobs import JobStore
from imagegen.keys import KeyStore
from imagegen.providers import provider_for
from imagegen.providers.base import Provider, ProviderConfig
from imagegen.settings import Settings, environment_key, settings_for
from imagegen.storage import ResultStore
from imagegen.submission import WorkflowStarter

SECRET_CACHE_SECONDS = 300  # a rotated provider key is picked up within five minutes
# boto3 waits 60 s per read by default: a hung AWS call would outlast the API function's 29 s
# and the function would die between writing a job and starting it. Bounded calls fail in time
# for submit_job to mark the job FAILED (the sweeper catches what still slips through).
AWS_CALLS = Config(connect_timeout=3, read_timeout=8, retries={"mode": "standard", "max_attempts": 3})


@dataclass
class Services:
    settings: Settings

    @cached_property
    def _dynamodb(self) -> object:
        return boto3.resource("dynamodb", config=AWS_CALLS)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.settings.jobs_table, resource=self._dynamodb)

    @cached_property
    def keys(self) -> KeyStore:
        return KeyStore(self.settings.api_keys_table, resource=self._dynamodb)

    @cached_property
    def results(self) -> ResultStore:
        return ResultStore(
            self.settings.results_bucket, allow_loopback_urls=self.settings.allow_loopback_urls
        )

    @cached_property
    def events(self) -> EventPublisher:
        return EventPublisher(self.settings.events_topic_arn, boto3.client("sns", config=AWS_CALLS))

    @cached_property
    def starter(self) -> WorkflowStarter:
        return WorkflowStarter(
            self.settings.state_machine_arn, boto3.client("stepfunctions", config=AWS_CALLS)
        )

    @cached_property
    def _providers(self) -> dict[str, tuple[str, Provider]]:
        return {}  # name -> (the key it was built with, provider)

    def provider(self, name: str | None = None) -> Provider:
        """The configured provider (or the one that served a job), its key read from Secrets
        Manager through Powertools' cached parameters: never from an environment variable.
        Kept per name and key, so a warm function reuses its connections; a rotated key makes
        a new one."""
        from aws_lambda_powertools.utilities import parameters

        name = name or self.settings.provider
        secret_id = self.settings.provider_secret_id_for(name)
        if not secret_id:
            raise RuntimeError(f"no secret configured for provider {name!r} (IMAGEGEN_PROVIDER_SECRET_ID)")
        api_key = str(parameters.get_secret(secret_id, max_age=SECRET_CACHE_SECONDS))
        built_with, cached = self._providers.get(name, ("", None))
        if cached is None or built_with != api_key:
            config = ProviderConfig(
                base_url=self.settings.provider_base_url_for(name),
                api_key=api_key,
                timeout_seconds=self.settings.upstream_timeout_seconds,
                render_timeout_seconds=self.settings.render_timeout_seconds,
                allow_loopback_urls=self.settings.allow_loopback_urls,
            )
            cached = provider_for(name, config)
            self._providers[name] = (api_key, cached)
        return cached


def services() -> Services:
    """The services of the function being invoked, built once per distinct environment (once
    per cold start in Lambda; see imagegen.settings.FUNCTION_ENVIRONMENT)."""
    return _services_for(environment_key())


@lru_cache(maxsize=32)
def _services_for(variables: tuple[tuple[str, str], ...]) -> Services:
    return Services(settings_for(variables))


def reset() -> None:
    """Forget cached settings and clients (tests)."""
    _services_for.cache_clear()
    settings_for.cache_clear()
