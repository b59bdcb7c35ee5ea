"""Concurrent requests through the local API gateway (#9.1). Lambda runs one invocation per
execution environment at a time, so no request ever sees another one's event. Two keys send
alternating requests, several at once; each must be answered, and stored, from its own request.

The functions are pointed at a state machine that does not exist, so each submission stores its
job and fails it (503) without starting an execution: what is stored is what the API function
read from the request, and no workflow runs behind the test."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from boto3.dynamodb.conditions import Attr

from imagegen.accounts import Accounts
from imagegen.keys import KeyStore
from imagegen.runtime import dynamodb_resource
from imagegen_infra import blueprint as bp
from tests.support import environment

OWNERS = ("concurrency-a", "concurrency-b")
CALLERS = 8  # requests in flight at once
NO_WORKFLOW = "arn:aws:states:us-east-1:123456789012:stateMachine:concurrency-test-does-not-exist"


@pytest.fixture(scope="module")
def clients(stack: Any, outputs: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    store = KeyStore(bp.API_KEYS_TABLE.name, dynamodb_resource())
    for owner in OWNERS:  # each job is debited (and refunded when its start fails)
        Accounts(bp.API_KEYS_TABLE.name, dynamodb_resource()).grant(owner, 100_000)
    made = {
        owner: httpx.Client(
            base_url=outputs["ApiUrl"], headers={"X-API-Key": store.create(owner)}, timeout=60
        )
        for owner in OWNERS
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def no_workflow() -> Iterator[None]:
    with environment(IMAGEGEN_STATE_MACHINE_ARN=NO_WORKFLOW):
        yield


def submit_all(
    clients: dict[str, httpx.Client], requests: list[tuple[str, str]]
) -> list[tuple[str, str, httpx.Response]]:
    def send(request: tuple[str, str]) -> tuple[str, str, httpx.Response]:
        owner, prompt = request
        body = {"prompt": prompt, "model": "gpt-image-1.5"}
        return owner, prompt, clients[owner].post("/v2/images/generate", json=body)

    with ThreadPoolExecutor(CALLERS) as pool:
        return list(pool.map(send, requests))


def jobs_tagged(outputs: dict[str, str], tag: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb").Table(outputs["JobsTable"])
    scan = {"FilterExpression": Attr("prompt").contains(tag)}
    items, page = [], table.scan(**scan)
    items += page["Items"]
    while "LastEvaluatedKey" in page:
        page = table.scan(ExclusiveStartKey=page["LastEvaluatedKey"], **scan)
        items += page["Items"]
    return items


def test_alternating_submits_from_two_keys_each_store_their_own_prompt(clients, outputs, no_workflow):
    tag = uuid.uuid4().hex[:8]
    sent = [(owner, f"{owner} #{tag} request {i}") for i in range(50) for owner in OWNERS]

    answers = submit_all(clients, sent)

    statuses = [response.status_code for _, _, response in answers]
    assert statuses == [503] * len(sent), statuses  # stored, then refused: no workflow to start
    stored = [(item["owner"], item["prompt"]) for item in jobs_tagged(outputs, tag)]
    foreign = [job for job in stored if job not in sent]
    assert not foreign, f"{len(foreign)} of {len(stored)} jobs stored a prompt their request did not send"
    assert sorted(stored) == sorted(sent)  # and every request stored exactly its own job


def test_alternating_reads_from_two_keys_each_get_their_own_job(clients, outputs, no_workflow):
    tag = uuid.uuid4().hex[:8]
    for owner in OWNERS:  # one at a time: these two must be right whatever the runtime does
        clients[owner].post(
            "/v2/images/generate", json={"prompt": f"{owner} #{tag}", "model": "gpt-image-1.5"}
        )
    job_of = {item["owner"]: item["job_id"] for item in jobs_tagged(outputs, tag)}
    assert len(job_of) == len(OWNERS)
    reads = list(itertools.islice(itertools.cycle(OWNERS), 200))

    def read(owner: str) -> tuple[str, int, Any]:
        response = clients[owner].get(f"/v2/jobs/{job_of[owner]}")
        return owner, response.status_code, response.json()

    with ThreadPoolExecutor(CALLERS) as pool:
        answers = list(pool.map(read, reads))

    wrong = [
        (owner, status, view.get("id"))
        for owner, status, view in answers
        if (status, view.get("id"), view.get("prompt")) != (200, job_of[owner], f"{owner} #{tag}")
    ]
    assert not wrong, f"{len(wrong)} of {len(reads)} reads were answered from another request: {wrong[:5]}"
