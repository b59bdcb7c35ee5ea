"""OpenAI Images contract (REFERENCE §3): generations as JSON, edits as multipart with the inputs
fetched through the SSRF guard, images decoded from b64_json and checked, errors classified;
all over httpx.MockTransport."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError
from imagegen.images import sniff_image
from imagegen.models import GptImageParams
from imagegen.providers import provider_for
from imagegen.providers.base import GenerationRequest, ProviderConfig, UpstreamUnavailableError
from imagegen.providers.openai import SIZE_BY_ASPECT, parse_images
from imagegen_local.simulator.multipart import parse_form
from tests.images import image_bytes

INPUT_URL = "http://127.0.0.1:9/inputs/cat.png"


def encoded(image_format: str = "png", size: tuple[int, int] = (8, 8)) -> bytes:
    return image_bytes(image_format, size)


def images_answer(*images: bytes, **extra: Any) -> dict[str, Any]:
    """The shape of an Images API answer: created, data[].b64_json, usage (REFERENCE §3)."""
    return {
        "created": 1_760_000_000,
        "data": [{"b64_json": base64.b64encode(image).decode()} for image in images],
        "usage": {
            "input_tokens": 12,
            "output_tokens": 272,
            "total_tokens": 284,
            "input_tokens_details": {"text_tokens": 12, "image_tokens": 0},
        },
        **extra,
    }


def provider(handler, **config: Any):
    settings = ProviderConfig(base_url="https://api.openai.test", api_key="sk-test", **config)
    client = httpx.Client(base_url=settings.base_url, transport=httpx.MockTransport(handler))
    return provider_for("openai", settings, client)


def request(**params: Any) -> GenerationRequest:
    return GenerationRequest(job_id="job-1", prompt="a red fox", params=GptImageParams(**params))


def ok(*images: bytes):
    return lambda _: httpx.Response(200, json=images_answer(*images), headers={"x-request-id": "req_123"})


# --- generations ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("aspect", "size"), [("1:1", "1024x1024"), ("3:2", "1536x1024"), ("2:3", "1024x1536")]
)
def test_aspect_ratio_maps_to_size(aspect, size):
    assert SIZE_BY_ASPECT[aspect] == size


def test_a_generation_is_one_json_call_with_every_option_and_the_images_come_back_inline():
    seen: dict[str, Any] = {}
    pictures = [encoded("webp"), encoded("webp", (4, 4))]

    def handler(http_request: httpx.Request) -> httpx.Response:
        seen.update(
            path=http_request.url.path,
            auth=http_request.headers["authorization"],
            body=json.loads(http_request.content),
            timeout=http_request.extensions["timeout"],
        )
        return httpx.Response(200, json=images_answer(*pictures), headers={"x-request-id": "req_123"})

    params = {
        "quality": "high",
        "aspect_ratio": "3:2",
        "output_format": "webp",
        "background": "opaque",
        "number_of_images": 2,
    }
    openai = provider(handler, render_timeout_seconds=180.0)
    created = openai.create_task(request(**params), 0)

    assert openai.task_count(request(**params)) == 1
    assert (seen["path"], seen["auth"]) == ("/v1/images/generations", "Bearer sk-test")
    assert seen["body"] == {
        "model": "gpt-image-1.5",
        "prompt": "a red fox",
        "n": 2,
        "size": "1536x1024",
        "quality": "high",
        "background": "opaque",
        "output_format": "webp",
    }
    assert seen["timeout"]["read"] == 180.0  # the render timeout, not the short call timeout
    assert created.task_id == "req_123"
    assert [(i.data, i.content_type) for i in created.images] == [(p, "image/webp") for p in pictures]


def test_without_a_request_id_the_task_is_named_after_the_job_and_slot():
    created = provider(lambda _: httpx.Response(200, json=images_answer(encoded()))).create_task(
        request(output_format="png"), 0
    )
    assert created.task_id == "job-1-0"


def test_there_is_nothing_to_poll():
    with pytest.raises(UpstreamTerminalError, match="synchronously"):
        provider(ok(encoded())).get_task("req_123")


# --- edits ------------------------------------------------------------------------------------
def edit_handler(inputs: dict[str, httpx.Response], seen: dict[str, Any], answer: bytes):
    def handler(http_request: httpx.Request) -> httpx.Response:
        if http_request.method == "GET":
            seen.setdefault("fetched", []).append(
                (
                    str(http_request.url),
                    http_request.headers.get("host"),
                    "authorization" in http_request.headers,
                )
            )
            return inputs[http_request.url.path]
        seen["path"] = http_request.url.path
        seen["parts"] = parse_form(http_request.headers["content-type"], http_request.read())
        return httpx.Response(200, json=images_answer(answer))

    return handler


def test_an_edit_fetches_each_input_through_the_guard_and_sends_multipart_image_parts():
    seen: dict[str, Any] = {}
    cat, dog = encoded("png"), encoded("jpeg")
    inputs = {
        "/inputs/cat.png": httpx.Response(200, content=cat, headers={"content-type": "image/png"}),
        "/inputs/dog": httpx.Response(200, content=dog, headers={"content-type": "application/octet-stream"}),
    }
    openai = provider(edit_handler(inputs, seen, encoded("png")), allow_loopback_urls=True)

    created = openai.create_task(
        request(
            input_images=[INPUT_URL, "http://127.0.0.1:9/inputs/dog"],
            input_fidelity="high",
            output_format="png",
            quality="low",
        ),
        0,
    )

    assert len(created.images) == 1
    # Both inputs fetched from the pinned address, with the Host of the URL and never our key.
    assert seen["fetched"] == [
        (INPUT_URL, "127.0.0.1:9", False),
        ("http://127.0.0.1:9/inputs/dog", "127.0.0.1:9", False),
    ]
    assert seen["path"] == "/v1/images/edits"
    fields = {p.name: p.data.decode() for p in seen["parts"] if p.filename is None}
    assert fields == {
        "model": "gpt-image-1.5",
        "prompt": "a red fox",
        "n": "1",
        "size": "1024x1024",
        "quality": "low",
        "background": "auto",
        "output_format": "png",
        "input_fidelity": "high",
    }
    files = [(p.name, p.filename, p.content_type, p.data) for p in seen["parts"] if p.filename is not None]
    assert files == [
        ("image[]", "input-1.png", "image/png", cat),
        ("image[]", "input-2.jpeg", "image/jpeg", dog),
    ]


def test_an_input_on_a_private_address_is_refused_unless_the_local_stack_allows_loopback():
    seen: dict[str, Any] = {}
    inputs = {"/inputs/cat.png": httpx.Response(200, content=encoded())}
    with pytest.raises(UpstreamTerminalError, match=r"input image 1: .*non-public"):
        provider(edit_handler(inputs, seen, encoded())).create_task(
            request(input_images=[INPUT_URL], output_format="png"), 0
        )
    assert "fetched" not in seen and "path" not in seen


@pytest.mark.parametrize(
    ("served", "error", "match"),
    [
        (httpx.Response(200, content=b"x" * 2048), UpstreamTerminalError, "larger than"),
        (
            httpx.Response(200, content=b"x" * 100, headers={"content-length": "999999"}),
            UpstreamTerminalError,
            "larger than",
        ),
        (
            httpx.Response(200, content=b"<html>not an image</html>"),
            UpstreamTerminalError,
            "not a PNG, JPEG or WebP",
        ),
        (httpx.Response(404, content=b"gone"), UpstreamTerminalError, "HTTP 404"),
        (httpx.Response(503, content=b"busy"), UpstreamUnavailableError, "HTTP 503"),
    ],
)
def test_an_unusable_input_image_fails_before_openai_is_called(served, error, match):
    seen: dict[str, Any] = {}
    openai = provider(
        edit_handler({"/inputs/cat.png": served}, seen, encoded()),
        allow_loopback_urls=True,
        max_input_image_bytes=1024,
    )
    with pytest.raises(error, match=match):
        openai.create_task(request(input_images=[INPUT_URL], output_format="png"), 0)
    assert "path" not in seen


# --- errors -----------------------------------------------------------------------------------
def openai_error(
    status: int, message: str, code: str | None, kind: str = "invalid_request_error", **headers: str
):
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return lambda _: httpx.Response(status, json=payload, headers=headers)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (
            openai_error(400, "Your request was rejected by the safety system.", "moderation_blocked"),
            r"rejected by the safety system\. \(moderation_blocked\)",
        ),
        (
            openai_error(
                400, "This request has been blocked by our content filters.", "content_policy_violation"
            ),
            "content_policy_violation",
        ),
        (openai_error(404, "The model `gpt-image-1.5` does not exist.", "model_not_found"), "does not exist"),
        (openai_error(401, "Incorrect API key provided.", "invalid_api_key"), "Incorrect API key"),
        (
            openai_error(429, "You exceeded your current quota.", "insufficient_quota", "insufficient_quota"),
            "exceeded your current quota",
        ),
    ],
)
def test_validation_policy_unknown_model_auth_and_quota_are_terminal(answer, match):
    with pytest.raises(UpstreamTerminalError, match=match):
        provider(answer).create_task(request(), 0)


def test_a_rate_limit_is_transient_and_honours_retry_after():
    answer = openai_error(
        429, "Rate limit reached", "rate_limit_exceeded", "rate_limit_exceeded", **{"Retry-After": "3"}
    )
    with pytest.raises(UpstreamUnavailableError) as caught:
        provider(answer).create_task(request(), 0)
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("status", [500, 502, 504])
def test_server_errors_are_transient(status):
    with pytest.raises(UpstreamTransientError):
        provider(openai_error(status, "The server had an error", None, "server_error")).create_task(
            request(), 0
        )


def test_a_render_that_outlasts_the_read_timeout_is_transient():
    def hang(http_request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=http_request)

    with pytest.raises(UpstreamTransientError, match="openai: timed out") as caught:
        provider(hang).create_task(request(), 0)
    assert not isinstance(caught.value, UpstreamUnavailableError)


# --- answers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"data": []}, "carried no images"),
        ({"created": 1}, "carried no images"),
        ([], "carried no images"),
        ({"data": [{"url": "https://x/y.png"}]}, "has no b64_json"),
        ({"data": [{"b64_json": "%%% not base64 %%%"}]}, "not valid base64"),
        ({"data": [{"b64_json": base64.b64encode(b"plain text").decode()}]}, "not a PNG, JPEG or WebP"),
        (images_answer(encoded("jpeg")), "returned jpeg although png was asked for"),
    ],
)
def test_unreadable_answers_are_terminal(body, match):
    with pytest.raises(UpstreamTerminalError, match=match):
        parse_images(body, "png", 1)


def test_fewer_images_than_paid_for_is_terminal_and_extra_ones_are_dropped():
    with pytest.raises(UpstreamTerminalError, match="returned 1 of the 2 images"):
        parse_images(images_answer(encoded()), "png", 2)
    assert len(parse_images(images_answer(encoded(), encoded(), encoded()), "png", 2)) == 2


def test_base64_with_line_breaks_still_decodes():
    wrapped = base64.encodebytes(encoded()).decode()  # 76-column lines
    assert parse_images({"data": [{"b64_json": wrapped}]}, "png", 1)[0].data == encoded()


@pytest.mark.parametrize("image_format", ["png", "jpeg", "webp"])
def test_formats_are_read_from_the_bytes(image_format):
    assert sniff_image(encoded(image_format)[:16]) == image_format
