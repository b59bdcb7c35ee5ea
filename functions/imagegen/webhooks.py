"""Signed webhooks: what we POST, how it is signed, and how deliveries are retried.

Signed the Standard Webhooks way (https://www.standardwebhooks.com): `webhook-id` (the event
id, stable across retries), `webhook-timestamp`, and `webhook-signature: v1,<base64 HMAC-SHA256
over id.timestamp.body>` with the API key's `whsec_` secret; during a rotation the old secret
signs alongside the new one for ROTATION_OVERLAP. apiframe's own headers come too
(`X-Webhook-Signature`: hex HMAC-SHA256 of the raw body; `X-Webhook-Event`), so a receiver
written for apiframe keeps working.

Deliveries are driven by the job events (the stream publisher queues one message per event a
job's webhook asked for): a function that crashes leaves its message on the queue. 2xx is
delivered; 410 stops; anything else, timeouts and connection errors are retried with backoff
and jitter until DELIVERY_WINDOW has passed since the first attempt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from imagegen.errors import UnsafeUrl
from imagegen.events import EventType, JobEvent, parse_job_event
from imagegen.models import Job, iso, utc_now
from imagegen.ports import JobRepository, ResultRepository

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
ROTATION_OVERLAP = timedelta(hours=24)
DELIVERY_WINDOW = timedelta(hours=24)
TIMEOUT_SECONDS = 5.0
MAX_BODY_BYTES = 256 * 1024
# Backoff between attempts: doubling from FIRST_RETRY_SECONDS with full jitter, capped at
# SQS's longest message delay (how the deliverer waits without running).
FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 900

# Which job event a webhook hears about, in apiframe's words (webhookEvents).
WEBHOOK_EVENT_OF: dict[str, str] = {
    EventType.PROGRESSED: "progress",
    EventType.COMPLETED: "completed",
    EventType.FAILED: "failed",
}


def wants(job: Job, event: JobEvent) -> bool:
    """Whether the job's webhook asked to hear about this event."""
    return bool(job.webhook_url) and WEBHOOK_EVENT_OF.get(event.type) in job.webhook_events


