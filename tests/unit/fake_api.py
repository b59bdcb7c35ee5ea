"""The imagegen API on httpx.MockTransport, for the SDK's and the CLI's unit tests.

Job views are the server's own (`api.views.job_view` over `imagegen.models.Job`), so the SDK is
held to what the server writes. `GET /v2/jobs` and `POST /v2/jobs/{id}/cancel` follow the
contract agreed for issue #12 (`{"jobs", "nextCursor"}`; 409 `job_not_cancelable`) while the
real endpoints are being built.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from api.views import job_view
from imagegen.models import GenerateRequest, Job, JobStatus
from tests.fakes import InMemoryResults

API_URL = "https://api.example/prod"
API_KEY = "igk_unit_test_key"
IMAGE_BYTES = b"\x89PNG\r\n\x1a\nnot really a png"


class SigningResults(InMemoryResults):
    """Each presigned URL carries a fresh signature, so a refreshed URL differs from the old."""

    signed = 0

    def presigned_url(self, key: str, ttl_seconds: int) -> str:
        self.signed += 1
        return f"https://{self.bucket}.s3.example/{key}?X-Amz-Signature=sig{self.signed}"


def error(status: int, code: str, message: str, details: list[Any] | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"code": code, "message": message, "details": details or []}}
    )


class FakeApi:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.results = SigningResults()
        self.requests: list[httpx.Request] = []
        # job id -> the (status, progress) each following GET moves it to, in order
        self.plans: dict[str, list[tuple[str, int]]] = {}
        # answers served to the next GETs of a job before the job itself (e.g. a 503)
        self.interruptions: list[httpx.Response | Exception] = []
        self.expired: set[str] = set()  # image URLs that answer 403
        self.secret = "whsec_" + "QUFB" * 11
        self.created = 0

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def add(self, status: str = "QUEUED", prompt: str = "a lighthouse", **params: Any) -> Job:
        self.created += 1
        now = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC) + timedelta(seconds=self.created)
        request = GenerateRequest(prompt=prompt, model="gpt-image-1.5", gptImageParams=params)
        job = Job(
            job_id=f"job-{self.created:03d}",
            owner="alice",
            prompt=request.prompt,
            params=request.gptImageParams,
            credit_cost=24 * request.gptImageParams.number_of_images,
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(minutes=15),
        )
        self.jobs[job.job_id] = job
        self._move(job.job_id, status, 100 if status == "COMPLETED" else 0)
        return self.jobs[job.job_id]

    def _move(self, job_id: str, status: str, progress: int) -> None:
        job = self.jobs[job_id]
        update: dict[str, Any] = {"status": JobStatus(status), "progress": progress}
        if status == "COMPLETED":
            ext = job.params.output_format
            update["result_keys"] = [f"images/{job_id}/{n}.{ext}" for n in range(job.params.number_of_images)]
            update["completed_at"] = job.created_at + timedelta(seconds=5)
        if status == "FAILED":
            update["error"] = job.error or "the provider refused the prompt"
        self.jobs[job_id] = job.model_copy(update=update)

    def view(self, job_id: str) -> dict[str, Any]:
        return job_view(self.jobs[job_id], self.results, 3600)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if request.url.host.endswith("s3.example"):
            return self._image(request)
        if not path.startswith("/prod/"):
            return error(404, "not_found", "no such route")
        path = path.removeprefix("/prod")
        if request.headers.get("x-api-key") != API_KEY:
            return error(401, "unauthorized", "Invalid API key")
        route: dict[tuple[str, str], Callable[[httpx.Request, list[str]], httpx.Response]] = {
            ("POST", "images/generate"): self._generate,
            ("GET", "jobs"): self._list,
            ("GET", "webhooks/secret"): lambda *_: httpx.Response(200, json={"secret": self.secret}),
        }
        parts = path.strip("/").split("/")[1:]  # after v2
        handler = route.get((request.method, "/".join(parts)))
        if handler:
            return handler(request, parts)
        if len(parts) >= 2 and parts[0] == "jobs" and parts[1] not in self.jobs:
            return error(404, "not_found", f"job {parts[1]} not found")
        if request.method == "GET" and len(parts) == 2 and parts[0] == "jobs":
            return self._get(parts[1])
        if request.method == "POST" and len(parts) == 3 and parts[2] == "cancel":
            return self._cancel(parts[1])
        return error(404, "not_found", "no such route")

    def _generate(self, request: httpx.Request, _: list[str]) -> httpx.Response:
        body = json.loads(request.content)
        job = self.add(prompt=body["prompt"], **body.get("gptImageParams", {}))
        return httpx.Response(202, json={"jobId": job.job_id, "status": "QUEUED"})

    def _get(self, job_id: str) -> httpx.Response:
        if self.interruptions:
            answer = self.interruptions.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        if self.plans.get(job_id):
            self._move(job_id, *self.plans[job_id].pop(0))
        return httpx.Response(200, json=self.view(job_id))

    def _list(self, request: httpx.Request, _: list[str]) -> httpx.Response:
        status, limit = request.url.params.get("status"), int(request.url.params.get("limit", "20"))
        newest_first = sorted(self.jobs.values(), key=lambda j: j.created_at, reverse=True)
        chosen = [j for j in newest_first if not status or j.status.value == status]
        start = int(request.url.params.get("cursor", "c0")[1:])
        page = chosen[start : start + limit]
        more = start + limit < len(chosen)
        return httpx.Response(
            200,
            json={
                "jobs": [self.view(j.job_id) for j in page],
                "nextCursor": f"c{start + limit}" if more else None,
            },
        )

    def _cancel(self, job_id: str) -> httpx.Response:
        if self.jobs[job_id].status.is_terminal:
            return error(409, "job_not_cancelable", f"job {job_id} has already ended")
        self.jobs[job_id] = self.jobs[job_id].model_copy(update={"error": "canceled by its owner"})
        self._move(job_id, "FAILED", self.jobs[job_id].progress)
        return httpx.Response(200, json=self.view(job_id))

    def _image(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) in self.expired:
            return httpx.Response(403, text="<Error><Code>AccessDenied</Code>Request has expired</Error>")
        return httpx.Response(200, content=IMAGE_BYTES)
