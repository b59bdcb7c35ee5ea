"""apiin.one: async tasks, Bearer auth, one PNG per task, and two different error shapes."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .faults import fail_reason
from .render import SIZES_BY_ASPECT, RenderSpec
from .tasks import Task
from .wire import ApiError, Request, Response, choice, route, text, url_list

if TYPE_CHECKING:
    from .server import UpstreamSimulator

MODEL = "gpt-image-1-5"
# The real docs mix cases ("IN_PROGRESS" vs "completed"); mimic that so clients normalise.
_STATUS_BY_PHASE = {
    "queued": "IN_PROGRESS",
    "processing": "IN_PROGRESS",
    "completed": "completed",
    "failed": "failed",
}
_MESSAGES = {401: "Invalid API key", 404: "Task not found", 429: "Too many requests"}


class ApiinOneProtocol:
    name = "apiinone"

    def __init__(self, sim: UpstreamSimulator) -> None:
        self._sim = sim
        self.routes = [
            route("POST", r"/api/v1/images/generations", "create", self.create_task),
            route("GET", r"/api/v1/tasks/(?P<task_id>[^/]+)", "poll", self.get_task),
        ]

    def credential(self, request: Request) -> str | None:
        return request.bearer_token()

    def auth_error(self, missing: bool) -> ApiError:
        return ApiError(401, "Invalid API key")

    def error_response(self, error: ApiError) -> Response:
        if error.status == 400:
            # Validation errors: the documented {"error": {...}} shape, always this message.
            payload: dict[str, Any] = {
                "error": {"code": 400, "message": "Invalid parameters", "type": "invalid_request"}
            }
        else:
            # Everything else: the envelope shape of successful answers, with data null.
            message = _MESSAGES.get(error.status, error.message)
            payload = {"code": error.status, "message": message, "data": None}
        return Response.json(error.status, payload, error.headers)

    def create_task(self, request: Request) -> Response:
        body = request.json_object()
        spec, input_urls = _parse_generation(body)
        task_id = f"{uuid.uuid4().hex[:12]}_gptimg"
        self._sim.tasks.add(
            Task(
                task_id=task_id,
                protocol=self.name,
                spec=spec,
                count=1,
                input_urls=input_urls,
                outcome=self._sim.faults.task_outcome(self._sim.config, request.script),
                duration=self._sim.faults.latency(self._sim.config),
                fail_reason=fail_reason(self._sim.config, request.script),
                idempotency_key=request.header("Idempotency-Key"),
                script=request.script,
            )
        )
        self._sim.record_created(self.name, task_id, body, request.header("Idempotency-Key"))
        return _envelope({"task_id": task_id, "status": "IN_PROGRESS"})

    def get_task(self, request: Request, task_id: str) -> Response:
        task = self._sim.tasks.get(self.name, task_id)
        if task is None:
            raise ApiError(404, "Task not found")
        view = task.view()
        data: dict[str, Any] = {"task_id": task_id, "status": _STATUS_BY_PHASE[view.phase]}
        if view.images is not None:
            data["result"] = {"images": view.images}
            data["output_urls"] = view.images  # an undocumented second shape seen in the wild
        if view.error is not None:
            data["error"] = {"message": view.error}
        return _envelope(data)


def _parse_generation(body: dict[str, Any]) -> tuple[RenderSpec, list[str]]:
    if body.get("model") != MODEL:
        raise ApiError(400, f"model must be {MODEL!r}")
    prompt = text(body, "prompt", max_length=32000)
    aspect_ratio = choice(body, "aspect_ratio", tuple(SIZES_BY_ASPECT), "1:1")
    quality = choice(body, "quality", ("medium", "high"), "medium")
    input_urls = url_list(body, "input_urls")
    # apiin.one has no format or background parameters: always an opaque PNG.
    spec = RenderSpec(prompt=prompt, size=SIZES_BY_ASPECT[aspect_ratio], output_format="png", quality=quality)
    return spec, input_urls


def _envelope(data: dict[str, Any]) -> Response:
    return Response.json(200, {"code": 200, "message": "success", "data": data})
