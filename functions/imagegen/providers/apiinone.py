"""apiin.one (seed 001): Bearer auth, POST /api/v1/images/generations, GET /api/v1/tasks/{id}.

Mapping rules (also in docs/providers.md):

- quality: apiin.one has only medium and high. low -> medium, auto -> high, medium and high as
  they are. Our credit table prices auto like high, so nobody gets less than they paid for.
- output_format: apiin.one renders PNG only. Any other format is refused as a terminal error
  before anything is created upstream: we do not re-encode (no image codec in the functions,
  and a silent conversion would hide what the provider really made).
- background: transparent is refused the same way (its PNGs are opaque); auto and opaque pass.
- input_images -> input_urls (edits). input_fidelity has no counterpart and is not sent.
- number_of_images: one image per task, so N images are N tasks (`task_count`), gathered into
  one job in slot order.
- No idempotency key upstream: docs/providers.md says what window that leaves.

Answers come in an envelope `{"code", "message", "data"}`; the body code counts like an HTTP
status even under HTTP 200 (429/5xx transient, other 4xx terminal). Errors come either as
`{"error": {"code", "message", "type"}}` or as the envelope with `data: null`. Task statuses
are normalised case-insensitively; the completed result is undocumented and read defensively.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from imagegen.errors import UpstreamTerminalError
from imagegen.models import JobStatus
from imagegen.providers.base import (
    CreatedTask,
    GenerationRequest,
    Provider,
    TaskState,
    classify,
    error_body_message,
    progress_of,
    retry_after_seconds,
)
from imagegen.transport import json_answer

MODEL = "gpt-image-1-5"
QUALITY = {"low": "medium", "medium": "medium", "auto": "high", "high": "high"}

_STATUS_WORDS = {
    JobStatus.PROCESSING: (
        "in_progress",
        "processing",
        "pending",
        "queued",
        "in_queue",
        "running",
        "starting",
        "submitted",
        "created",
        "waiting",
    ),
    JobStatus.COMPLETED: ("completed", "complete", "success", "succeeded", "succeed", "done", "finished"),
    JobStatus.FAILED: ("failed", "fail", "failure", "error", "canceled", "cancelled"),
}
STATUS = {word: status for status, words in _STATUS_WORDS.items() for word in words}

# Where a completed task's image URLs have been seen, most specific first.
_RESULT_KEYS = ("images", "urls", "output_urls", "output", "url", "image_url")
_TOP_LEVEL_KEYS = ("output_urls", "images", "urls", "output", "url", "image_url")


class ApiinOneProvider(Provider):
    name = "apiinone"
    label = "apiin.one"
    default_base_url = "https://apiin.one"

    def task_count(self, request: GenerationRequest) -> int:
        return request.params.number_of_images  # one image per task

    @classmethod
    def refusal(cls, request: GenerationRequest) -> str | None:
        params = request.params
        if params.output_format != "png":
            return (
                f'apiin.one renders PNG only; ask for output_format "png" '
                f'(this job asked for "{params.output_format}")'
            )
        if params.background == "transparent":
            return 'apiin.one cannot render a transparent background; use background "auto" or "opaque"'
        return None

    def create_task(self, request: GenerationRequest, slot: int) -> CreatedTask:
        reason = self.refusal(request)
        if reason:
            raise UpstreamTerminalError(reason)
        response = self.send(
            "POST", "/api/v1/images/generations", json=request_body(request), headers=self._auth()
        )
        data = unwrap(response)
        task_id = data.get("task_id") or data.get("taskId") or data.get("id")
        if isinstance(task_id, bool) or not isinstance(task_id, str | int) or not str(task_id):
            raise UpstreamTerminalError("apiin.one: create answered without a task_id")
        return CreatedTask(task_id=str(task_id))

    def get_task(self, task_id: str) -> TaskState:
        response = self.send("GET", f"/api/v1/tasks/{quote(task_id, safe='')}", headers=self._auth())
        return parse_task(unwrap(response))

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"}


def request_body(request: GenerationRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "prompt": request.prompt,
        "aspect_ratio": request.params.aspect_ratio,
        "quality": QUALITY[request.params.quality],
    }
    if request.input_image_urls:
        body["input_urls"] = request.input_image_urls
    return body


def unwrap(response: httpx.Response) -> dict[str, Any]:
    """`data` of a successful envelope; an error in the body raises as its code says."""
    body = json_answer(response, "apiin.one")
    if not isinstance(body, dict):
        raise UpstreamTerminalError("apiin.one: answer is not a JSON object")
    error = body.get("error")
    code = _int(body.get("code"))
    if error:  # {"error": {...}} even under HTTP 200: its own code, else a validation error
        inner = _int(error.get("code")) if isinstance(error, dict) else None
        raise classify(
            "apiin.one",
            inner or code or 400,
            error_body_message(body) or "error",
            retry_after_seconds(response),
        )
    if code is not None and not 200 <= code < 300:
        raise classify(
            "apiin.one", code, error_body_message(body) or f"code {code}", retry_after_seconds(response)
        )
    data = body.get("data")
    if not isinstance(data, dict):
        raise UpstreamTerminalError("apiin.one: answer has no data object")
    return data


def normalise_status(raw: Any) -> JobStatus | None:
    word = str(raw or "").strip().lower().replace("-", "_").replace(" ", "_")
    return STATUS.get(word)


def parse_task(data: dict[str, Any]) -> TaskState:
    raw = data.get("status", data.get("state"))
    status = normalise_status(raw)
    if status is None:
        raise UpstreamTerminalError(f"apiin.one: unknown task status {raw!r}")
    if status is JobStatus.FAILED:
        return TaskState(status, 100, error=f"apiin.one: {_failure_reason(data)}")
    if status is JobStatus.COMPLETED:
        urls = result_urls(data)
        if not urls:
            raise UpstreamTerminalError(
                f"apiin.one: the task completed but no image URL could be read from its result "
                f"(fields: {sorted(data)})"
            )
        return TaskState(status, 100, image_urls=urls[:1])  # one image per task
    return TaskState(status, progress_of(data.get("progress")))


def result_urls(data: dict[str, Any]) -> list[str]:
    """Image URLs of a completed task, from the first of the usual places that has any:
    result.images, result.urls, output_urls, images, output, url; each a URL string, a list of
    them, or objects with a "url"."""
    result = data.get("result")
    candidates: list[Any] = []
    if isinstance(result, dict):
        candidates += [result.get(key) for key in _RESULT_KEYS]
    elif result is not None:
        candidates.append(result)  # a bare list or URL
    candidates += [data.get(key) for key in _TOP_LEVEL_KEYS]
    for value in candidates:
        urls = _urls(value)
        if urls:
            return urls
    return []


def _urls(value: Any) -> list[str]:
    urls = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            item = item.get("url") or item.get("image_url")
        if isinstance(item, str) and item.lower().startswith(("https://", "http://")):
            urls.append(item)
    return urls


def _failure_reason(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    for key in ("error_message", "fail_reason", "failure_reason", "message"):
        if isinstance(data.get(key), str) and data[key]:
            return str(data[key])
    return "the task failed"


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
