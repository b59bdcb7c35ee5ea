"""apiframe v2 contract: the request we send and how we read its answers (httpx MockTransport)."""

from __future__ import annotations

import json

import httpx
import pytest

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError
from imagegen.models import GenerateRequest, JobStatus
from imagegen.providers import provider_for
from imagegen.providers.base import GenerationRequest, ProviderConfig

SEED_BODY = {
    "prompt": "A whimsical watercolor painting of a fox reading a book in a sunlit forest clearing",
    "model": "gpt-image-1.5",
    "gptImageParams": {"quality": "high", "aspect_ratio": "3:2", "output_format": "png"},
}
# The seed's "Example result" of a COMPLETED job.
SEED_RESULT = {"images": ["https://cdn2.apiframe.ai/images/a1b2c3d4-e5f6-7890-abcd-ef1234567890-1.png"]}


def provider(handler):
    config = ProviderConfig(base_url="https://api.apiframe.test", api_key="afk_test")
    client = httpx.Client(base_url=config.base_url, transport=httpx.MockTransport(handler))
    return provider_for("apiframe", config, client)


def request(job_id: str = "job-1") -> GenerationRequest:
    parsed = GenerateRequest.model_validate(SEED_BODY)
    return GenerationRequest(job_id=job_id, prompt=parsed.prompt, params=parsed.gptImageParams)


def test_create_sends_the_seed_shape_with_key_and_idempotency_key():
    seen = {}

    def handler(http_request: httpx.Request) -> httpx.Response:
        seen.update(
            method=http_request.method,
            path=http_request.url.path,
            headers=http_request.headers,
            body=json.loads(http_request.content),
        )
        return httpx.Response(202, json={"jobId": "up-1", "status": "QUEUED"})

    created = provider(handler).create_task(request("job-42"), 0)

    assert created.task_id == "up-1" and created.images == []
    assert (seen["method"], seen["path"]) == ("POST", "/v2/images/generate")
    assert seen["headers"]["x-api-key"] == "afk_test"
    assert seen["headers"]["idempotency-key"] == "imagegen-job-42-0"
    assert seen["body"]["prompt"] == SEED_BODY["prompt"] and seen["body"]["model"] == "gpt-image-1.5"
    assert seen["body"]["gptImageParams"] == {
        **SEED_BODY["gptImageParams"],
        "background": "auto",
        "input_fidelity": "low",
        "number_of_images": 1,
    }


@pytest.mark.parametrize(
    ("body", "status", "progress", "urls"),
    [
        ({"status": "QUEUED", "progress": 0}, JobStatus.PROCESSING, 0, []),
        ({"status": "PROCESSING", "progress": 40}, JobStatus.PROCESSING, 40, []),
        ({"status": "processing", "progress": 100}, JobStatus.PROCESSING, 99, []),
        (
            {"status": "COMPLETED", "progress": 100, "result": SEED_RESULT},
            JobStatus.COMPLETED,
            100,
            SEED_RESULT["images"],
        ),
    ],
)
def test_statuses_are_normalised(body, status, progress, urls):
    state = provider(lambda _: httpx.Response(200, json={"id": "up-1", **body})).get_task("up-1")
    assert (state.status, state.progress, state.image_urls) == (status, progress, urls)


def test_a_failed_job_carries_the_providers_reason():
    state = provider(
        lambda _: httpx.Response(200, json={"status": "FAILED", "error": "NSFW content"})
    ).get_task("x")
    assert state.status is JobStatus.FAILED and state.error == "NSFW content"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "COMPLETED", "result": None},
        {"status": "COMPLETED", "result": {"images": [1]}},
        {"status": "EXPLODED"},
        ["not", "an", "object"],
    ],
)
def test_unreadable_answers_are_terminal(body):
    with pytest.raises(UpstreamTerminalError):
        provider(lambda _: httpx.Response(200, json=body)).get_task("x")


def test_429_is_transient_and_honours_retry_after():
    answer = httpx.Response(429, headers={"Retry-After": "7"}, json={"error": {"message": "slow down"}})
    with pytest.raises(UpstreamTransientError) as caught:
        provider(lambda _: answer).create_task(request(), 0)
    assert caught.value.retry_after == 7.0 and "slow down" in caught.value.message


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_transient(status):
    with pytest.raises(UpstreamTransientError):
        provider(lambda _: httpx.Response(status, text="bad gateway")).get_task("x")


def test_timeouts_and_connection_errors_are_transient():
    def timeout(http_request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=http_request)

    def refused(http_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=http_request)

    for handler in (timeout, refused):
        with pytest.raises(UpstreamTransientError):
            provider(handler).create_task(request(), 0)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": {"code": "invalid_request", "message": "prompt too long"}}, "prompt too long"),
        (401, {"error": "Invalid API key"}, "Invalid API key"),
        (403, {"message": "API key is inactive"}, "API key is inactive"),
    ],
)
def test_4xx_is_terminal_with_the_providers_words(status, body, message):
    with pytest.raises(UpstreamTerminalError, match=message):
        provider(lambda _: httpx.Response(status, json=body)).create_task(request(), 0)
