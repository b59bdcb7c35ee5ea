"""The API function's real entry point, called in-process with API Gateway events from events/,
against moto: answers, error shapes, and what lands in DynamoDB and Step Functions."""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from imagegen.keys import KeyStore, hash_key
from imagegen.runtime import dynamodb_resource
from imagegen_infra import blueprint as bp
from imagegen_local.lambda_runtime import FakeLambdaContext
from tests.support import load_event


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    from api.handler import lambda_handler

    answer = lambda_handler(event, FakeLambdaContext(function_name=bp.API_FUNCTION.name))
    headers = {
        **answer.get("headers", {}),
        **{k: v[-1] for k, v in answer.get("multiValueHeaders", {}).items()},
    }
    assert headers["Content-Type"] == "application/json"
    return answer["statusCode"], json.loads(answer["body"])


def with_key(event: dict[str, Any], key: str | None) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["headers"].pop("X-API-Key", None)
    event["multiValueHeaders"].pop("X-API-Key", None)
    if key is not None:
        event["headers"]["X-API-Key"] = key
        event["multiValueHeaders"]["X-API-Key"] = [key]
    return event


def get_job_event(job_id: str, key: str) -> dict[str, Any]:
    event = with_key(load_event("api/get_job.json"), key)
    event["path"] = f"/v2/jobs/{job_id}"
    event["pathParameters"] = {"id": job_id}
    return event


def assert_error_shape(body: dict[str, Any], code: str) -> None:
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)


def test_seed_example_is_accepted_stored_and_started(stack, outputs):
    status, body = call(with_key(load_event("api/generate_seed_example.json"), outputs["ApiKey"]))

    assert status == 202
    assert body["status"] == "QUEUED" and set(body) == {"jobId", "status"}
    item = (
        boto3.resource("dynamodb").Table(outputs["JobsTable"]).get_item(Key={"job_id": body["jobId"]})["Item"]
    )
    assert item["owner"] == "local-user" and item["credit_cost"] == 24
    assert item["params"]["aspect_ratio"] == "3:2" and item["params"]["output_format"] == "png"
    execution_arn = outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + body["jobId"]
    execution = boto3.client("stepfunctions").describe_execution(executionArn=execution_arn)
    assert json.loads(execution["input"]) == {"jobId": body["jobId"]}


def test_defaults_of_the_seed_are_applied(stack, outputs):
    status, body = call(with_key(load_event("api/generate_three_medium_webp.json"), outputs["ApiKey"]))
    assert status == 202

    status, view = call(get_job_event(body["jobId"], outputs["ApiKey"]))

    assert status == 200
    assert view["gptImageParams"] == {
        "quality": "medium",
        "aspect_ratio": "1:1",
        "output_format": "webp",
        "background": "auto",
        "input_images": None,
        "input_fidelity": "low",
        "number_of_images": 3,
    }
    assert view["creditCost"] == 27  # the seed's own example: 3 x 9


def test_every_invalid_field_is_reported_in_one_400(stack, outputs):
    status, body = call(with_key(load_event("api/generate_invalid_params.json"), outputs["ApiKey"]))

    assert status == 400
    assert_error_shape(body, "invalid_request")
    fields = {d["field"] for d in body["error"]["details"]}
    assert {
        "prompt",
        "model",
        "gptImageParams.quality",
        "gptImageParams.aspectRatio",
        "gptImageParams.number_of_images",
    } <= fields


@pytest.mark.parametrize("body", ["prompt=a fox", "[1, 2]", "", "null"])
def test_a_body_that_is_not_a_json_object_is_a_400(stack, outputs, body):
    event = with_key(load_event("api/generate_not_json.json"), outputs["ApiKey"])
    event["body"] = body

    status, answer = call(event)

    assert status == 400
    assert_error_shape(answer, "invalid_request")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"background": "transparent", "output_format": "jpeg"}, "gptImageParams.background"),
        ({"input_images": ["file:///etc/passwd"]}, "gptImageParams.input_images"),
        ({"number_of_images": 0}, "gptImageParams.number_of_images"),
    ],
)
def test_invalid_param_combinations_are_a_400(stack, outputs, params, field):
    event = with_key(load_event("api/generate_seed_example.json"), outputs["ApiKey"])
    event["body"] = json.dumps({"prompt": "x", "model": "gpt-image-1.5", "gptImageParams": params})

    status, body = call(event)

    assert status == 400
    assert field in {d["field"] for d in body["error"]["details"]}


