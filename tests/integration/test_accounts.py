"""Accounts through the API function's real entry point and the local stack's HTTP API, against
moto: debits and 402s, refunds exactly once, Idempotency-Key, listing, cancel, the account view,
and a ledger that audits to zero."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from imagegen.accounts import Accounts
from imagegen.keys import KeyStore
from imagegen.lifecycle import failed, new_job
from imagegen.models import GenerateRequest, Job, JobStatus
from imagegen.runtime import dynamodb_resource, services
from imagegen_infra import blueprint as bp
from tests.integration.test_api_handler import assert_error_shape, call, with_key
from tests.support import load_event

HIGH = {"prompt": "a lighthouse at dusk", "model": "gpt-image-1.5", "gptImageParams": {"quality": "high"}}


def accounts() -> Accounts:
    return Accounts(bp.API_KEYS_TABLE.name, dynamodb_resource())


def new_account(credits: int) -> tuple[str, str]:
    """A fresh owner with `credits`, and a key of theirs."""
    owner = f"acct-{uuid.uuid4().hex[:10]}"
    key = KeyStore(bp.API_KEYS_TABLE.name, dynamodb_resource()).create(owner)
    if credits:
        accounts().grant(owner, credits)
    return owner, key


def request(
    method: str, path: str, key: str, body: Any = None, headers: dict[str, str] | None = None, query=None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """An API Gateway proxy event for any route, through the API function's entry point."""
    from api.handler import lambda_handler
    from imagegen_local.lambda_runtime import FakeLambdaContext

    event = with_key(load_event("api/generate_seed_example.json"), key)
    event.update(
        path=path,
        resource=path,
        httpMethod=method,
        body=json.dumps(body) if body is not None else None,
        queryStringParameters=query,
        multiValueQueryStringParameters={k: [v] for k, v in (query or {}).items()} or None,
    )
    for name, value in (headers or {}).items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    answer = lambda_handler(event, FakeLambdaContext(function_name=bp.API_FUNCTION.name))
    answer_headers = {
        **answer.get("headers", {}),
        **{k: v[-1] for k, v in answer.get("multiValueHeaders", {}).items()},
    }
    return answer["statusCode"], json.loads(answer["body"]), answer_headers


def stored_job(owner: str, body: dict[str, Any] = HIGH) -> Job:
    """A QUEUED job written (and debited) by the store, with no workflow behind it."""
    svc = services()
    job = new_job(GenerateRequest.model_validate(body), owner=owner, settings=svc.settings)
    assert svc.jobs.create(job)
    return job


def ledger_entries(owner: str) -> list[str]:
    return sorted(entry["entry"].split("#")[0] for entry in accounts().ledger(owner))


def test_a_job_is_debited_and_the_next_one_the_balance_cannot_cover_is_a_402(stack):
    owner, key = new_account(30)

    status, body, _ = request("POST", "/v2/images/generate", key, HIGH)
    assert status == 202, body
    assert accounts().account(owner).balance == 6

    status, body, _ = request("POST", "/v2/images/generate", key, HIGH)
    assert status == 402
    assert_error_shape(body, "insufficient_credits")
    assert body["error"]["details"] == [{"balance": 6, "cost": 24}]
    assert accounts().account(owner).balance == 6  # nothing stored, nothing taken
    assert ledger_entries(owner) == ["debit", "grant"]


def test_an_owner_without_an_account_gets_a_402_with_a_balance_of_0(stack):
    _, key = new_account(0)
    status, body, _ = request("POST", "/v2/images/generate", key, HIGH)
    assert status == 402 and body["error"]["details"] == [{"balance": 0, "cost": 24}]


def test_a_failed_job_is_refunded_once_however_often_its_failure_is_recorded(stack):
    owner, _ = new_account(30)
    job = stored_job(owner)
    assert accounts().account(owner).balance == 6

    first, changed = services().jobs.update(job.job_id, failed("upstream said no"))
    assert changed and first.status is JobStatus.FAILED
    # The same failure delivered again, by another instance of the store (another function).
    again = type(services().jobs)(bp.JOBS_TABLE.name, dynamodb_resource(), accounts())
    _, changed_again = again.update(job.job_id, failed("upstream said no"))

    assert not changed_again
    assert accounts().account(owner).balance == 30
    assert ledger_entries(owner) == ["debit", "grant", "refund"]
    assert owner not in {d.owner for d in accounts().audit()}


def test_a_job_whose_workflow_cannot_start_answers_503_and_is_refunded(stack, reconfigure):
    owner, key = new_account(30)
    missing = "arn:aws:states:us-east-1:123456789012:stateMachine:accounts-test-does-not-exist"
    with reconfigure(IMAGEGEN_STATE_MACHINE_ARN=missing):
        status, body, _ = request("POST", "/v2/images/generate", key, HIGH)
    assert status == 503, body
    assert accounts().account(owner).balance == 30
    assert ledger_entries(owner) == ["debit", "grant", "refund"]


def test_the_same_idempotency_key_and_body_replays_and_debits_once(stack):
    owner, key = new_account(100)
    headers = {"Idempotency-Key": "order-42"}

    first = request("POST", "/v2/images/generate", key, HIGH, headers)
    # The same request, its JSON written differently.
    reordered = {"gptImageParams": {"quality": "high"}, "model": "gpt-image-1.5", "prompt": HIGH["prompt"]}
    second = request("POST", "/v2/images/generate", key, reordered, headers)

    assert first[0] == second[0] == 202
    assert first[1] == second[1]
    assert "Idempotent-Replayed" not in first[2] and second[2]["Idempotent-Replayed"] == "true"
    assert accounts().account(owner).balance == 76
    # Scoped per account: another owner's same key is another job.
    _, other_key = new_account(100)
    third = request("POST", "/v2/images/generate", other_key, HIGH, headers)
    assert third[0] == 202 and third[1]["jobId"] != first[1]["jobId"]


