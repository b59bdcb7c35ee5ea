"""Announcing a change of a job record: its event to the topic and the bus, and to the webhook
queue when the job's webhook asked for it. Fed by the job table's change stream, so when a
publish fails the change is delivered again and announced then (with the same event id)."""

from __future__ import annotations

from typing import Protocol

from imagegen.events import JobEvent, events_for_change
from imagegen.models import Job
from imagegen.ports import EventPublisherPort
from imagegen.webhooks import WebhookMessage, wants


class DeliveryQueue(Protocol):
    def send(self, message: WebhookMessage, delay_seconds: int = 0) -> None: ...


class Announcer:
    def __init__(self, publisher: EventPublisherPort, webhooks: DeliveryQueue, bucket: str) -> None:
        self.publisher = publisher
        self.webhooks = webhooks
        self.bucket = bucket

    def announce(self, old: Job | None, new: Job | None) -> list[JobEvent]:
        """Publish what the change from `old` to `new` stands for; the events published."""
        events = events_for_change(old, new, self.bucket)
        for event in events:
            self.publisher.publish(event)
            if new is not None and wants(new, event):
                self.webhooks.send(WebhookMessage(event=event.model_dump()))
        return events