def test_input_images_on_private_addresses_are_refused(stack, outputs):
    event = with_key(load_event("api/generate_seed_example.json"), outputs["ApiKey"])
    event["body"] = json.dumps(
        {
            "prompt": "edit",
            "model": "gpt-image-1.5",
            "gptImageParams": {"input_images": ["http://169.254.169.254/latest/meta-data/"]},
        }
    )

    status, body = call(event)

    assert status == 400
    assert_error_shape(body, "unsafe_url")


def test_missing_key_is_a_401(stack):
    status, body = call(load_event("api/generate_missing_key.json"))

    assert status == 401
    assert_error_shape(body, "unauthorized")
    assert "required" in body["error"]["message"]


def test_unknown_key_is_a_401(stack):
    status, body = call(with_key(load_event("api/generate_seed_example.json"), "igk_not_a_key"))

    assert status == 401
    assert body["error"]["message"] == "Invalid API key"


def test_inactive_key_is_a_403(stack, outputs):
    key = KeyStore(outputs.get("ApiKeysTable", bp.API_KEYS_TABLE.name), dynamodb_resource()).create(
        "someone-else"
    )
    boto3.resource("dynamodb").Table(bp.API_KEYS_TABLE.name).update_item(
        Key={"key_hash": hash_key(key)},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "inactive"},
    )

    status, body = call(with_key(load_event("api/generate_seed_example.json"), key))

    assert status == 403
    assert_error_shape(body, "forbidden")


def test_unknown_job_is_a_404(stack, outputs):
    status, body = call(get_job_event("00000000-0000-0000-0000-000000000000", outputs["ApiKey"]))

    assert status == 404
    assert_error_shape(body, "not_found")


def test_another_owners_job_is_a_404(stack, outputs):
    _, submitted = call(with_key(load_event("api/generate_seed_example.json"), outputs["ApiKey"]))
    stranger = KeyStore(bp.API_KEYS_TABLE.name, dynamodb_resource()).create("stranger")

    status, body = call(get_job_event(submitted["jobId"], stranger))

    assert status == 404
    assert_error_shape(body, "not_found")


def test_unknown_route_is_a_404_in_our_shape(stack, outputs):
    event = with_key(load_event("api/get_job.json"), outputs["ApiKey"])
    event["path"] = "/v1/nothing-here"

    status, body = call(event)

    assert status == 404
    assert_error_shape(body, "not_found")


def test_a_workflow_that_cannot_start_fails_the_job_and_answers_503(stack, outputs, monkeypatch):
    from imagegen.runtime import services

    def refuse(**_: Any) -> None:
        raise boto3.client("stepfunctions").exceptions.ClientError(
            {"Error": {"Code": "ServiceUnavailable", "Message": "try later"}}, "StartExecution"
        )

    monkeypatch.setattr(services().starter.sfn, "start_execution", refuse)
    status, body = call(with_key(load_event("api/generate_seed_example.json"), outputs["ApiKey"]))

    assert status == 503
    assert_error_shape(body, "service_unavailable")
    jobs = boto3.resource("dynamodb").Table(outputs["JobsTable"]).scan()["Items"]
    failed = [j for j in jobs if j.get("error", "").startswith("could not start the job's workflow")]
    assert failed and all(j["status"] == "FAILED" for j in failed)


def test_a_request_no_configured_provider_can_serve_is_a_400_before_anything_is_stored(
    stack, outputs, reconfigure
):
    event = with_key(load_event("api/generate_three_medium_webp.json"), outputs["ApiKey"])
    jobs_before = boto3.resource("dynamodb").Table(outputs["JobsTable"]).scan(Select="COUNT")["Count"]

    with reconfigure(IMAGEGEN_PROVIDER="apiinone"):
        status, body = call(event)
    with reconfigure(IMAGEGEN_PROVIDER="apiinone", IMAGEGEN_PROVIDER_FAILOVER="openai"):
        served_by_failover, _ = call(event)

    assert status == 400
    assert_error_shape(body, "invalid_request")
    assert "PNG only" in body["error"]["message"]
    assert (
        boto3.resource("dynamodb").Table(outputs["JobsTable"]).scan(Select="COUNT")["Count"]
        == jobs_before + 1
    )
    assert served_by_failover == 202  # OpenAI, next in the chain, renders webp


