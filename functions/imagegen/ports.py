"""The small interfaces the domain is written against.

The workflow, submission and the edits intake take these, never a boto3 client: production
hands them the DynamoDB / S3 / SNS / Step Functions adapters that imagegen.runtime wires, unit
tests hand them the in-memory fakes in tests/fakes.py (type-checked against these protocols).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from imagegen.events import AnyEvent
from imagegen.models import Job


class JobRepository(Protocol):
    """Job records with optimistic locking (imagegen.jobs.JobStore)."""

    def create(self, job: Job) -> bool:
        """Write a new job; False when another request wrote a job with this id (the stored
        record's request_token is not `job`'s). A record with `job`'s own token is this call's
        earlier attempt: True."""
        ...

    def get(self, job_id: str) -> Job:
        """The job, or raise imagegen.errors.JobNotFound."""
        ...

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> tuple[Job, bool]:
        """Apply `change` (None: leave as is) on the current record; the job and whether it changed.
        A change the record cannot hold is never written: one that fails the job is written in
        place (only the failure), any other raises imagegen.errors.JobRecordRefused."""
        ...

    def overdue(self, now: datetime, limit: int = 100) -> list[str]:
        """Ids of open jobs whose sweep time has passed, oldest first."""
        ...


class ResultRepository(Protocol):
    """Where a job's images are kept (imagegen.storage.ResultStore)."""

    bucket: str

    def copy_from_url(self, url: str, key: str, content_type: str) -> None: ...

    def put_image(self, key: str, data: bytes, content_type: str) -> None: ...

    def presigned_url(self, key: str, ttl_seconds: int) -> str: ...


class EventPublisherPort(Protocol):
    """Where job events go (imagegen.events.EventPublisher)."""

    def publish(self, event: AnyEvent) -> str: ...


class WorkflowStarterPort(Protocol):
    """Starts a job's workflow, at most once per job (imagegen.submission.WorkflowStarter)."""

    def start(self, job_id: str) -> None: ...
