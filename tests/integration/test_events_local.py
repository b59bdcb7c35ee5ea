"""Events users build on, in the local stack: every job change announced from the job table's
stream to the topic and the bus, jobs requested by events, and signed webhooks delivered to a
receiver on loopback (verified with the `standardwebhooks` library)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import pytest
from standardwebhooks import Webhook

from tests.support import submit, wait_for_job

TIMEOUT = 30.0


def eventually(check: Any, timeout: float = TIMEOUT, interval: float = 0.1) -> Any:
    """The first truthy answer of check(), or fail with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            assert answer, f"not within {timeout} s: {answer!r}"
            return answer
        time.sleep(interval)


def queue_with_access(name: str) -> tuple[str, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"{name}-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def drain(url: str) -> list[dict[str, Any]]:
    sqs, bodies = boto3.client("sqs"), []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


# --- out: the topic and the bus -------------------------------------------------------------------
def test_a_filtered_subscription_receives_only_completed_events_of_one_owner(api, outputs):
    url, arn = queue_with_access("completed-of-local-user")
    boto3.client("sns").subscribe(
        TopicArn=outputs["EventsTopicArn"],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"eventType": ["job.completed"], "owner": ["local-user"]}),
        },
    )
    job_id = submit(api)
    assert wait_for_job(api, job_id)["status"] == "COMPLETED"

    received = eventually(lambda: [e for e in drain(url) if e["jobId"] == job_id])
    assert [(e["type"], e["owner"], e["id"]) for e in received] == [
        ("job.completed", "local-user", received[0]["id"])
    ]


def test_every_change_of_a_job_reaches_a_rule_on_our_bus_in_order(api, outputs):
    url, arn = queue_with_access("imagegen-rule-target")
    events = boto3.client("events")
    rule = f"test-all-job-events-{uuid.uuid4().hex[:6]}"
    events.put_rule(
        Name=rule,
        EventBusName=outputs["EventBusName"],
        EventPattern=json.dumps({"source": ["imagegen"], "detail-type": [{"prefix": "Image Job "}]}),
    )
    events.put_targets(Rule=rule, EventBusName=outputs["EventBusName"], Targets=[{"Id": "q", "Arn": arn}])
    job_id = submit(api)
    wait_for_job(api, job_id)

    def terminal_seen() -> list[dict[str, Any]]:
        seen.extend(e for e in drain(url) if e["detail"]["jobId"] == job_id)
        return seen if any(e["detail-type"] == "Image Job Completed" for e in seen) else []

    seen: list[dict[str, Any]] = []
    eventually(terminal_seen)
    kinds = [e["detail-type"] for e in seen]
    assert kinds[0] == "Image Job Accepted" and kinds[-1] == "Image Job Completed"
    assert set(kinds) <= {"Image Job Accepted", "Image Job Progressed", "Image Job Completed"}
    ids = [e["detail"]["id"] for e in seen]
    assert len(ids) == len(set(ids))  # one event per change
    assert [int(i.rsplit(":", 1)[1]) for i in ids] == sorted(int(i.rsplit(":", 1)[1]) for i in ids)


def test_events_whose_publish_failed_are_delivered_in_order_once_the_bus_is_back(api, outputs):
    """The bus is gone while a job runs: each publish fails at the bus, the stream hands the same
    change to the job-events function again (never skipping ahead), and once the bus is back
    every change of the job is announced. SNS, published first, shows what went out when."""
    url, arn = queue_with_access("through-an-outage")
    boto3.client("sns").subscribe(
        TopicArn=outputs["EventsTopicArn"],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"owner": ["local-user"]})},
    )
    bus, events = outputs["EventBusName"], boto3.client("events")
    rules = events.list_rules(EventBusName=bus)["Rules"]
    targets = {
        r["Name"]: events.list_targets_by_rule(Rule=r["Name"], EventBusName=bus)["Targets"] for r in rules
    }
    for rule in rules:
        events.remove_targets(
            Rule=rule["Name"], EventBusName=bus, Ids=[t["Id"] for t in targets[rule["Name"]]]
        )
        events.delete_rule(Name=rule["Name"], EventBusName=bus)
    events.delete_event_bus(Name=bus)
    seen: list[dict[str, Any]] = []
    try:
        job_id = submit(api)
        assert wait_for_job(api, job_id)["status"] == "COMPLETED"  # the job never waits for its events
        time.sleep(1)  # room for the stream to (wrongly) skip ahead
        seen += [e for e in drain(url) if e["jobId"] == job_id]
        assert "job.completed" not in {e["type"] for e in seen}  # stuck behind the failed publish
    finally:
        events.create_event_bus(Name=bus)
        for rule in rules:
            events.put_rule(Name=rule["Name"], EventBusName=bus, EventPattern=rule["EventPattern"])
            events.put_targets(Rule=rule["Name"], EventBusName=bus, Targets=targets[rule["Name"]])

    def completed_seen() -> list[dict[str, Any]]:
        seen.extend(e for e in drain(url) if e["jobId"] == job_id)
        return seen if any(e["type"] == "job.completed" for e in seen) else []

    eventually(completed_seen, timeout=60)
    first_of_each = list(dict.fromkeys(e["id"] for e in seen))  # consumers dedupe by id
    kinds = [next(e["type"] for e in seen if e["id"] == i) for i in first_of_each]
    assert kinds[0] == "job.accepted" and kinds[-1] == "job.completed"


# --- in: jobs requested by events -------------------------------------------------------------------
def requested(request_id: str, **params: Any) -> dict[str, Any]:
    return {
        "requestId": request_id,
        "request": {"prompt": "a paper boat on a pond", "model": "gpt-image-1.5", "gptImageParams": params},
    }


