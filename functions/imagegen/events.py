"""Job events: the published contracts, and how they are derived from changes of job records.

Every state change of a job produces exactly one logical event whose id is the job id and the
version of the record that made the change (`<jobId>:<version>`): the same change delivered
twice carries the same id, so a consumer dedupes by id. Events are derived from the job
table's change stream (never "write, then publish and hope"): a failed publish is retried by
the platform, which redelivers the stream record.

One pydantic model per event type and version; `docs/events/` holds their JSON Schemas
(exported by `python -m imagegen.events`, checked by a test) and `events/imagegen/` a sample
of each.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from imagegen.models import Job, JobStatus, iso, utc_now

EVENT_SOURCE = "imagegen"  # EventBridge `source` of everything we put on our bus


class EventType(StrEnum):
    ACCEPTED = "job.accepted"
    PROGRESSED = "job.progressed"
    COMPLETED = "job.completed"
    FAILED = "job.failed"
    CANCELED = "job.canceled"
    REJECTED = "job.rejected"

    @property
    def detail_type(self) -> str:
        """EventBridge's `detail-type` for this event: what rules match on."""
        return DETAIL_TYPES[self]


DETAIL_TYPES: dict[EventType, str] = {
    EventType.ACCEPTED: "Image Job Accepted",
    EventType.PROGRESSED: "Image Job Progressed",
    EventType.COMPLETED: "Image Job Completed",
    EventType.FAILED: "Image Job Failed",
    EventType.CANCELED: "Image Job Canceled",
    EventType.REJECTED: "Image Job Rejected",
}
# An event put on our bus with this detail-type asks for a job (imagegen.intake).
REQUESTED_DETAIL_TYPE = "Image Job Requested"
TERMINAL_TYPES = (EventType.COMPLETED, EventType.FAILED, EventType.CANCELED)


class _JobEventV1(BaseModel):
    """Fields every job event of version 1 carries. A consumer may rely on each of them."""

    model_config = ConfigDict(extra="forbid")

    version: Literal["1"] = "1"
    id: str = Field(description="`<jobId>:<record version>`: the same change always has the same id")
    time: str = Field(description="when the change was written (ISO 8601, UTC)")
    jobId: str
    owner: str
    model: str
    source: str = Field(description="api | s3 | event: how the job was requested")
    progress: int = Field(ge=0, le=100)
    creditCost: int = Field(description="credits charged; 0 once a job failed or was canceled (refunded)")
    resultKeys: list[str] = Field(description="object keys of the images in `bucket`")
    bucket: str
    error: str | None
    createdAt: str
    completedAt: str | None


class JobAcceptedV1(_JobEventV1):
    type: Literal["job.accepted"] = "job.accepted"
    status: Literal["QUEUED"] = "QUEUED"


class JobProgressedV1(_JobEventV1):
    type: Literal["job.progressed"] = "job.progressed"
    status: Literal["PROCESSING"] = "PROCESSING"


class JobCompletedV1(_JobEventV1):
    type: Literal["job.completed"] = "job.completed"
    status: Literal["COMPLETED"] = "COMPLETED"


class JobFailedV1(_JobEventV1):
    type: Literal["job.failed"] = "job.failed"
    status: Literal["FAILED"] = "FAILED"


class JobCanceledV1(_JobEventV1):
    type: Literal["job.canceled"] = "job.canceled"
    status: Literal["CANCELED"] = "CANCELED"


class ApiError(BaseModel):
    """The API's error shape, inside events that carry one."""

    code: str
    message: str
    details: list[dict[str, Any]] = Field(default_factory=list)


