"""Signed webhooks: verified from outside with the `standardwebhooks` library, apiframe's
headers too; retries with backoff for 24 hours, 410 stops, the state is on the job."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from imagegen.errors import UnsafeUrl
from imagegen.events import events_for_change
from imagegen.lifecycle import completed, new_job
from imagegen.models import GenerateRequest, JobStatus
from imagegen.settings import Settings
from imagegen.webhooks import (
    DELIVERY_WINDOW,
    WebhookDeliverer,
    WebhookMessage,
    WebhookUnreachable,
    _secret_key,
    new_secret,
    wants,
)
from tests.fakes import InMemoryJobStore, InMemoryResults

SETTINGS = Settings(jobs_table="j", api_keys_table="k", results_bucket="r", events_topic_arn="t")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class Secrets:
    def __init__(self, *secrets: str) -> None:
        self.secrets = list(secrets)

    def signing_secrets(self, key_id: str) -> list[str]:
        return self.secrets


class Receiver:
    """Answers with the scripted statuses (or raises), recording what it was sent."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.received: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.received.append((url, body, headers))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer


class World:
    def __init__(self, *answers: int | Exception, events: list[str] | None = None, secrets=None) -> None:
        self.store = InMemoryJobStore()
        self.secret = new_secret()
        self.receiver = Receiver(*answers)
        self.clock = datetime.now(UTC)  # receivers refuse timestamps more than 5 minutes off
        request = GenerateRequest(
            prompt="a kite",
            model="gpt-image-1.5",
            webhookUrl="https://hooks.example.com/imagegen",
            webhookEvents=events,
        )
        queued = new_job(request, "alice", SETTINGS, key_id="key_1")
        self.store.create(queued)
        self.job_id = queued.job_id
        self.store.update(self.job_id, lambda j: j.model_copy(update={"status": JobStatus.PROCESSING}))
        before = self.store.get(self.job_id)
        after, _ = self.store.update(self.job_id, completed([f"images/{self.job_id}/0.webp"], NOW))
        [self.event] = events_for_change(before, after, "results")
        self.deliverer = WebhookDeliverer(
            self.store,
            secrets or Secrets(self.secret),
            InMemoryResults(),
            self.receiver,
            clock=lambda: self.clock,
            jitter=lambda: 1.0,
        )

    def message(self, **fields) -> WebhookMessage:
        return WebhookMessage(event=self.event.model_dump(), **fields)


def test_a_delivery_verifies_with_the_standard_webhooks_library_and_carries_apiframes_headers():
    world = World()
    assert world.deliverer.deliver(world.message()).outcome == "sent"
    [(_url, body, headers)] = world.receiver.received
    verified = Webhook(world.secret).verify(body, headers)
    assert verified["event"] == "completed" and verified["jobId"] == world.job_id
    assert verified["result"]["images"][0].startswith("https://")
    assert headers["webhook-id"] == world.event.id
    expected = hmac.new(_secret_key(world.secret), body, hashlib.sha256).hexdigest()
    assert headers["x-webhook-signature"] == expected and headers["x-webhook-event"] == "completed"
    job = world.store.get(world.job_id)
    assert (job.webhook_status, job.webhook_attempts, job.webhook_last_error) == ("sent", 1, None)


def test_during_a_rotation_both_secrets_sign():
    old, new = new_secret(), new_secret()
    world = World(secrets=Secrets(new, old))
    world.deliverer.deliver(world.message())
    [(_, body, headers)] = world.receiver.received
    for secret in (old, new):
        Webhook(secret).verify(body, headers)
    assert len(headers["webhook-signature"].split(" ")) == 2


def test_a_failed_answer_is_retried_with_growing_delays_under_the_same_id():
    world = World(500, 502, WebhookUnreachable("ConnectTimeout"), 200)
    message, delays = world.message(), []
    while True:
        delivery = world.deliverer.deliver(message)
        if delivery.outcome != "retry":
            break
        delays.append(delivery.retry_in_seconds)
        message = world.deliverer.next_message(message)
    assert delivery.outcome == "sent" and delays == [5, 10, 20]
    assert {h["webhook-id"] for _, _, h in world.receiver.received} == {world.event.id}
    assert world.store.get(world.job_id).webhook_attempts == 4


def test_410_stops_and_the_job_says_why():
    world = World(410)
    assert world.deliverer.deliver(world.message()).outcome == "stopped"
    job = world.store.get(world.job_id)
    assert (job.webhook_status, job.webhook_last_error) == ("failed", "the receiver answered 410 Gone")


def test_retries_end_after_24_hours():
    world = World(503)
    first = world.clock - DELIVERY_WINDOW - timedelta(seconds=1)
    delivery = world.deliverer.deliver(world.message(attempt=40, firstAttemptAt=first.isoformat()))
    assert delivery.outcome == "failed" and "gave up after 40 attempts" in (delivery.error or "")
    assert world.store.get(world.job_id).webhook_status == "failed"


def test_a_url_that_turned_unsafe_is_never_called_again():
    world = World(UnsafeUrl("URL host 'hooks.example.com' resolves to a non-public address"))
    assert world.deliverer.deliver(world.message()).outcome == "stopped"


def test_only_the_events_a_webhook_asked_for_are_delivered():
    world = World(events=["failed"])
    job = world.store.get(world.job_id)
    assert not wants(job, world.event)
    assert world.deliverer.deliver(world.message()).outcome == "skipped"
    assert world.receiver.received == []


def test_the_body_is_apiframes_shape():
    world = World()
    world.deliverer.deliver(world.message())
    body = json.loads(world.receiver.received[0][1])
    assert set(body) == {
        "id",
        "event",
        "jobId",
        "status",
        "progress",
        "model",
        "creditCost",
        "completedAt",
        "result",
    }


def test_webhook_events_need_a_url():
    with pytest.raises(ValueError, match="webhookEvents needs a webhookUrl"):
        GenerateRequest(prompt="x", model="gpt-image-1.5", webhookEvents=["completed"])


def test_after_a_410_no_later_event_of_the_job_is_delivered():
    world = World(410, events=["progress", "completed", "failed"])
    world.deliverer.deliver(world.message())
    assert world.deliverer.deliver(world.message()).outcome == "skipped"
    assert len(world.receiver.received) == 1
