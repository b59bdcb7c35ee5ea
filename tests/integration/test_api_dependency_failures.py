"""When DynamoDB does not answer in time or throttles, the API answers 503 service_unavailable
with Retry-After in our shape, never a 500. Found under a burst of 1,000 submits on the local
stack: botocore's ReadTimeoutError from the key lookup and from the job's PutItem surfaced as
500 internal_error. A refusal that is a bug of ours (a ValidationException) stays a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from imagegen_infra import blueprint as bp
from imagegen_local.lambda_runtime import FakeLambdaContext
from tests.support import load_event

ENDPOINT = "http://127.0.0.1:1/"
UNAVAILABLE = {
    "read timeout": ReadTimeoutError(endpoint_url=ENDPOINT),
    "connection refused": EndpointConnectionError(endpoint_url=ENDPOINT),
    "throttled": ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem"
    ),
    "internal error": ClientError({"Error": {"Code": "InternalServerError", "Message": "oops"}}, "PutItem"),
}


def call(event: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    from api.handler import lambda_handler

    answer = lambda_handler(event, FakeLambdaContext(function_name=bp.API_FUNCTION.name))
    headers = {
        **answer.get("headers", {}),
        **{k: v[-1] for k, v in answer.get("multiValueHeaders", {}).items()},
    }
    return answer["statusCode"], headers, json.loads(answer["body"])


def submit_event(key: str) -> dict[str, Any]:
    event = load_event("api/generate_seed_example.json")
    event["headers"]["X-API-Key"] = key
    event["multiValueHeaders"]["X-API-Key"] = [key]
    return event


def account_event(key: str) -> dict[str, Any]:
    event = load_event("api/get_job.json")
    event.update(resource="/v2/account", path="/v2/account", httpMethod="GET", pathParameters=None)
    event["requestContext"].update(resourcePath="/v2/account", path="/prod/v2/account", httpMethod="GET")
    event["headers"]["X-API-Key"] = key
    event["multiValueHeaders"]["X-API-Key"] = [key]
    return event


def failing(error: Exception) -> Any:
    def fail(*_: Any, **__: Any) -> Any:
        raise error

    return fail


@pytest.mark.parametrize("where", ["key lookup", "job write"])
@pytest.mark.parametrize("kind", sorted(UNAVAILABLE))
def test_dynamodb_unavailable_is_a_503_with_retry_after(stack, outputs, monkeypatch, where, kind):
    from imagegen.runtime import services

    # A job is written with its debit in one transaction (imagegen.jobs.JobStore.create).
    if where == "key lookup":
        monkeypatch.setattr(services().keys.table, "get_item", failing(UNAVAILABLE[kind]))
    else:
        monkeypatch.setattr(services().jobs.client, "transact_write_items", failing(UNAVAILABLE[kind]))

    status, headers, body = call(submit_event(outputs["ApiKey"]))

    assert status == 503, body
    assert headers["Retry-After"] == "1" and headers["Content-Type"] == "application/json"
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == "service_unavailable"


def test_a_refusal_that_is_our_bug_stays_a_500(stack, outputs, monkeypatch):
    from imagegen.runtime import services

    refused = ClientError({"Error": {"Code": "ValidationException", "Message": "bad key"}}, "PutItem")
    monkeypatch.setattr(services().jobs.client, "transact_write_items", failing(refused))

    status, headers, body = call(submit_event(outputs["ApiKey"]))

    assert status == 500 and body["error"]["code"] == "internal_error"
    assert "Retry-After" not in headers


def test_a_job_written_before_its_put_timed_out_is_failed_and_refunded(stack, outputs, monkeypatch):
    """The write (the job and its debit) reached DynamoDB, then its answer was lost: the caller
    gets a 503 ("retry"), so the job must not stay QUEUED and charged until the sweep."""
    from imagegen.runtime import services

    client = services().jobs.client
    written: list[str] = []
    transact = client.transact_write_items

    def write_then_time_out(**kwargs: Any) -> Any:
        answer = transact(**kwargs)
        if written:  # only the create's answer is lost
            return answer
        written.append(
            kwargs["TransactItems"][0]["Put"]["Item"]["job_id"]
        )  # the resource's client: plain values
        raise ReadTimeoutError(endpoint_url=ENDPOINT)

    balance = account_balance(outputs)
    monkeypatch.setattr(client, "transact_write_items", write_then_time_out)

    status, _, body = call(submit_event(outputs["ApiKey"]))

    monkeypatch.undo()
    assert status == 503 and body["error"]["code"] == "service_unavailable"
    [job_id] = written
    job = services().jobs.get(job_id)
    assert job.status.value == "FAILED" and job.charged_credits == 0
    assert job.error and "refunded" in job.error
    assert account_balance(outputs) == balance  # debited with the write, refunded with the failure


def account_balance(outputs: dict[str, str]) -> int:
    status, _, body = call(account_event(outputs["ApiKey"]))
    assert status == 200, body
    return int(body["balance"])
