"""Wiring: the one place that builds boto3 and HTTP clients and hands them to the domain.

Everything is built from Settings on first use, not at import, so a handler pays only for what
its path touches and tests can clear the cache between cases (`reset()`). Every
AWS client gets the bounded AWS_CALLS configuration; no domain class builds its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import boto3
import httpx
from botocore.config import Config

from imagegen.accounts import Accounts
from imagegen.edits.bucket import UploadsBucket
from imagegen.events import EventPublisher
from imagegen.jobs import JobStore
from imagegen.keys import KeyStore
from imagegen.providers import provider_for
from imagegen.providers.base import Provider, ProviderConfig
from imagegen.settings import Settings, environment_key, settings_for
from imagegen.storage import DOWNLOAD_TIMEOUT, ResultStore
from imagegen.submission import WorkflowStarter
from imagegen.webhooks import TIMEOUT_SECONDS as WEBHOOK_TIMEOUT_SECONDS
from imagegen.webhooks import PinnedTransport, WebhookDeliverer, WebhookQueue, WebhookSecretStore

SECRET_CACHE_SECONDS = 300  # a rotated provider key is picked up within five minutes
# boto3 waits 60 s per read by default: a hung AWS call would outlast the API function's 29 s
# and the function would die between writing a job and starting it. Bounded calls fail in time
# for submit_job to mark the job FAILED (the sweeper catches what still slips through).
AWS_CALLS = Config(connect_timeout=3, read_timeout=8, retries={"mode": "standard", "max_attempts": 3})
# S3 with SigV4 presigning: botocore still presigns SigV2 in us-east-1, which S3 refuses for
# buckets created after June 2020. X-Amz-Expires caps a URL at 7 days; signed with a Lambda
# role's temporary credentials it also ends when they expire. Uploads of large images stream
# in parts, each a bounded call.
S3_CALLS = AWS_CALLS.merge(Config(signature_version="s3v4"))


def dynamodb_resource() -> Any:
    """A DynamoDB resource with bounded calls (also for operator tools such as the admin CLI)."""
    return boto3.resource("dynamodb", config=AWS_CALLS)


@dataclass
class Services:
    settings: Settings

    @cached_property
    def _dynamodb(self) -> Any:
        return dynamodb_resource()

    @cached_property
    def s3(self) -> Any:
        return boto3.client("s3", config=S3_CALLS)

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(self.settings.api_keys_table, resource=self._dynamodb)

    @cached_property
    def jobs(self) -> JobStore:
        # Every writer of jobs debits and refunds through the store: one transaction per change.
        return JobStore(self.settings.jobs_table, resource=self._dynamodb, accounts=self.accounts)

    @cached_property
    def keys(self) -> KeyStore:
        return KeyStore(self.settings.api_keys_table, resource=self._dynamodb)

    @cached_property
    def results(self) -> ResultStore:
        return ResultStore(
            self.settings.results_bucket,
            s3_client=self.s3,
            http_client=httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=False),
            allow_loopback_urls=self.settings.allow_loopback_urls,
        )

    @cached_property
    def uploads(self) -> UploadsBucket:
        return UploadsBucket(self.settings.uploads_bucket, self.s3)

    @cached_property
    def events(self) -> EventPublisher:
        return EventPublisher(
            self.settings.events_topic_arn,
            boto3.client("sns", config=AWS_CALLS),
            self.settings.event_bus_name,
            boto3.client("events", config=AWS_CALLS) if self.settings.event_bus_name else None,
        )

    @cached_property
    def webhook_queue(self) -> WebhookQueue:
        return WebhookQueue(self.settings.webhook_queue_url, boto3.client("sqs", config=AWS_CALLS))

    @cached_property
    def webhook_secrets(self) -> WebhookSecretStore:
        return WebhookSecretStore(self.settings.api_keys_table, self._dynamodb)

    @cached_property
    def webhook_deliverer(self) -> WebhookDeliverer:
        # Per phase (connect, write, read) at most the webhook timeout; redirects never followed.
        client = httpx.Client(timeout=httpx.Timeout(WEBHOOK_TIMEOUT_SECONDS), follow_redirects=False)
        return WebhookDeliverer(
            self.jobs,
            self.webhook_secrets,
            self.results,
            PinnedTransport(client, self.settings.allow_loopback_urls),
            self.settings.result_url_ttl_seconds,
            first_retry_seconds=self.settings.webhook_first_retry_seconds,
        )

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
