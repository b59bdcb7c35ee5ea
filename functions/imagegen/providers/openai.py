"""OpenAI Images API, direct (REFERENCE §3): synchronous, images inline as base64.

POST /v1/images/generations (JSON) when the job has no input images, POST /v1/images/edits
(multipart, `image[]`) when it has. The call renders before it answers, so create_task returns
the images (CreatedTask.images) and the workflow writes them to S3 itself: nothing is polled
and no image ever travels through Step Functions state.

Mapping rules (also in docs/providers.md):

- model "gpt-image-1.5"; n = number_of_images, all in one call (one task);
- size from aspect_ratio: 1:1 -> 1024x1024, 3:2 -> 1536x1024, 2:3 -> 1024x1536;
- quality, background and output_format pass as they are (same vocabularies);
- edits: we fetch every input image ourselves through imagegen.ssrf.safe_stream (address
  checked and pinned, redirects re-checked), at most `max_input_image_bytes` each, PNG, JPEG or
  WebP, and send them as `image[]` parts with input_fidelity;
- the render call's read timeout is `render_timeout_seconds` (a high-quality render takes
  minutes), not the short timeout of the asynchronous providers' calls;
- 429 with code insufficient_quota is the account's billing limit, not a rate limit: terminal;
- answers are checked: every data[].b64_json must decode to an image of the requested format,
  and there must be as many as were asked for, or the job fails with the reason.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx

from imagegen.errors import UnsafeUrl, UpstreamTerminalError, UpstreamTransientError
from imagegen.images import SNIFF_BYTES, sniff_image
from imagegen.models import CONTENT_TYPES, SIZES
from imagegen.providers.base import CreatedTask, GenerationRequest, InlineImage, Provider, TaskState
from imagegen.ssrf import safe_stream
from imagegen.transport import CALL_FAILURES, json_or_none, status_failure, transport_failure

MODEL = "gpt-image-1.5"
SIZE_BY_ASPECT = {ratio: f"{width}x{height}" for ratio, (width, height) in SIZES.items()}
FETCH_CHUNK = 64 * 1024


class OpenAIProvider(Provider):
    name = "openai"
    default_base_url = "https://api.openai.com"

    def create_task(self, request: GenerationRequest, slot: int) -> CreatedTask:
        options = request_options(request)
        timeout = httpx.Timeout(self.config.render_timeout_seconds, connect=5.0)
        if request.input_image_urls:
            files = [("image[]", self._fetch_input(i, url)) for i, url in enumerate(request.input_image_urls)]
            fields = {key: str(value) for key, value in options.items()}
            fields["input_fidelity"] = request.params.input_fidelity
            response = self.send(
                "POST", "/v1/images/edits", data=fields, files=files, headers=self._auth(), timeout=timeout
            )
        else:
            response = self.send(
                "POST", "/v1/images/generations", json=options, headers=self._auth(), timeout=timeout
            )
        params = request.params
        images = parse_images(self.json_of(response), params.output_format, params.number_of_images)
        task_id = response.headers.get("x-request-id") or f"{request.job_id}-{slot}"
        return CreatedTask(task_id=task_id, images=images)

    def get_task(self, task_id: str) -> TaskState:
        raise UpstreamTerminalError("openai renders synchronously: there is no task to poll")

    def error_for(self, response: httpx.Response) -> UpstreamTransientError | UpstreamTerminalError:
        if response.status_code == 429 and _error_field(response, "code") == "insufficient_quota":
            return UpstreamTerminalError(f"openai: {self.error_message(response)}")
        return super().error_for(response)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}

    def _fetch_input(self, index: int, url: str) -> tuple[str, bytes, str]:
        """Input image `index` as a multipart file: fetched through the SSRF guard, size-capped,
        its format read from its bytes (never from the URL or a header). OpenAI has not been
        called yet, so any transient failure here permits failover (imagegen.transport)."""
        label = f"openai: input image {index + 1}"
        cap = self.config.max_input_image_bytes
        try:
            with safe_stream(self.http, url, self.config.allow_loopback_urls) as response:
                if response.status_code != 200:
                    message = f"{label}: download answered HTTP {response.status_code}"
                    raise status_failure(response.status_code, message, before_provider_call=True)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise UpstreamTerminalError(f"{label} is larger than {cap // (1024 * 1024)} MiB")
                data = bytearray()
                for chunk in response.iter_bytes(FETCH_CHUNK):
                    data += chunk
                    if len(data) > cap:
                        raise UpstreamTerminalError(f"{label} is larger than {cap // (1024 * 1024)} MiB")
        except UnsafeUrl as exc:
            raise UpstreamTerminalError(f"{label}: {exc.message}") from exc
        except CALL_FAILURES as exc:
            raise transport_failure(exc, f"{label}: download", before_provider_call=True) from exc
        image_format = sniff_image(bytes(data[:SNIFF_BYTES]))
        if image_format is None:
            raise UpstreamTerminalError(f"{label} is not a PNG, JPEG or WebP image")
        return f"input-{index + 1}.{image_format}", bytes(data), CONTENT_TYPES[image_format]


def request_options(request: GenerationRequest) -> dict[str, Any]:
    params = request.params
    return {
        "model": MODEL,
        "prompt": request.prompt,
        "n": params.number_of_images,
        "size": SIZE_BY_ASPECT[params.aspect_ratio],
        "quality": params.quality,
        "background": params.background,
        "output_format": params.output_format,
    }


def parse_images(body: Any, output_format: str, expected: int) -> list[InlineImage]:
    """`data[].b64_json` decoded and checked; anything unreadable is a terminal error."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data:
        raise UpstreamTerminalError("openai: the answer carried no images")
    images = []
    for number, item in enumerate(data, start=1):
        encoded = item.get("b64_json") if isinstance(item, dict) else None
        if not isinstance(encoded, str) or not encoded.strip():
            raise UpstreamTerminalError(f"openai: image {number} of the answer has no b64_json")
        try:
            raw = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError):
            raise UpstreamTerminalError(f"openai: image {number} of the answer is not valid base64") from None
        found = sniff_image(raw[:SNIFF_BYTES])
        if found is None:
            raise UpstreamTerminalError(f"openai: image {number} of the answer is not a PNG, JPEG or WebP")
        if found != output_format:
            raise UpstreamTerminalError(f"openai: returned {found} although {output_format} was asked for")
        images.append(InlineImage(raw, CONTENT_TYPES[found]))
    if len(images) < expected:
        raise UpstreamTerminalError(f"openai: returned {len(images)} of the {expected} images asked for")
    return images[:expected]


def _error_field(response: httpx.Response, name: str) -> str | None:
    body = json_or_none(response)
    error = body.get("error") if isinstance(body, dict) else None
    value = error.get(name) if isinstance(error, dict) else None
    return str(value) if value else None
