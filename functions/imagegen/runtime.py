"""Wiring: builds the domain objects from Settings, once per cold start.

Clients are created on first use, not at import, so a handler pays only for what its path
touches and tests can clear the cache between cases (`services.cache_clear()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from imagegen.events import EventPublisher
from imagegen.jobs import JobStore
from imagegen.keys import KeyStore
from imagegen.providers import provider_for
from imagegen.providers.base import Provider, ProviderConfig
from imagegen.settings import Settings, current_settings
from imagegen.storage import ResultStore
from imagegen.submission import WorkflowStarter

SECRET_CACHE_SECONDS = 300  # a rotated provider key is picked up within five minutes


@dataclass
class Services:
    settings: Settings

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.settings.jobs_table)

    @cached_property
    def keys(self) -> KeyStore:
        return KeyStore(self.settings.api_keys_table)

    @cached_property
    def results(self) -> ResultStore:
        return ResultStore(self.settings.results_bucket, allow_loopback_urls=self.settings.allow_loopback_urls)

    @cached_property
    def events(self) -> EventPublisher:
        return EventPublisher(self.settings.events_topic_arn)

    @cached_property
    def starter(self) -> WorkflowStarter:
        return WorkflowStarter(self.settings.state_machine_arn)

    def provider(self, name: str | None = None) -> Provider:
        """The configured provider (or the one that served a job), its key read from Secrets
        Manager through Powertools' cached parameters: never from an environment variable."""
        from aws_lambda_powertools.utilities import parameters

        if not self.settings.provider_secret_id:
            raise RuntimeError("no provider secret configured (IMAGEGEN_PROVIDER_SECRET_ID)")
        api_key = parameters.get_secret(self.settings.provider_secret_id, max_age=SECRET_CACHE_SECONDS)
        config = ProviderConfig(
            base_url=self.settings.provider_base_url,
            api_key=str(api_key),
            timeout_seconds=self.settings.upstream_timeout_seconds,
        )
        return provider_for(name or self.settings.provider, config)


@lru_cache(maxsize=1)
def services() -> Services:
    return Services(current_settings())


def reset() -> None:
    """Forget cached settings and clients (tests, and the local stack after reconfiguring)."""
    services.cache_clear()
    current_settings.cache_clear()
