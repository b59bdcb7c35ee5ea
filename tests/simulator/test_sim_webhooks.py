"""apiframe webhooks from the simulator, as apiframe documents them: a task created with
`webhookUrl` POSTs its events there, signed with HMAC-SHA256 of the raw body."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from imagegen_local.simulator import SimulatorConfig, UpstreamSimulator

API_KEY = "afk_webhook_test"
HEADERS = {"X-API-Key": API_KEY}


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    url: str
    status: int = 200
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, job_id: str, event: str, timeout: float = 5.0) -> list[Received]:
        """Everything received for `job_id` once `event` has arrived for it."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                mine = [r for r in self.received if r.payload["jobId"] == job_id]
                if any(r.payload["event"] == event for r in mine):
                    return mine
                left = deadline - time.monotonic()
                assert left > 0, f"no {event} webhook for {job_id}; got {[r.payload for r in mine]}"
                self.arrived.wait(left)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with box.arrived:
                box.received.append(Received(body, {k.lower(): v for k, v in self.headers.items()}))
                box.arrived.notify_all()
            self.send_response(box.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/imagegen"
    yield box
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim() -> Iterator[UpstreamSimulator]:
    config = SimulatorConfig(latency=(0.3, 0.3), seed=3, webhook_progress_interval=0.05)
    with UpstreamSimulator(config) as simulator:
        yield simulator


@pytest.fixture
def client(sim: UpstreamSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=10) as http:
        yield http


def create(client: httpx.Client, **extra: Any) -> str:
    body = {"prompt": "a fox by webhook", "model": "gpt-image-1.5", "gptImageParams": {"quality": "low"}}
    answer = client.post("/v2/images/generate", json={**body, **extra}, headers=HEADERS)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["jobId"])


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def expected_signature(body: bytes) -> str:
    # Written out from apiframe's docs, not imported: the secret is SHA-256 of the API key.
    secret = hashlib.sha256(API_KEY.encode()).hexdigest().encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_a_completed_task_posts_one_signed_completed_event(sim, client, receiver):
    job_id = create(client, webhookUrl=receiver.url)

    [hook] = receiver.wait_for(job_id, "completed")
    wait_until(lambda: job_id in sim.webhooks.done)  # the receiver's answer is back too
    job = client.get(f"/v2/jobs/{job_id}", headers=HEADERS).json()

    assert hook.headers["x-webhook-event"] == "completed"
    assert hook.headers["content-type"] == "application/json"
    assert hmac.compare_digest(hook.headers["x-webhook-signature"], expected_signature(hook.body))
    assert hook.payload == {
        "event": "completed",
        "jobId": job_id,
        "status": "COMPLETED",
        "progress": 100,
        "result": job["result"],
        "model": "gpt-image-1.5",
        "creditCost": 4,
        "completedAt": job["completedAt"],
    }
    assert job["webhookStatus"] == "sent"


def test_a_failed_task_posts_a_failed_event_with_its_error(sim, client, receiver):
    sim.script("#refused", task_outcome="fail", fail_reason="content policy violation")

    job_id = create(client, prompt="x #refused", webhookUrl=receiver.url)

    [hook] = receiver.wait_for(job_id, "failed")

    assert hook.headers["x-webhook-event"] == "failed"
    assert hook.payload == {
        "event": "failed",
        "jobId": job_id,
        "status": "FAILED",
        "error": "content policy violation",
        "model": "gpt-image-1.5",
    }
    assert hmac.compare_digest(hook.headers["x-webhook-signature"], expected_signature(hook.body))


def test_progress_events_when_asked_then_the_end_in_order(sim, client, receiver):
    job_id = create(client, webhookUrl=receiver.url, webhookEvents=["progress", "completed"])

    hooks = receiver.wait_for(job_id, "completed")

    events = [h.payload["event"] for h in hooks]
    progress = [h.payload["progress"] for h in hooks if h.payload["event"] == "progress"]
    assert events[-1] == "completed" and set(events[:-1]) == {"progress"} and progress
    assert progress == sorted(set(progress)) and all(0 < p < 100 for p in progress)  # only changes
    assert all(h.payload["status"] == "PROCESSING" for h in hooks[:-1])
    assert all(h.headers["x-webhook-event"] == h.payload["event"] for h in hooks)


def test_only_the_events_asked_for_are_sent(sim, client, receiver):
    sim.script("#refused", task_outcome="fail")
    quiet = create(client, prompt="quiet #refused", webhookUrl=receiver.url, webhookEvents=["completed"])
    loud = create(client, prompt="loud #refused", webhookUrl=receiver.url, webhookEvents=["failed"])

    wait_until(lambda: {quiet, loud} <= sim.webhooks.done)  # both looked at for the last time

    assert [r.payload["jobId"] for r in receiver.received] == [loud]
    assert client.get(f"/v2/jobs/{quiet}", headers=HEADERS).json()["webhookStatus"] is None
    assert client.get(f"/v2/jobs/{loud}", headers=HEADERS).json()["webhookStatus"] == "sent"


def test_a_task_that_never_ends_stops_being_watched_without_a_webhook(sim, client, receiver):
    sim.script("#endless", task_outcome="never")
    job_id = create(client, prompt="endless #endless", webhookUrl=receiver.url)

    wait_until(lambda: job_id in sim.webhooks.done)

    assert receiver.received == []


def test_a_receiver_that_refuses_leaves_the_status_unsent_and_the_attempt_recorded(sim, client, receiver):
    receiver.status = 500
    job_id = create(client, webhookUrl=receiver.url)

    receiver.wait_for(job_id, "completed")
    wait_until(lambda: job_id in sim.webhooks.done)

    [delivery] = [d for d in sim.webhooks.deliveries if d.task_id == job_id]
    assert (delivery.event, delivery.status_code, delivery.url) == ("completed", 500, receiver.url)
    assert client.get(f"/v2/jobs/{job_id}", headers=HEADERS).json()["webhookStatus"] is None


def test_an_unreachable_receiver_is_recorded_as_an_error(sim, client):
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as closed:
        url = f"http://127.0.0.1:{closed.server_address[1]}/gone"
    job_id = create(client, webhookUrl=url)

    wait_until(lambda: job_id in sim.webhooks.done)

    [delivery] = [d for d in sim.webhooks.deliveries if d.task_id == job_id]
    assert delivery.status_code is None and delivery.error and "Connect" in delivery.error


@pytest.mark.parametrize(
    "extra",
    [
        {"webhookUrl": 42},
        {"webhookUrl": "ftp://example.com/hook"},
        {"webhookUrl": "http://example.com/hook", "webhookEvents": ["finished"]},
        {"webhookUrl": "http://example.com/hook", "webhookEvents": "completed"},
        {"webhookEvents": ["completed"]},
    ],
)
def test_bad_webhook_fields_are_a_400(client, extra):
    body = {"prompt": "a fox", "model": "gpt-image-1.5", **extra}

    answer = client.post("/v2/images/generate", json=body, headers=HEADERS)

    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_request"
