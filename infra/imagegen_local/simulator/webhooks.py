"""apiframe's webhooks: a task created with `webhookUrl` POSTs its events to that URL.

As apiframe documents them (docs-v2.apiframe.ai/docs/webhooks, REFERENCE §1): a JSON body
`{event, jobId, status, progress, result, model, creditCost, completedAt}` for `completed`,
`{event, jobId, status, error, model}` for `failed`, `{event, jobId, status, progress, model}`
for `progress` (each time the progress changes), with headers `X-Webhook-Event` and
`X-Webhook-Signature`: the hex HMAC-SHA256 of the raw body, keyed with the signing secret,
which is the SHA-256 (hex) of the API key that created the job. `webhookEvents` picks events;
without it, `completed` and `failed` are sent. apiframe publishes no retry policy: one attempt.

Tasks finish when their result becomes visible, not at a callback, so one scheduler thread
looks at each watched task when it is due and hands deliveries to a small pool; a task's next
look is scheduled only after its delivery, so one receiver sees a task's events in order.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from .tasks import Task, TaskView, iso

log = logging.getLogger(__name__)

EVENTS = ("progress", "completed", "failed")
DEFAULT_EVENTS = frozenset({"completed", "failed"})
DELIVERY_TIMEOUT = 10.0


def signing_secret(api_key: str) -> bytes:
    """apiframe: "The signing secret is the SHA-256 hash of your API key" (as hex text)."""
    return hashlib.sha256(api_key.encode()).hexdigest().encode()


def signature(api_key: str, body: bytes) -> str:
    return hmac.new(signing_secret(api_key), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    """One POST the simulator made: what it sent and what the receiver answered."""

    task_id: str
    event: str
    url: str
    body: bytes
    headers: dict[str, str]
    status_code: int | None  # None: no answer (connection refused, timeout)
    error: str | None
    sent_at: datetime


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    task: Task = field(compare=False)


class WebhookSender:
    def __init__(self, model: str, progress_interval: Callable[[], float], workers: int = 4) -> None:
        self._model = model
        self._progress_interval = progress_interval
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._last_progress: dict[str, int] = {}
        self._wake = threading.Condition()
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim-webhook")
        self._http = httpx.Client(timeout=DELIVERY_TIMEOUT, follow_redirects=False)
        self._thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)
        self._thread.start()
        self.deliveries: list[Delivery] = []
        self.done: set[str] = set()  # tasks with nothing more to report (ended, or never will)
        self._deliveries_lock = threading.Lock()

    def watch(self, task: Task) -> None:
        self._schedule(task, time.monotonic())

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    # -- scheduling ------------------------------------------------------------------------

    def _schedule(self, task: Task, at: float) -> None:
        with self._wake:
            heapq.heappush(self._heap, _Due(at, next(self._seq), task))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (not self._heap or self._heap[0].at > time.monotonic()):
                    timeout = self._heap[0].at - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                due = heapq.heappop(self._heap)
            try:
                self._pool.submit(self._look_at, due.task)
            except RuntimeError:  # the pool is shut down: stopping
                return

    def _look_at(self, task: Task) -> None:
        assert task.webhook is not None
        view = task.view()
        event = self._event_for(task, view)
        if event is not None and event in task.webhook.events:
            self._deliver(task, event, view)
        if view.phase in ("completed", "failed") or (
            task.outcome == "never" and ("progress" not in task.webhook.events or view.progress >= 99)
        ):
            self._last_progress.pop(task.task_id, None)
            with self._deliveries_lock:
                self.done.add(task.task_id)
            return
        now = time.monotonic()
        next_look = now + self._progress_interval()
        if "progress" not in task.webhook.events and task.finished is not None:
            next_look = max(now, task.started + task.duration)  # straight to the end
        self._schedule(task, next_look)

    def _event_for(self, task: Task, view: TaskView) -> str | None:
        if view.phase in ("completed", "failed"):
            return view.phase
        if view.phase == "processing" and self._last_progress.get(task.task_id) != view.progress:
            self._last_progress[task.task_id] = view.progress
            return "progress"
        return None

    # -- delivery --------------------------------------------------------------------------

    def _payload(self, task: Task, event: str, view: TaskView) -> dict[str, Any]:
        payload: dict[str, Any] = {"event": event, "jobId": task.task_id, "status": view.phase.upper()}
        if event == "failed":
            payload.update(error=view.error, model=self._model)
            return payload
        payload["progress"] = view.progress
        if event == "completed":
            payload["result"] = {"images": view.images}  # as GET /v2/jobs/{id} shows it
        payload["model"] = self._model
        if event == "completed":
            payload["creditCost"] = task.credit_cost
            payload["completedAt"] = iso(view.completed_at) if view.completed_at else None
        return payload

    def _deliver(self, task: Task, event: str, view: TaskView) -> None:
        assert task.webhook is not None
        body = json.dumps(self._payload(task, event, view)).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Webhook-Event": event,
            "X-Webhook-Signature": signature(task.webhook.api_key, body),
        }
        status_code: int | None = None
        error: str | None = None
        try:
            status_code = self._http.post(task.webhook.url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.info("webhook for %s to %s failed: %s", task.task_id, task.webhook.url, error)
        if event != "progress" and status_code is not None and 200 <= status_code < 300:
            task.webhook_status = "sent"
        delivery = Delivery(
            task.task_id, event, task.webhook.url, body, headers, status_code, error, datetime.now(UTC)
        )
        with self._deliveries_lock:
            self.deliveries.append(delivery)
