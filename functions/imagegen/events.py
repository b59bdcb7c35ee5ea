"""Job events on SNS: one message when a job completes or fails, in one documented shape.

Message attributes carry the event type and status so subscribers can filter without parsing.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from imagegen.models import Job, JobStatus, iso

EVENT_VERSION = "1"


class JobEvent(BaseModel):
    """The published contract: tests assert every message against this model."""

    version: str = EVENT_VERSION
    type: Literal["job.completed", "job.failed"]
    jobId: str
    owner: str
    status: Literal["COMPLETED", "FAILED"]
    model: str
    source: str
    creditCost: int
    resultKeys: list[str]
    bucket: str
    error: str | None
    createdAt: str
    completedAt: str | None

    @classmethod
    def for_job(cls, job: Job, bucket: str) -> JobEvent:
        completed = job.status is JobStatus.COMPLETED
        return cls(
            type="job.completed" if completed else "job.failed",
            jobId=job.job_id,
            owner=job.owner,
            status="COMPLETED" if completed else "FAILED",
            model=job.model,
            source=job.source.value,
            creditCost=job.charged_credits,
            resultKeys=job.result_keys,
            bucket=bucket,
            error=job.error,
            createdAt=iso(job.created_at) or "",
            completedAt=iso(job.completed_at),
        )


class EventPublisher:
    def __init__(self, topic_arn: str, sns_client: Any) -> None:
        self.topic_arn = topic_arn
        self.sns = sns_client

    def publish(self, event: JobEvent) -> str:
        response = self.sns.publish(
            TopicArn=self.topic_arn,
            Message=json.dumps(event.model_dump(), separators=(",", ":")),
            MessageAttributes={
                "eventType": {"DataType": "String", "StringValue": event.type},
                "status": {"DataType": "String", "StringValue": event.status},
                "source": {"DataType": "String", "StringValue": event.source},
            },
        )
        return str(response["MessageId"])
