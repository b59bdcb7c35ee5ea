"""OpenAI Images: synchronous generations (JSON) and edits (multipart), images inline as base64."""

from __future__ import annotations

import base64
import time
import uuid
from typing import TYPE_CHECKING, Any

from PIL import Image

from .faults import fail_reason
from .multipart import MultipartError, parse_form
from .render import InputImageError, RenderSpec, decode_image, render_image, size_for_source
from .tasks import Task
from .wire import ApiError, Request, Response, choice, int_in_range, route, text

if TYPE_CHECKING:
    from .server import UpstreamSimulator

SIZES = {"1024x1024": (1024, 1024), "1536x1024": (1536, 1024), "1024x1536": (1024, 1536)}
# Published gpt-image output token counts per image, by quality and square / non-square.
_OUTPUT_TOKENS = {"low": (272, 408), "medium": (1056, 1584), "high": (4160, 6240)}
_IMAGE_INPUT_TOKENS = 323
_ERROR_TYPES = {429: "rate_limit_exceeded"}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


class OpenAIImagesProtocol:
    name = "openai"

    def __init__(self, sim: UpstreamSimulator) -> None:
        self._sim = sim
        self.routes = [
            route("POST", r"/v1/images/generations", "create", self.generate),
            route("POST", r"/v1/images/edits", "create", self.edit),
        ]

    def credential(self, request: Request) -> str | None:
        return request.bearer_token()

    def auth_error(self, missing: bool) -> ApiError:
        if missing:
            return ApiError(401, "You didn't provide an API key.")
        return ApiError(401, "Incorrect API key provided.")

    def error_response(self, error: ApiError) -> Response:
        default_type = "server_error" if error.status >= 500 else "invalid_request_error"
        payload = {
            "error": {
                "message": error.message,
                "type": _ERROR_TYPES.get(error.status, default_type),
                "param": error.param,
                "code": error.code or _ERROR_CODES.get(error.status),
            }
        }
        return Response.json(error.status, payload, error.headers)

    def generate(self, request: Request) -> Response:
        body = request.json_object()
        spec, count = _parse_options(body, source=None)
        return self._respond(request, spec, count, source=None, record=body)

    def edit(self, request: Request) -> Response:
        try:
            parts = parse_form(request.header("Content-Type") or "", request.body)
        except MultipartError as error:
            raise ApiError(400, str(error)) from error
        fields = {part.name: part.data.decode("utf-8", "replace") for part in parts if part.filename is None}
        images = [part for part in parts if part.name in ("image", "image[]") and part.filename is not None]
        if not images:
            raise ApiError(400, "image is required", param="image")
        if len(images) > 16:
            raise ApiError(400, "at most 16 images are allowed", param="image")
        try:
            source = decode_image(images[0].data)
        except InputImageError as error:
            raise ApiError(400, "Invalid image file", param="image") from error
        options: dict[str, Any] = dict(fields)
        if "n" in options:
            options["n"] = _form_int(options["n"], "n")
        if "output_compression" in options:
            options["output_compression"] = _form_int(options["output_compression"], "output_compression")
        spec, count = _parse_options(options, source=source)
        record = {**fields, "image": [part.filename for part in images]}
        return self._respond(request, spec, count, source=source, record=record)

    def _respond(
        self,
        request: Request,
        spec: RenderSpec,
        count: int,
        source: Image.Image | None,
        record: dict[str, Any],
    ) -> Response:
        sim, config, script = self._sim, self._sim.config, request.script
        # A render is the unit of work here: recorded like an async provider's task, and
        # finished (for the records) when its answer is ready.
        task = sim.tasks.add(
            Task(
                task_id=f"img_{uuid.uuid4().hex}",
                protocol=self.name,
                spec=spec,
                count=count,
                input_urls=[],
                outcome=sim.faults.task_outcome(config, script),
                duration=sim.faults.latency(config),
                fail_reason=fail_reason(config, script),
                idempotency_key=request.header("Idempotency-Key"),
                script=script,
            ),
            render=False,
        )
        sim.record_created(self.name, task.task_id, record, task.idempotency_key)
        if not sim.wait(task.duration):
            raise ApiError(503, "Simulator is shutting down")
        # OpenAI names every answer with x-request-id; here it is the render's record id.
        named = {"x-request-id": task.task_id}
        if task.outcome == "fail":
            task.error, task.finished = task.fail_reason, time.monotonic()
            raise ApiError(400, task.fail_reason, code="moderation_blocked", headers=named)
        if task.outcome == "never":
            hang = script.hang_seconds if script and script.hang_seconds is not None else None
            sim.wait(config.hang_seconds if hang is None else hang)
            raise ApiError(504, "Image generation timed out", headers=named)
        images = [render_image(spec, index, source) for index in range(count)]
        task.images, task.finished = [], time.monotonic()  # inline: no file URLs
        return Response.json(200, _result_payload(spec, images, source is not None), named)


def _parse_options(options: dict[str, Any], source: Image.Image | None) -> tuple[RenderSpec, int]:
    model = options.get("model", "gpt-image-1")
    if not isinstance(model, str) or not model.startswith("gpt-image"):
        raise ApiError(400, "model must be a gpt-image model", param="model")
    prompt = text(options, "prompt", max_length=32000)
    count = int_in_range(options, "n", 1, 10, 1)
    size_name = choice(options, "size", (*SIZES, "auto"), "auto")
    quality = choice(options, "quality", ("auto", "low", "medium", "high"), "auto")
    background = choice(options, "background", ("transparent", "opaque", "auto"), "auto")
    output_format = choice(options, "output_format", ("png", "jpeg", "webp"), "png")
    # Left unset, the encoder's own defaults apply (OpenAI's 100 would just make big files).
    compression = None
    if "output_compression" in options:
        compression = int_in_range(options, "output_compression", 0, 100, 100)
    choice(options, "moderation", ("low", "auto"), "auto")
    choice(options, "input_fidelity", ("low", "high"), "low")
    if background == "transparent" and output_format == "jpeg":
        raise ApiError(400, "Transparent background requires output_format png or webp.", param="background")
    if size_name != "auto":
        size = SIZES[size_name]
    else:
        size = size_for_source(source) if source is not None else SIZES["1024x1024"]
    spec = RenderSpec(
        prompt=prompt,
        size=size,
        output_format=output_format,
        transparent=background == "transparent",
        quality="medium" if quality == "auto" else quality,
        compression=None if output_format == "png" else compression,
    )
    return spec, count


def _form_int(value: str, param: str) -> int:
    try:
        return int(value)
    except ValueError as error:
        raise ApiError(400, f"{param} must be an integer", param=param) from error


def _result_payload(spec: RenderSpec, images: list[bytes], edited: bool) -> dict[str, Any]:
    width, height = spec.size
    square_or_wide = 0 if width == height else 1
    output_tokens = _OUTPUT_TOKENS[spec.quality][square_or_wide] * len(images)
    text_tokens = max(1, len(spec.prompt) // 4)
    image_tokens = _IMAGE_INPUT_TOKENS if edited else 0
    return {
        "created": int(time.time()),
        "background": "transparent" if spec.transparent else "opaque",
        "output_format": spec.output_format,
        "quality": spec.quality,
        "size": f"{width}x{height}",
        "data": [{"b64_json": base64.b64encode(image).decode()} for image in images],
        "usage": {
            "input_tokens": text_tokens + image_tokens,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
            "output_tokens": output_tokens,
            "total_tokens": text_tokens + image_tokens + output_tokens,
        },
    }