def test_an_event_on_the_bus_requests_a_job_once_per_request_id(api, outputs):
    from imagegen.requested import requested_job_id

    request_id = f"order-{uuid.uuid4().hex[:8]}"
    entry = {
        "Source": "com.example.shop",
        "DetailType": "Image Job Requested",
        "Detail": json.dumps(requested(request_id, quality="low")),
        "EventBusName": outputs["EventBusName"],
    }
    events = boto3.client("events")
    assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    job_id = requested_job_id("local-user", request_id)
    view = eventually(lambda: (r := api.get(f"/v2/jobs/{job_id}")).status_code == 200 and r.json())
    assert wait_for_job(api, job_id)["status"] == "COMPLETED" and view["source"] == "event"

    events.put_events(Entries=[entry])  # the same request id again
    boto3.client("sqs").send_message(QueueUrl=outputs["IntakeQueueUrl"], MessageBody=entry["Detail"])
    eventually(lambda: _queue_empty(outputs["IntakeQueueUrl"]))
    jobs = boto3.resource("dynamodb").Table(outputs["JobsTable"]).get_item(Key={"job_id": job_id})["Item"]
    assert jobs["version"] >= 1  # one job, still the same one (the table is keyed by the derived id)
    assert _queue_empty(outputs["IntakeDlqUrl"])


def test_an_invalid_requested_job_is_answered_with_a_rejection_and_nothing_is_stuck(outputs):
    url, arn = queue_with_access("rejections")
    boto3.client("sns").subscribe(
        TopicArn=outputs["EventsTopicArn"],
        Protocol="sqs",
        Endpoint=arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"eventType": ["job.rejected"]}),
        },
    )
    request_id = f"bad-{uuid.uuid4().hex[:8]}"
    boto3.client("sqs").send_message(
        QueueUrl=outputs["IntakeQueueUrl"], MessageBody=json.dumps(requested(request_id, quality="ultra"))
    )
    [rejected] = eventually(lambda: [e for e in drain(url) if e.get("requestId") == request_id])
    assert rejected["error"]["code"] == "invalid_request"
    assert rejected["error"]["details"][0]["field"] == "request.gptImageParams.quality"
    eventually(lambda: _queue_empty(outputs["IntakeQueueUrl"]))
    assert _queue_empty(outputs["IntakeDlqUrl"])


def _queue_empty(url: str) -> bool:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(v) == 0 for v in attributes.values())


# --- webhooks -----------------------------------------------------------------------------------------
class Receiver:
    """A webhook receiver on loopback answering from a script (status codes, a redirect)."""

    def __init__(self, *answers: int | str) -> None:
        self.answers = list(answers)
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                answer = receiver.answers.pop(0) if receiver.answers else 200
                if isinstance(answer, str):  # a redirect elsewhere
                    self.send_response(307)
                    self.send_header("Location", answer)
                else:
                    self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receivers() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(*answers: int | str) -> Receiver:
        made.append(Receiver(*answers))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def submit_with_webhook(api: httpx.Client, url: str, events: list[str] | None = None) -> str:
    body: dict[str, Any] = {"prompt": "a red kite", "model": "gpt-image-1.5", "webhookUrl": url}
    if events:
        body["webhookEvents"] = events
    answer = api.post("/v2/images/generate", json=body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["jobId"])


def test_webhooks_are_signed_retried_after_500_and_stopped_by_410(api, receivers, reconfigure):
    secret = api.get("/v2/webhooks/secret").json()["secret"]
    assert secret.startswith("whsec_")
    retried, gone = receivers(500, 200), receivers(410)
    with reconfigure(IMAGEGEN_WEBHOOK_FIRST_RETRY_SECONDS="1"):
        retried_job = submit_with_webhook(api, retried.url)
        gone_job = submit_with_webhook(api, gone.url, ["progress", "completed", "failed"])
        for job_id in (retried_job, gone_job):
            wait_for_job(api, job_id)
        eventually(lambda: api.get(f"/v2/jobs/{retried_job}").json()["webhookStatus"] == "sent")
        eventually(lambda: api.get(f"/v2/jobs/{gone_job}").json()["webhookStatus"] == "failed")

    assert len(retried.received) == 2
    for headers, body in retried.received:
        assert Webhook(secret).verify(body, headers)["jobId"] == retried_job
    assert len({h["webhook-id"] for h, _ in retried.received}) == 1  # one event, retried
    view = api.get(f"/v2/jobs/{retried_job}").json()
    assert (view["webhookAttempts"], view["webhookError"]) == (2, None)
    assert len(gone.received) == 1  # and never another: a 410 stops the job's deliveries
    assert api.get(f"/v2/jobs/{gone_job}").json()["webhookError"] == "the receiver answered 410 Gone"


def test_a_redirect_is_never_followed(api, receivers, reconfigure):
    target = receivers()
    redirecting = receivers(target.url, 200)
    job_id = submit_with_webhook(api, redirecting.url)
    wait_for_job(api, job_id)
    eventually(lambda: api.get(f"/v2/jobs/{job_id}").json()["webhookAttempts"] >= 1)
    assert target.received == []
    assert "HTTP 307" in (api.get(f"/v2/jobs/{job_id}").json()["webhookError"] or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/hook",
        "http://[2002:a9fe:a9fe::1]/",
        "ftp://x/y",
    ],
)
def test_a_hostile_webhook_url_is_refused_at_submit(url, outputs):
    # Our own key in a stack that allows loopback: 169.254/10/8 must still be refused.
    answer = httpx.post(
        f"{outputs['ApiUrl']}/v2/images/generate",
        headers={"X-API-Key": outputs["ApiKey"]},
        json={"prompt": "x", "model": "gpt-image-1.5", "webhookUrl": url},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] in ("unsafe_url", "invalid_request")