def test_the_same_idempotency_key_with_another_body_is_a_422(stack):
    owner, key = new_account(100)
    headers = {"Idempotency-Key": "order-43"}
    assert request("POST", "/v2/images/generate", key, HIGH, headers)[0] == 202

    status, body, _ = request("POST", "/v2/images/generate", key, {**HIGH, "prompt": "another"}, headers)

    assert status == 422
    assert_error_shape(body, "idempotency_key_reused")
    assert accounts().account(owner).balance == 76


@pytest.mark.parametrize("value", ["", "x" * 256, "tab\there"])
def test_an_invalid_idempotency_key_is_a_400(stack, value):
    _, key = new_account(100)
    status, body, _ = request("POST", "/v2/images/generate", key, HIGH, {"Idempotency-Key": value})
    assert status == 400
    assert_error_shape(body, "invalid_request")


def test_concurrent_duplicates_make_one_job_and_one_debit(stack, outputs):
    owner, key = new_account(1000)
    headers = {"X-API-Key": key, "Idempotency-Key": f"burst-{uuid.uuid4()}"}

    def submit(_: int) -> tuple[int, str]:
        answer = httpx.post(f"{outputs['ApiUrl']}/v2/images/generate", json=HIGH, headers=headers, timeout=60)
        return answer.status_code, answer.json()["jobId"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(submit, range(20)))

    assert {status for status, _ in answers} == {202}
    assert len({job_id for _, job_id in answers}) == 1
    assert accounts().account(owner).balance == 1000 - 24
    assert ledger_entries(owner) == ["debit", "grant"]


def test_listing_pages_through_the_owners_jobs_newest_first_without_gaps(stack):
    owner, key = new_account(1000)
    made = [stored_job(owner, {**HIGH, "gptImageParams": {"quality": "low"}}).job_id for _ in range(23)]
    services().jobs.update(made[3], failed("for the filter"))
    _, stranger_key = new_account(0)
    stored_job_of_stranger = request("GET", "/v2/jobs", stranger_key, query={"limit": "5"})
    assert stored_job_of_stranger[:2] == (200, {"jobs": [], "nextCursor": None, "hasMore": False})

    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10):
        query = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        status, page, _ = request("GET", "/v2/jobs", key, query=query)
        assert status == 200, page
        assert len(page["jobs"]) <= 10
        seen.extend(page["jobs"])
        cursor = page["nextCursor"]
        assert page["hasMore"] is (cursor is not None)
        if cursor is None:
            break

    assert [job["id"] for job in seen] == list(reversed(made))
    assert set(seen[0]) == set(request("GET", f"/v2/jobs/{made[-1]}", key)[1])  # the same view
    status, failed_only, _ = request("GET", "/v2/jobs", key, query={"status": "FAILED"})
    assert [job["id"] for job in failed_only["jobs"]] == [made[3]]
    # A cursor is the owner's own: another owner's is refused, not followed.
    first_page = request("GET", "/v2/jobs", key, query={"limit": "1"})[1]
    status, body, _ = request("GET", "/v2/jobs", stranger_key, query={"cursor": first_page["nextCursor"]})
    assert status == 400
    assert_error_shape(body, "invalid_request")


@pytest.mark.parametrize(
    "query", [{"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"status": "DONE"}, {"cursor": "bm9wZQ"}]
)
def test_bad_listing_parameters_are_a_400(stack, query):
    _, key = new_account(0)
    status, body, _ = request("GET", "/v2/jobs", key, query=query)
    assert status == 400
    assert_error_shape(body, "invalid_request")


def test_cancel_ends_an_open_job_refunds_it_and_a_terminal_job_is_a_409(stack):
    owner, key = new_account(30)
    job = stored_job(owner)
    _, stranger_key = new_account(0)
    assert request("POST", f"/v2/jobs/{job.job_id}/cancel", stranger_key)[0] == 404

    status, view, _ = request("POST", f"/v2/jobs/{job.job_id}/cancel", key)

    assert status == 200, view
    assert view["status"] == "CANCELED" and view["creditCost"] == 0 and view["id"] == job.job_id
    assert accounts().account(owner).balance == 30
    status, body, _ = request("POST", f"/v2/jobs/{job.job_id}/cancel", key)
    assert status == 409
    assert_error_shape(body, "job_not_cancelable")
    assert ledger_entries(owner) == ["debit", "grant", "refund"]


def test_the_account_shows_balance_usage_and_jobs_by_status(stack):
    owner, key = new_account(100)
    kept = stored_job(owner)
    refunded = stored_job(owner)
    services().jobs.update(refunded.job_id, failed("no"))

    status, body, _ = request("GET", "/v2/account", key)

    assert status == 200, body
    assert body["owner"] == owner and body["balance"] == 76
    assert body["creditsUsedToday"] == body["creditsUsedThisMonth"] == 24  # net of the refund
    assert body["jobsByStatus"]["QUEUED"] == 1 and body["jobsByStatus"]["FAILED"] == 1
    assert kept.job_id


def test_a_disabled_key_is_a_403(stack):
    _, key = new_account(10)
    store = KeyStore(bp.API_KEYS_TABLE.name, dynamodb_resource())
    [listed] = store.list(store.authenticate(key).owner)
    assert store.disable(listed["key_id"])
    status, body = call(with_key(load_event("api/generate_seed_example.json"), key))
    assert status == 403
    assert_error_shape(body, "forbidden")
