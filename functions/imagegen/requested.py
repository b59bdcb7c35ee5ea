"""Jobs requested by events: an `Image Job Requested` event on our bus (routed to the intake
queue by a rule), or the same detail sent straight to the intake queue as the message body:

    {"requestId": "<client id>", "request": {<the body of POST /v2/images/generate>}}

Who may request is decided by IAM (who may put events on the bus or send to the queue); the
jobs belong to the intake's owner. The job id derives from owner and request id, so the same
request id never creates a second job. An invalid request is answered with a `job.rejected`
event and removed; a failure of ours is raised, so the queue delivers the message again (and
finally to its dead-letter queue, which alarms).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagegen.errors import InvalidRequest, validation_details
from imagegen.events import REQUESTED_DETAIL_TYPE, rejection
from imagegen.lifecycle import new_job
from imagegen.models import GenerateRequest, JobSource
from imagegen.ports import EventPublisherPort, JobRepository, WorkflowStarterPort
from imagegen.settings import Settings
from imagegen.submission import submit_job

_REQUESTED_JOB_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://imagegen/requested-jobs")
MAX_MESSAGE_BYTES = 256 * 1024  # SQS's and EventBridge's own limit


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requestId: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/-]+$")
    request: GenerateRequest


@dataclass(frozen=True)
class Outcome:
    action: Literal["started", "duplicate", "rejected"]
    request_id: str
    job_id: str | None = None
    error_code: str | None = None


def requested_job_id(owner: str, request_id: str) -> str:
    return str(uuid.uuid5(_REQUESTED_JOB_NAMESPACE, f"{owner}\n{request_id}"))


def parse_message(body: str) -> JobRequest:
    """The message body: an EventBridge event of detail-type `Image Job Requested` (as the rule
    delivers it), or its detail alone. Raises InvalidRequest with the API's details."""
    if len(body.encode()) > MAX_MESSAGE_BYTES:
        raise InvalidRequest("the message is over 256 KiB")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise InvalidRequest("the message body must be a JSON object") from None
    if isinstance(document, dict) and "detail-type" in document:
        if document["detail-type"] != REQUESTED_DETAIL_TYPE:
            raise InvalidRequest(f"only {REQUESTED_DETAIL_TYPE!r} events request jobs")
        document = document.get("detail")
    if not isinstance(document, dict):
        raise InvalidRequest("the request must be a JSON object with requestId and request")
    try:
        return JobRequest.model_validate(document)
    except ValidationError as exc:
        raise InvalidRequest("the requested job is invalid", validation_details(exc)) from None


def _request_id_of(body: str) -> str:
    """The request id of a message we refuse, as far as it can be read (for the rejection)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return "unknown"
    if isinstance(document, dict) and isinstance(document.get("detail"), dict):
        document = document["detail"]
    request_id = document.get("requestId") if isinstance(document, dict) else None
    return request_id[:128] if isinstance(request_id, str) and request_id else "unknown"


class RequestIntake:
    def __init__(
        self,
        settings: Settings,
        store: JobRepository,
        starter: WorkflowStarterPort,
        events: EventPublisherPort,
    ) -> None:
        if not settings.intake_owner:
            raise InvalidRequest("the intake has no owner configured (IMAGEGEN_INTAKE_OWNER)")
        self.settings = settings
        self.store = store
        self.starter = starter
        self.events = events

    def handle(self, body: str) -> Outcome:
        owner = self.settings.intake_owner
        try:
            requested = parse_message(body)
            job = new_job(
                requested.request,
                owner,
                self.settings,
                JobSource.EVENT,
                job_id=requested_job_id(owner, requested.requestId),
                origin={"request_id": requested.requestId},
            )
            _, created = submit_job(
                job, self.store, self.starter, self.settings.allow_loopback_urls, self.settings.provider_chain
            )
        except InvalidRequest as exc:  # validation, SSRF, what no provider serves: final
            request_id = _request_id_of(body)
            self.events.publish(rejection(request_id, owner, exc.code, exc.message, exc.details))
            return Outcome("rejected", request_id, error_code=exc.code)
        return Outcome("started" if created else "duplicate", requested.requestId, job.job_id)