def test_allowed_origins_get_the_cors_header_on_answers_and_errors(stack, outputs, reconfigure):
    from api.handler import lambda_handler

    def answer_headers(event: dict[str, Any]) -> dict[str, list[str]]:
        answer = lambda_handler(event, FakeLambdaContext(function_name=bp.API_FUNCTION.name))
        return answer.get("multiValueHeaders") or {k: [v] for k, v in answer["headers"].items()}

    ok = with_key(load_event("api/generate_seed_example.json"), outputs["ApiKey"])
    ok["headers"]["Origin"] = "https://app.example.com"
    error = with_key(ok, None)
    stranger = copy.deepcopy(ok)
    stranger["headers"]["Origin"] = "https://evil.example.com"

    with reconfigure(IMAGEGEN_CORS_ALLOW_ORIGINS="https://app.example.com"):
        assert answer_headers(ok)["Access-Control-Allow-Origin"] == ["https://app.example.com"]
        assert answer_headers(error)["Access-Control-Allow-Origin"] == ["https://app.example.com"]
        assert "Access-Control-Allow-Origin" not in answer_headers(stranger)
    assert "Access-Control-Allow-Origin" not in answer_headers(ok)  # CORS off by default


def account_balance(key: str) -> int:
    event = with_key(load_event("api/get_job.json"), key)
    event.update(resource="/v2/account", path="/v2/account", pathParameters=None)
    status, body = call(event)
    assert status == 200, body
    return int(body["balance"])


def test_a_submit_whose_first_write_answer_was_lost_still_starts_its_workflow(stack, outputs):
    """The PutItem lands but its answer is lost (a read timeout); botocore retries it and the retry
    meets the record the first attempt wrote. That record is this request's own: it must start."""
    from botocore.exceptions import ReadTimeoutError

    from imagegen.runtime import services

    client = services().jobs.table.meta.client
    landed: list[Any] = []

    def land_then_lose_the_answer(request: Any, **_: Any) -> None:
        if not landed:
            landed.append(client._endpoint.http_session.send(request))  # really written
            raise ReadTimeoutError(endpoint_url=request.url)

    # The job is written with its debit in one transaction (imagegen.jobs.JobStore.create).
    writes = ("before-send.dynamodb.TransactWriteItems", "before-send.dynamodb.PutItem")
    balance = account_balance(outputs["ApiKey"])
    for write in writes:
        client.meta.events.register(write, land_then_lose_the_answer)
    try:
        status, body = call(with_key(load_event("api/generate_seed_example.json"), outputs["ApiKey"]))
    finally:
        for write in writes:
            client.meta.events.unregister(write, land_then_lose_the_answer)

    assert landed and status == 202
    cost = services().jobs.get(body["jobId"]).credit_cost
    assert cost > 0 and account_balance(outputs["ApiKey"]) == balance - cost  # debited once
    execution_arn = outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + ":" + body["jobId"]
    execution = boto3.client("stepfunctions").describe_execution(executionArn=execution_arn)
    assert json.loads(execution["input"]) == {"jobId": body["jobId"]}


@pytest.mark.parametrize(
    "urls",
    [
        ["http://127.0.0.1:9/" + "a" * 390_000],  # one URL just under DynamoDB's item limit
        [f"http://127.0.0.1:9/{i}/" + "a" * 30_000 for i in range(16)],  # together far over it
    ],
    ids=["one-huge-url", "many-long-urls"],
)
def test_a_request_too_large_for_its_job_record_is_a_400_before_anything_is_stored(stack, outputs, urls):
    table = boto3.resource("dynamodb").Table(outputs["JobsTable"])
    jobs_before = table.scan(Select="COUNT")["Count"]
    event = with_key(load_event("api/generate_seed_example.json"), outputs["ApiKey"])
    event["body"] = json.dumps(
        {"prompt": "edit", "model": "gpt-image-1.5", "gptImageParams": {"input_images": urls}}
    )

    status, body = call(event)

    assert status == 400
    assert_error_shape(body, "invalid_request")
    assert table.scan(Select="COUNT")["Count"] == jobs_before
