"""apiframe v2 (seed 000): X-API-Key auth, POST /v2/images/generate, GET /v2/jobs/{id}.

Our public API follows apiframe's shape, so the request maps field for field. One task renders
all of a job's images.
"""

from __future__ import annotations

from typing import Any

from imagegen.errors import UpstreamTerminalError
from imagegen.models import JobStatus
from imagegen.providers.base import CreatedTask, GenerationRequest, Provider, TaskState, progress_of

_STATUS = {
    "QUEUED": JobStatus.PROCESSING,
    "PENDING": JobStatus.PROCESSING,
    "PROCESSING": JobStatus.PROCESSING,
    "IN_PROGRESS": JobStatus.PROCESSING,
    "COMPLETED": JobStatus.COMPLETED,
    "FAILED": JobStatus.FAILED,
}


class ApiframeProvider(Provider):
    name = "apiframe"
    default_base_url = "https://api.apiframe.ai"

    def create_task(self, request: GenerationRequest, slot: int) -> CreatedTask:
        body = {
            "prompt": request.prompt,
            "model": "gpt-image-1.5",
            "gptImageParams": request.params.model_dump(exclude_none=True),
        }
        # Derived from our job id, so a create retried after a lost answer finds the same task
        # upstream instead of paying for a second one.
        headers = {"X-API-Key": self.config.api_key, "Idempotency-Key": f"imagegen-{request.job_id}-{slot}"}
        data = self.json_of(self.send("POST", "/v2/images/generate", json=body, headers=headers))
        task_id = data.get("jobId") if isinstance(data, dict) else None
        if isinstance(task_id, bool) or not isinstance(task_id, str | int) or not str(task_id):
            raise UpstreamTerminalError("apiframe: create answered without a jobId")
        return CreatedTask(task_id=str(task_id))

    def get_task(self, task_id: str) -> TaskState:
        response = self.send("GET", f"/v2/jobs/{task_id}", headers={"X-API-Key": self.config.api_key})
        return parse_job(self.json_of(response))


def parse_job(data: Any) -> TaskState:
    if not isinstance(data, dict):
        raise UpstreamTerminalError("apiframe: job status is not a JSON object")
    raw_status = str(data.get("status", "")).upper()
    status = _STATUS.get(raw_status)
    if status is None:
        raise UpstreamTerminalError(f"apiframe: unknown job status {raw_status!r}")
    if status is JobStatus.FAILED:
        reason = str(data.get("error") or "apiframe reported the job FAILED")
        return TaskState(status, progress_of(data.get("progress")), error=reason)
    if status is JobStatus.COMPLETED:
        result = data.get("result") or {}
        images = result.get("images") if isinstance(result, dict) else None
        if not images or not all(isinstance(u, str) for u in images):
            raise UpstreamTerminalError("apiframe: COMPLETED job has no readable result.images")
        return TaskState(status, 100, image_urls=list(images))
    return TaskState(status, progress_of(data.get("progress")))