class JobRejectedV1(BaseModel):
    """A request taken from an event could not become a job (no job record exists)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal["1"] = "1"
    type: Literal["job.rejected"] = "job.rejected"
    id: str = Field(description="`rejected:<owner>:<requestId>`")
    time: str
    requestId: str
    owner: str
    source: Literal["event"] = "event"
    error: ApiError


JobEvent = Annotated[
    JobAcceptedV1 | JobProgressedV1 | JobCompletedV1 | JobFailedV1 | JobCanceledV1,
    Field(discriminator="type"),
]
AnyEvent = Annotated[
    JobAcceptedV1 | JobProgressedV1 | JobCompletedV1 | JobFailedV1 | JobCanceledV1 | JobRejectedV1,
    Field(discriminator="type"),
]
EVENT_MODELS: tuple[type[BaseModel], ...] = (
    JobAcceptedV1,
    JobProgressedV1,
    JobCompletedV1,
    JobFailedV1,
    JobCanceledV1,
    JobRejectedV1,
)
_ANY_EVENT: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)
_JOB_EVENT: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)


def parse_event(document: str | bytes | dict[str, Any]) -> AnyEvent:
    """Any published event, from its JSON (an SNS message, an EventBridge `detail`)."""
    if isinstance(document, dict):
        return _ANY_EVENT.validate_python(document)
    return _ANY_EVENT.validate_json(document)


def parse_job_event(document: str | bytes | dict[str, Any]) -> JobEvent:
    if isinstance(document, dict):
        return _JOB_EVENT.validate_python(document)
    return _JOB_EVENT.validate_json(document)


_BY_STATUS: dict[JobStatus, type[_JobEventV1]] = {
    JobStatus.QUEUED: JobAcceptedV1,
    JobStatus.PROCESSING: JobProgressedV1,
    JobStatus.COMPLETED: JobCompletedV1,
    JobStatus.FAILED: JobFailedV1,
    JobStatus.CANCELED: JobCanceledV1,
}


def event_for(job: Job, bucket: str) -> JobEvent:
    """The event announcing `job` as it is now (its status decides the type)."""
    model = _BY_STATUS[job.status]
    event = model(
        id=f"{job.job_id}:{job.version}",
        time=iso(job.updated_at) or "",
        jobId=job.job_id,
        owner=job.owner,
        model=job.model,
        source=job.source.value,
        progress=job.progress,
        creditCost=job.charged_credits,
        resultKeys=job.result_keys,
        bucket=bucket,
        error=job.error,
        createdAt=iso(job.created_at) or "",
        completedAt=iso(job.completed_at),
    )
    return event  # type: ignore[return-value]


def events_for_change(old: Job | None, new: Job | None, bucket: str) -> list[JobEvent]:
    """The one logical event a change of a job record stands for, if any: a new job (accepted,
    or failed when it was born failed), a new status, or new progress while it renders.
    Bookkeeping writes (attempt counters, recorded task ids, webhook state) announce nothing."""
    if new is None:
        return []  # the record expired (TTL): not a change of the job
    unchanged = old is not None and old.status is new.status
    if unchanged and (new.status is not JobStatus.PROCESSING or new.progress == old.progress):  # type: ignore[union-attr]
        return []
    return [event_for(new, bucket)]


def rejection(
    request_id: str, owner: str, code: str, message: str, details: list[dict[str, Any]]
) -> JobRejectedV1:
    return JobRejectedV1(
        id=f"rejected:{owner}:{request_id}",
        time=iso(utc_now()) or "",
        requestId=request_id,
        owner=owner,
        error=ApiError(code=code, message=message, details=details),
    )


def message_attributes(event: AnyEvent, status: str | None = None) -> dict[str, dict[str, str]]:
    """SNS message attributes, for subscription filter policies: eventType, status, source,
    owner, and model where the event has one."""
    values = {
        "eventType": event.type,
        "status": status or getattr(event, "status", "REJECTED"),
        "source": event.source,
        "owner": event.owner,
    }
    if hasattr(event, "model"):
        values["model"] = event.model
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


class EventPublisher:
    """Publishes each event to the SNS topic and to our EventBridge bus. Raises when either
    refuses it, so the caller's platform retry (the stream, the queue) delivers it again."""

    def __init__(
        self, topic_arn: str, sns_client: Any, bus_name: str = "", events_client: Any = None
    ) -> None:
        self.topic_arn = topic_arn
        self.sns = sns_client
        self.bus_name = bus_name
        self.eventbridge = events_client

    def publish(self, event: AnyEvent) -> str:
        body = event.model_dump_json()
        response = self.sns.publish(
            TopicArn=self.topic_arn, Message=body, MessageAttributes=message_attributes(event)
        )
        if self.bus_name and self.eventbridge is not None:
            answer = self.eventbridge.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": EventType(event.type).detail_type,
                        "Detail": body,
                        "EventBusName": self.bus_name,
                        "Time": datetime.fromisoformat(event.time.replace("Z", "+00:00")),
                    }
                ]
            )
            if answer.get("FailedEntryCount"):
                raise RuntimeError(f"EventBridge refused event {event.id}: {answer.get('Entries')}")
        return str(response["MessageId"])


def export_schemas() -> dict[str, dict[str, Any]]:
    """file name under docs/events/ -> the JSON Schema of one event type and version."""
    schemas = {}
    for model in EVENT_MODELS:
        event_type = model.model_fields["type"].default
        version = model.model_fields["version"].default
        schema = model.model_json_schema()
        schema["$id"] = f"https://imagegen/events/{event_type}.v{version}.json"
        schema["x-detail-type"] = EventType(event_type).detail_type
        schemas[f"{event_type}.v{version}.schema.json"] = schema
    return schemas


if __name__ == "__main__":  # python -m imagegen.events docs/events: write the schemas there
    import sys
    from pathlib import Path

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/events")
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in export_schemas().items():
        (folder / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        print(folder / name)
