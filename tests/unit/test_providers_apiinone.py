"""apiin.one contract (seed 001): the request we send, both error shapes, body codes under
HTTP 200, status words in any case and the undocumented result, over httpx.MockTransport."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError
from imagegen.models import GptImageParams, JobStatus
from imagegen.providers import provider_for
from imagegen.providers.apiinone import QUALITY, normalise_status, parse_task, result_urls
from imagegen.providers.base import GenerationRequest, ProviderConfig, UpstreamUnavailableError

# The seed's example request and answers, verbatim.
SEED_PROMPT = 'A modern logo design for a coffee shop called "Bean & Brew" with clean typography'
SEED_REQUEST = {"model": "gpt-image-1-5", "prompt": SEED_PROMPT, "quality": "medium", "aspect_ratio": "1:1"}
SEED_CREATED = {
    "code": 200,
    "message": "success",
    "data": {"task_id": "n42xxxx_gptimg", "status": "IN_PROGRESS"},
}
SEED_ERROR = {"error": {"code": 400, "message": "Invalid parameters", "type": "invalid_request"}}
IMAGE = "https://cdn.apiin.one/out/n42xxxx_gptimg.png"


def provider(handler):
    config = ProviderConfig(base_url="https://apiin.one.test", api_key="aio_test")
    client = httpx.Client(base_url=config.base_url, transport=httpx.MockTransport(handler))
    return provider_for("apiinone", config, client)


def answer(payload: Any, status: int = 200, headers: dict[str, str] | None = None):
    return lambda _: httpx.Response(status, json=payload, headers=headers)


def request(prompt: str = SEED_PROMPT, **params: Any) -> GenerationRequest:
    params = {"output_format": "png", **params}
    return GenerationRequest(job_id="job-1", prompt=prompt, params=GptImageParams(**params))


def envelope(data: Any) -> dict[str, Any]:
    return {"code": 200, "message": "success", "data": data}


# --- create -----------------------------------------------------------------------------------
def test_create_sends_the_seed_request_with_a_bearer_key_and_reads_the_task_id():
    seen: dict[str, Any] = {}

    def handler(http_request: httpx.Request) -> httpx.Response:
        seen.update(
            method=http_request.method,
            path=http_request.url.path,
            auth=http_request.headers["authorization"],
            body=json.loads(http_request.content),
        )
        return httpx.Response(200, json=SEED_CREATED)

    created = provider(handler).create_task(request(quality="medium", aspect_ratio="1:1"), 0)

    assert created.task_id == "n42xxxx_gptimg" and created.images == []
    assert (seen["method"], seen["path"], seen["auth"]) == (
        "POST",
        "/api/v1/images/generations",
        "Bearer aio_test",
    )
    assert seen["body"] == SEED_REQUEST


@pytest.mark.parametrize(
    ("ours", "theirs"), [("low", "medium"), ("medium", "medium"), ("auto", "high"), ("high", "high")]
)
def test_quality_maps_to_the_two_tiers_never_below_what_was_paid_for(ours, theirs):
    bodies = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(http_request.content))
        return httpx.Response(200, json=SEED_CREATED)

    provider(handler).create_task(request(quality=ours), 0)

    assert bodies[0]["quality"] == theirs == QUALITY[ours]


def test_edits_pass_input_urls_and_the_aspect_ratio():
    bodies = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(http_request.content))
        return httpx.Response(200, json=SEED_CREATED)

    urls = ["https://example.com/a.png", "https://example.com/b.png"]
    provider(handler).create_task(request(input_images=urls, aspect_ratio="2:3", input_fidelity="high"), 0)

    assert bodies[0]["input_urls"] == urls and bodies[0]["aspect_ratio"] == "2:3"
    assert "input_fidelity" not in bodies[0]  # apiin.one has no such parameter


@pytest.mark.parametrize("count", [1, 3, 10])
def test_one_task_per_image(count):
    assert provider(answer(SEED_CREATED)).task_count(request(number_of_images=count)) == count


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"output_format": "webp"}, 'renders PNG only; ask for output_format "png"'),
        ({"output_format": "jpeg"}, '(this job asked for "jpeg")'),
        ({"background": "transparent"}, "cannot render a transparent background"),
    ],
)
def test_what_apiinone_cannot_render_is_refused_before_anything_is_created(params, reason):
    calls: list[httpx.Request] = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        calls.append(http_request)
        return httpx.Response(200, json=SEED_CREATED)

    apiinone = provider(handler)

    with pytest.raises(UpstreamTerminalError, match=re.escape(reason)):
        apiinone.create_task(request(**params), 0)

    assert calls == [] and apiinone.refusal(request(**params))
    assert apiinone.refusal(request(background="opaque")) is None


@pytest.mark.parametrize("payload", [envelope({"status": "IN_PROGRESS"}), envelope(None), {"data": []}])
def test_a_create_answer_without_a_task_id_is_terminal(payload):
    with pytest.raises(UpstreamTerminalError):
        provider(answer(payload)).create_task(request(), 0)


# --- errors -----------------------------------------------------------------------------------
def test_the_documented_error_shape_is_terminal_with_its_message():
    with pytest.raises(UpstreamTerminalError, match=r"apiin.one: Invalid parameters \(invalid_request\)"):
        provider(answer(SEED_ERROR, status=400)).create_task(request(), 0)


@pytest.mark.parametrize(
    ("status", "message"), [(401, "Invalid API key"), (402, "Insufficient credits"), (404, "Task not found")]
)
def test_the_envelope_error_shape_is_terminal_with_its_message(status, message):
    payload = {"code": status, "message": message, "data": None}
    with pytest.raises(UpstreamTerminalError, match=message):
        provider(answer(payload, status=status)).get_task("t-1")


@pytest.mark.parametrize("http_status", [200, 429])
def test_a_429_in_the_body_or_the_status_line_is_transient_and_honours_retry_after(http_status):
    payload = {"code": 429, "message": "Too many requests", "data": None}
    with pytest.raises(UpstreamUnavailableError) as caught:
        provider(answer(payload, status=http_status, headers={"Retry-After": "4"})).create_task(request(), 0)
    assert caught.value.retry_after == 4.0 and "Too many requests" in caught.value.message


@pytest.mark.parametrize(
    ("payload", "transient"),
    [
        ({"code": 500, "message": "internal error", "data": None}, True),
        ({"code": "502", "message": "bad gateway", "data": None}, True),
        ({"code": 400, "message": "prompt is required", "data": None}, False),
        ({"code": 403, "message": "account suspended", "data": None}, False),
        (SEED_ERROR, False),
        ({"error": {"code": 503, "message": "overloaded", "type": "server_error"}}, True),
        ({"error": {"message": "content policy violation", "type": "content_policy"}}, False),
    ],
)
def test_body_codes_under_http_200_count_like_http_statuses(payload, transient):
    expected = UpstreamTransientError if transient else UpstreamTerminalError
    with pytest.raises(expected):
        provider(answer(payload)).create_task(request(), 0)


def test_an_answer_that_is_not_json_is_transient_on_the_same_provider():
    # A cut body or a proxy's page: the upstream got the call, as when an answer is lost
    # (imagegen.transport); retried there within the budget, never failed over.
    with pytest.raises(UpstreamTransientError, match="not JSON") as caught:
        provider(lambda _: httpx.Response(200, text="<html>maintenance</html>")).get_task("t-1")
    assert not isinstance(caught.value, UpstreamUnavailableError)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_is_transient(status):
    with pytest.raises(UpstreamTransientError):
        provider(answer({"code": status, "message": "oops", "data": None}, status=status)).get_task("t-1")


def test_a_read_timeout_is_transient_but_may_have_created_a_task():
    def timeout(http_request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=http_request)

    with pytest.raises(UpstreamTransientError) as caught:
        provider(timeout).create_task(request(), 0)
    assert not isinstance(caught.value, UpstreamUnavailableError)  # no failover after this


# --- polling ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("IN_PROGRESS", JobStatus.PROCESSING),
        ("in_progress", JobStatus.PROCESSING),
        ("processing", JobStatus.PROCESSING),
        ("Pending", JobStatus.PROCESSING),
        ("QUEUED", JobStatus.PROCESSING),
        ("in-progress", JobStatus.PROCESSING),
        ("completed", JobStatus.COMPLETED),
        ("COMPLETED", JobStatus.COMPLETED),
        ("success", JobStatus.COMPLETED),
        ("Succeeded", JobStatus.COMPLETED),
        ("failed", JobStatus.FAILED),
        ("FAILED", JobStatus.FAILED),
        ("error", JobStatus.FAILED),
        ("exploded", None),
        ("", None),
        (None, None),
    ],
)
def test_status_words_are_normalised_case_insensitively(word, status):
    assert normalise_status(word) is status


def test_poll_reads_a_task_in_progress():
    seen = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        seen.append((http_request.url.path, http_request.headers["authorization"]))
        return httpx.Response(
            200, json=envelope({"task_id": "n42xxxx_gptimg", "status": "IN_PROGRESS", "progress": 40})
        )

    state = provider(handler).get_task("n42xxxx_gptimg")

    assert (state.status, state.progress) == (JobStatus.PROCESSING, 40)
    assert seen == [("/api/v1/tasks/n42xxxx_gptimg", "Bearer aio_test")]


@pytest.mark.parametrize(
    "data",
    [
        {"result": {"images": [IMAGE]}},
        {"result": {"urls": [IMAGE]}},
        {"result": {"images": [{"url": IMAGE, "width": 1024}]}},
        {"result": [IMAGE]},
        {"result": IMAGE},
        {"output_urls": [IMAGE]},
        {"images": [{"url": IMAGE}]},
        {"output": IMAGE},
        {"url": IMAGE},
        {"result": {"images": []}, "output_urls": [IMAGE]},  # an empty first place is skipped
        {"result": {"images": [IMAGE]}, "output_urls": [IMAGE]},  # what the simulator sends
    ],
)
def test_a_completed_result_is_read_from_any_of_the_usual_places(data):
    state = parse_task({"task_id": "t", "status": "completed", **data})
    assert (state.status, state.progress, state.image_urls) == (JobStatus.COMPLETED, 100, [IMAGE])


def test_one_image_per_task_even_if_more_urls_come_back():
    assert result_urls({"output_urls": [IMAGE, IMAGE + "?2"]}) == [IMAGE, IMAGE + "?2"]
    assert parse_task({"status": "success", "output_urls": [IMAGE, IMAGE + "?2"]}).image_urls == [IMAGE]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"result": None},
        {"result": {"images": [42]}},
        {"result": {"images": ["ftp://x/y.png"]}},
        {"output": {"file": IMAGE}},
    ],
)
def test_an_unreadable_completed_result_fails_clearly(data):
    with pytest.raises(UpstreamTerminalError, match="no image URL could be read"):
        provider(answer(envelope({"status": "completed", **data}))).get_task("t-1")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"error": {"message": "content policy violation"}}, "content policy violation"),
        ({"error": "NSFW"}, "NSFW"),
        ({"fail_reason": "input image unreadable"}, "input image unreadable"),
        ({}, "the task failed"),
    ],
)
def test_a_failed_task_carries_the_reason(data, reason):
    state = parse_task({"status": "failed", **data})
    assert state.status is JobStatus.FAILED and state.error == f"apiin.one: {reason}"


def test_an_unknown_status_is_terminal():
    with pytest.raises(UpstreamTerminalError, match="unknown task status 'EXPLODED'"):
        provider(answer(envelope({"status": "EXPLODED"}))).get_task("t-1")
