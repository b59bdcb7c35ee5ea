"""apiframe v2: async jobs under /v2, X-API-Key auth, Idempotency-Key support, webhooks."""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .faults import fail_reason
from .render import SIZES_BY_ASPECT, RenderSpec
from .tasks import Task, Webhook, iso
from .webhooks import DEFAULT_EVENTS, EVENTS
from .wire import ApiError, Request, Response, choice, int_in_range, route, text, url_list

if TYPE_CHECKING:
    from .server import UpstreamSimulator

MODEL = "gpt-image-1.5"
CREDITS_PER_IMAGE = {"low": 4, "medium": 9, "auto": 24, "high": 24}
_STATUS_BY_PHASE = {
    "queued": "QUEUED",
    "processing": "PROCESSING",
    "completed": "COMPLETED",
    "failed": "FAILED",
}
_ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
}


class ApiframeProtocol:
    name = "apiframe"

    def __init__(self, sim: UpstreamSimulator) -> None:
        self._sim = sim
        # (api key, Idempotency-Key) -> job id; the lock makes check-then-create atomic.
        self._idempotent_jobs: dict[tuple[str, str], str] = {}
        self._idempotency_lock = threading.Lock()
        self.routes = [
            route("POST", r"/v2/images/generate", "create", self.create_job),
            route("GET", r"/v2/jobs/(?P<job_id>[^/]+)", "poll", self.get_job),
        ]

    def credential(self, request: Request) -> str | None:
        return request.header("X-API-Key")

    def auth_error(self, missing: bool) -> ApiError:
        return ApiError(401, "API key is required" if missing else "Invalid API key")

    def error_response(self, error: ApiError) -> Response:
        code = error.code or _ERROR_CODES.get(error.status, "internal_error")
        return Response.json(error.status, {"error": {"code": code, "message": error.message}}, error.headers)

    def create_job(self, request: Request) -> Response:
        body = request.json_object()
        spec, count, input_urls = _parse_generate(body)
        webhook = _parse_webhook(body, api_key=self.credential(request) or "")
        idempotency_key = request.header("Idempotency-Key")
        scope = (self.credential(request) or "", idempotency_key or "")
        with self._idempotency_lock:
            existing = self._idempotent_jobs.get(scope) if idempotency_key else None
            if existing is not None:
                task = self._sim.tasks.get(self.name, existing)
                assert task is not None  # tasks are never removed
                return Response.json(202, {"jobId": existing, "status": _STATUS_BY_PHASE[task.view().phase]})
            job_id = str(uuid.uuid4())
            task = self._sim.tasks.add(
                Task(
                    task_id=job_id,
                    protocol=self.name,
                    spec=spec,
                    count=count,
                    input_urls=input_urls,
                    outcome=self._sim.faults.task_outcome(self._sim.config, request.script),
                    duration=self._sim.faults.latency(self._sim.config),
                    fail_reason=fail_reason(self._sim.config, request.script),
                    credit_cost=CREDITS_PER_IMAGE[spec.quality] * count,
                    idempotency_key=idempotency_key,
                    script=request.script,
                    webhook=webhook,
                )
            )
            self._sim.record_created(self.name, job_id, body, idempotency_key)
            if idempotency_key:
                self._idempotent_jobs[scope] = job_id
        if webhook is not None:
            self._sim.webhooks.watch(task)
        return Response.json(202, {"jobId": job_id, "status": "QUEUED"})

    def get_job(self, request: Request, job_id: str) -> Response:
        task = self._sim.tasks.get(self.name, job_id)
        if task is None:
            raise ApiError(404, "Job not found")
        view = task.view()
        failed = view.phase == "failed"
        return Response.json(
            200,
            {
                "id": task.task_id,
                "status": _STATUS_BY_PHASE[view.phase],
                "model": MODEL,
                "progress": view.progress,
                "result": {"images": view.images} if view.images is not None else None,
                "error": view.error,
                "creditCost": 0 if failed else task.credit_cost,  # FAILED jobs are refunded
                "webhookStatus": task.webhook_status,
                "createdAt": iso(task.created_at),
                "completedAt": iso(view.completed_at) if view.completed_at else None,
            },
        )


def _parse_generate(body: dict[str, Any]) -> tuple[RenderSpec, int, list[str]]:
    prompt = text(body, "prompt", max_length=2000)
    if body.get("model") != MODEL:
        raise ApiError(400, f"model must be {MODEL!r}")
    params = body.get("gptImageParams") or {}
    if not isinstance(params, dict):
        raise ApiError(400, "gptImageParams must be an object")
    quality = choice(params, "quality", ("auto", "low", "medium", "high"), "auto")
    aspect_ratio = choice(params, "aspect_ratio", tuple(SIZES_BY_ASPECT), "1:1")
    output_format = choice(params, "output_format", ("webp", "png", "jpeg"), "webp")
    background = choice(params, "background", ("auto", "transparent", "opaque"), "auto")
    choice(params, "input_fidelity", ("low", "high"), "low")  # accepted, no visible effect
    count = int_in_range(params, "number_of_images", 1, 10, 1)
    input_urls = url_list(params, "input_images")
    if background == "transparent" and output_format == "jpeg":
        raise ApiError(400, "transparent background requires png or webp output_format")
    spec = RenderSpec(
        prompt=prompt,
        size=SIZES_BY_ASPECT[aspect_ratio],
        output_format=output_format,
        transparent=background == "transparent",
        quality=quality,
    )
    return spec, count, input_urls


def _parse_webhook(body: dict[str, Any], api_key: str) -> Webhook | None:
    url = body.get("webhookUrl")
    events = body.get("webhookEvents")
    if url is None:
        if events is not None:
            raise ApiError(400, "webhookEvents needs a webhookUrl", param="webhookEvents")
        return None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise ApiError(400, "webhookUrl must be an http(s) URL", param="webhookUrl")
    if events is None:
        return Webhook(url, DEFAULT_EVENTS, api_key)
    if not isinstance(events, list) or not events or not all(e in EVENTS for e in events):
        raise ApiError(400, f"webhookEvents must be a list of {', '.join(EVENTS)}", param="webhookEvents")
    return Webhook(url, frozenset(events), api_key)
