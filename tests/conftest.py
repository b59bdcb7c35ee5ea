"""Shared fixtures (helpers tests import live in tests/support.py). One local stack (moto
server + simulator + local API) serves the whole session: integration, workflow and end-to-end
tests all run against the same real parts.

Seams: a test changes the functions' configuration with `reconfigure` (support.environment),
as a deploy would; settings and clients are cached per distinct configuration, so nothing
needs clearing and executions of earlier tests cannot put stale settings back.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest

from imagegen_infra import blueprint as bp
from tests.support import environment, function_environment

# Powertools reads these when a handler module is imported, which in Lambda happens after the
# environment is set; here a test may import a handler before the local stack starts.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "imagegen")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "imagegen")

# Fast schedule for tests: zero waits between polls, small backoff. Waits are data-driven, so
# this changes only the numbers the steps compute, not the definition that runs.
FAST_ENV = {
    "IMAGEGEN_FIRST_POLL_SECONDS": "0",
    "IMAGEGEN_POLL_INTERVAL_SECONDS": "0",
    "IMAGEGEN_RETRY_BASE_SECONDS": "0",
    "IMAGEGEN_RETRY_MAX_SECONDS": "1",
}


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    from imagegen_local.stack import LocalStack, LocalStackConfig

    config = LocalStackConfig(port=0, sim_latency="0.05,0.2", settings_env=dict(FAST_ENV))
    local = LocalStack(config)
    local.start()
    # Tests also call handlers directly, in this process: there, as in Lambda, the process
    # environment is the function's. Set once; `reconfigure` never changes it.
    os.environ.update(function_environment(bp.API_FUNCTION.name))
    yield local
    local.stop()


@pytest.fixture(scope="session")
def outputs(stack: Any) -> dict[str, str]:
    return dict(stack.outputs)


@pytest.fixture
def api(outputs: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=outputs["ApiUrl"], headers={"X-API-Key": outputs["ApiKey"]}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def simulator(stack: Any) -> Iterator[Any]:
    """The stack's upstream simulator; fault knobs a test sets are undone afterwards."""
    config = stack.simulator.config
    saved = {f.name: copy.copy(getattr(config, f.name)) for f in dataclasses.fields(config)}
    yield stack.simulator
    for name, value in saved.items():
        setattr(config, name, value)


@pytest.fixture
def reconfigure() -> Any:
    return environment


@pytest.fixture(scope="session")
def event_queue(stack: Any, outputs: dict[str, str]) -> str:
    """An SQS queue subscribed to the events topic, as an integration would subscribe."""
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue_url = sqs.create_queue(QueueName="imagegen-test-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=outputs["EventsTopicArn"],
        Protocol="sqs",
        Endpoint=queue_arn,
        # Job ends only, as an integration waiting for results subscribes (every change of a
        # job is on the topic: tests/integration/test_events_local.py reads those).
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"eventType": ["job.completed", "job.failed"]}),
        },
    )
    return str(queue_url)


@pytest.fixture
def job_events(event_queue: str) -> Any:
    """events_for(job_id) -> the SNS messages published about that job's end so far."""
    sqs = boto3.client("sqs")
    seen: list[dict[str, Any]] = []

    def events_for(job_id: str, expect: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in sqs.receive_message(
                QueueUrl=event_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", []):
                seen.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=event_queue, ReceiptHandle=message["ReceiptHandle"])
            mine = [e for e in seen if e.get("jobId") == job_id]
            if len(mine) >= expect:
                return mine
            time.sleep(0.1)
        return [e for e in seen if e.get("jobId") == job_id]

    return events_for