# --- secrets and signatures ---------------------------------------------------------------
def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def standard_signature(secret_list: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<sig>` per secret, space-separated (Standard Webhooks accepts any one that matches)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_secret_key(s), signed, hashlib.sha256).digest()).decode()
        for s in secret_list
    )


def apiframe_signature(secret: str, body: bytes) -> str:
    """apiframe's X-Webhook-Signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(_secret_key(secret), body, hashlib.sha256).hexdigest()


class SecretSource(Protocol):
    def signing_secrets(self, key_id: str) -> list[str]:
        """The secrets that sign now, newest first (two during a rotation's overlap)."""
        ...


class WebhookSecretStore:
    """Secrets per API key, beside the keys in the API keys table (item `webhook-secret#<key
    id>`: the table's key is a string, and the keys table is already the place only key
    owners' requests reach). Encrypted at rest like every table of the stack."""

    ITEM_PREFIX = "webhook-secret#"

    def __init__(self, table_name: str, resource: Any, clock: Callable[[], datetime] = utc_now) -> None:
        self.table = resource.Table(table_name)
        self.clock = clock

    def signing_secrets(self, key_id: str) -> list[str]:
        item = self._item(key_id) or self._create(key_id)
        now = iso(self.clock()) or ""
        return [s["secret"] for s in item["secrets"] if not s.get("retire_at") or s["retire_at"] > now]

    def current(self, key_id: str) -> str:
        return self.signing_secrets(key_id)[0]

    def rotate(self, key_id: str) -> str:
        """A new secret signs from now on; the ones before it keep signing for ROTATION_OVERLAP."""
        item = self._item(key_id) or self._create(key_id)
        retire_at = iso(self.clock() + ROTATION_OVERLAP) or ""
        fresh = {"secret": new_secret(), "created_at": iso(self.clock())}
        kept = [
            {**s, "retire_at": min(s.get("retire_at") or retire_at, retire_at)}
            for s in item["secrets"]
            if not s.get("retire_at") or s["retire_at"] > (iso(self.clock()) or "")
        ]
        self.table.put_item(
            Item={**item, "secrets": [fresh, *kept], "version": int(item.get("version", 0)) + 1},
            ConditionExpression="#v = :v",
            ExpressionAttributeNames={"#v": "version"},
            ExpressionAttributeValues={":v": item.get("version", 0)},
        )
        return str(fresh["secret"])

    def _item(self, key_id: str) -> dict[str, Any] | None:
        found = self.table.get_item(Key={"key_hash": self.ITEM_PREFIX + key_id}, ConsistentRead=True)
        return found.get("Item")

    def _create(self, key_id: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        item = {
            "key_hash": self.ITEM_PREFIX + key_id,
            "key_id": key_id,
            "secrets": [{"secret": new_secret(), "created_at": iso(self.clock())}],
            "version": 0,
        }
        try:
            self.table.put_item(Item=item, ConditionExpression="attribute_not_exists(key_hash)")
        except ClientError as exc:  # created concurrently: use that one
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self._item(key_id) or item
        return item


# --- deliveries -----------------------------------------------------------------------------
class WebhookMessage(BaseModel):
    """One delivery on the webhook queue: the event, and where its attempts stand."""

    event: dict[str, Any]
    attempt: int = 1
    firstAttemptAt: str | None = None

    @property
    def job_event(self) -> JobEvent:
        return parse_job_event(self.event)


class WebhookTransport(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST and return the status code; raise UnsafeUrl for a URL we must not call, and
        WebhookUnreachable for timeouts and connection errors."""
        ...


class WebhookUnreachable(Exception):
    pass


@dataclass(frozen=True)
class Delivery:
    outcome: Literal["sent", "stopped", "retry", "failed", "skipped"]
    retry_in_seconds: int = 0
    error: str | None = None


def payload(event: JobEvent, image_urls: list[str]) -> dict[str, Any]:
    """apiframe's webhook body (REFERENCE §1), plus the event id."""
    body: dict[str, Any] = {
        "id": event.id,
        "event": WEBHOOK_EVENT_OF[event.type],
        "jobId": event.jobId,
        "status": event.status,
        "progress": event.progress,
        "model": event.model,
        "creditCost": event.creditCost,
        "completedAt": event.completedAt,
    }
    if event.type == EventType.COMPLETED:
        body["result"] = {"images": image_urls}
    if event.type == EventType.FAILED:
        body["error"] = event.error
    return body


class WebhookDeliverer:
    def __init__(
        self,
        store: JobRepository,
        secret_source: SecretSource,
        results: ResultRepository,
        transport: WebhookTransport,
        url_ttl_seconds: int = 3600,
        clock: Callable[[], datetime] = utc_now,
        jitter: Callable[[], float] = random.random,
        first_retry_seconds: int = FIRST_RETRY_SECONDS,
    ) -> None:
        self.first_retry_seconds = first_retry_seconds
        self.store = store
        self.secrets = secret_source
        self.results = results
        self.transport = transport
        self.url_ttl_seconds = url_ttl_seconds
        self.clock = clock
        self.jitter = jitter

    def deliver(self, message: WebhookMessage) -> Delivery:
        event = message.job_event
        job = self.store.get(event.jobId)
        if not wants(job, event) or job.key_id is None:
            return Delivery("skipped")
        urls = [self.results.presigned_url(k, self.url_ttl_seconds) for k in event.resultKeys]
        body = json.dumps(payload(event, urls), separators=(",", ":")).encode()
        if len(body) > MAX_BODY_BYTES:
            return self._record(job, message, Delivery("failed", error="the webhook body is over 256 KiB"))
        signing = self.secrets.signing_secrets(job.key_id)
        timestamp = int(self.clock().timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "imagegen-webhooks/1",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(signing, event.id, timestamp, body),
            "x-webhook-signature": apiframe_signature(signing[0], body),
            "x-webhook-event": WEBHOOK_EVENT_OF[event.type],
        }
        try:
            status = self.transport.post(job.webhook_url or "", body, headers)
        except UnsafeUrl as exc:
            return self._record(job, message, Delivery("stopped", error=f"refused: {exc.message}"))
        except WebhookUnreachable as exc:
            return self._record(job, message, self._retry(message, str(exc)))
        if 200 <= status < 300:
            return self._record(job, message, Delivery("sent"))
        if status == 410:
            return self._record(job, message, Delivery("stopped", error="the receiver answered 410 Gone"))
        return self._record(job, message, self._retry(message, f"the receiver answered HTTP {status}"))

    def next_message(self, message: WebhookMessage) -> WebhookMessage:
        """The message that carries the next attempt."""
        first = message.firstAttemptAt or iso(self.clock())
        return message.model_copy(update={"attempt": message.attempt + 1, "firstAttemptAt": first})

    def _retry(self, message: WebhookMessage, error: str) -> Delivery:
        first = _parse_time(message.firstAttemptAt) or self.clock()
        if self.clock() - first >= DELIVERY_WINDOW:
            return Delivery("failed", error=f"{error}; gave up after {message.attempt} attempts in 24 h")
        ceiling = min(MAX_RETRY_SECONDS, self.first_retry_seconds * 2 ** (message.attempt - 1))
        return Delivery("retry", retry_in_seconds=max(1, math.ceil(self.jitter() * ceiling)), error=error)

    def _record(self, job: Job, message: WebhookMessage, delivery: Delivery) -> Delivery:
        status = {"sent": "sent", "retry": "pending", "stopped": "failed", "failed": "failed"}[
            delivery.outcome
        ]

        def change(current: Job) -> Job:
            current.webhook_attempts += 1
            current.webhook_status = status
            current.webhook_last_error = delivery.error
            if delivery.outcome == "stopped":
                current.webhook_events = []  # 410 or a refused URL: nothing more for this job
            return current

        self.store.update(job.job_id, change)
        return delivery


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class PinnedTransport:
    """Webhook POSTs through the SSRF guard: the URL is checked again at every delivery and the
    connection goes to the address checked; redirects are never followed (a 3xx is an answer
    like any other non-2xx); TIMEOUT_SECONDS for the whole exchange; the answer's body is
    never read."""

    def __init__(self, client: Any, allow_loopback_urls: bool = False) -> None:
        self.client = client  # an httpx.Client (imagegen.runtime builds it)
        self.allow_loopback_urls = allow_loopback_urls

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        import httpx

        from imagegen.ssrf import pinned_request

        request = pinned_request(
            self.client, "POST", url, self.allow_loopback_urls, content=body, headers=headers
        )
        try:
            response = self.client.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise WebhookUnreachable(f"{type(exc).__name__} calling the webhook") from exc
        response.close()
        return int(response.status_code)


class WebhookQueue:
    """The queue deliveries wait on: SQS holds a message back for up to MAX_RETRY_SECONDS."""

    def __init__(self, queue_url: str, sqs_client: Any) -> None:
        self.queue_url = queue_url
        self.sqs = sqs_client

    def send(self, message: WebhookMessage, delay_seconds: int = 0) -> None:
        self.sqs.send_message(
            QueueUrl=self.queue_url,
            MessageBody=message.model_dump_json(),
            DelaySeconds=max(0, min(delay_seconds, MAX_RETRY_SECONDS)),
        )
