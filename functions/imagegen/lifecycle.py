"""A job's life as pure functions: how a job record is born and how it ends.

Every writer of a job (submission, the workflow steps, the sweeper, S3 edits) builds and ends
jobs through these, so retention, deadlines and what "FAILED" means are decided once. The
transitions are `JobStore.update` changes: they return the changed job, or None when the job
is already terminal, so a retried or duplicated step never ends a job twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from imagegen.credits import credit_cost
from imagegen.models import (
    DEFAULT_WEBHOOK_EVENTS,
    GenerateRequest,
    GptImageParams,
    Job,
    JobSource,
    JobStatus,
    utc_now,
)
from imagegen.settings import Settings

Change = Callable[[Job], Job | None]
# A failure's reason is read by people, travels in Step Functions state (256 KiB) and is stored
# in the job record: an upstream's message of any length is cut to this.
MAX_REASON_CHARS = 1000


def new_job(
    request: GenerateRequest,
    owner: str,
    settings: Settings,
    source: JobSource = JobSource.API,
    job_id: str | None = None,
    origin: dict[str, str] | None = None,
    key_id: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Job:
    """A QUEUED job for `request`, priced and given its deadline and retention. `key_id` is the
    API key that asked for it: its webhook secret signs the job's webhook deliveries. An
    `idempotency_key` (with the hash of the request body) makes a retried request this job."""
    now = utc_now()
    webhook_events = request.webhookEvents or (DEFAULT_WEBHOOK_EVENTS if request.webhookUrl else [])
    return Job(
        job_id=job_id or str(uuid.uuid4()),
        owner=owner,
        prompt=request.prompt,
        params=request.gptImageParams,
        source=source,
        credit_cost=credit_cost(request.gptImageParams, settings.credit_prices),
        created_at=now,
        updated_at=now,
        deadline_at=now + timedelta(seconds=settings.job_deadline_seconds),
        origin=origin or {},
        expires_at=_expiry(now, settings),
        key_id=key_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        webhook_url=request.webhookUrl,
        webhook_events=list(dict.fromkeys(webhook_events)),
        webhook_status="pending" if request.webhookUrl else None,
    )


def rejected_job(
    job_id: str, owner: str, settings: Settings, source: JobSource, origin: dict[str, str], reason: str
) -> Job:
    """The FAILED record of a request that could not become a job (an S3 upload that is not a
    valid request): nothing was charged, and the reason is readable through the API."""
    now = utc_now()
    return Job(
        job_id=job_id,
        owner=owner,
        status=JobStatus.FAILED,
        prompt="",
        params=GptImageParams(),
        source=source,
        credit_cost=0,
        error=reason,
        created_at=now,
        updated_at=now,
        completed_at=now,
        deadline_at=now,
        origin=origin,
        expires_at=_expiry(now, settings),
    )


def short_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def failed(reason: str, now: datetime | None = None) -> Change:
    """End an open job as FAILED with `reason`. The store refunds what the job was debited, in
    the same write (imagegen.jobs.JobStore, imagegen.accounts)."""

    def change(job: Job) -> Job | None:
        if job.status.is_terminal:
            return None
        job.status = JobStatus.FAILED
        job.error = short_reason(reason)
        job.completed_at = now or utc_now()
        return job

    return change


def canceled(now: datetime | None = None) -> Change:
    """End an open job as CANCELED by its owner (which refunds it: see Job.charged_credits)."""

    def change(job: Job) -> Job | None:
        if job.status.is_terminal:
            return None
        job.status = JobStatus.CANCELED
        job.error = "canceled by its owner"
        job.completed_at = now or utc_now()
        return job

    return change


def completed(result_keys: list[str], now: datetime | None = None) -> Change:
    """End an open job as COMPLETED with its images stored under `result_keys`."""

    def change(job: Job) -> Job | None:
        if job.status.is_terminal:
            return None
        job.status = JobStatus.COMPLETED
        job.result_keys = result_keys
        job.progress = 100
        job.error = None
        job.completed_at = now or utc_now()
        return job

    return change


def _expiry(now: datetime, settings: Settings) -> int:
    """DynamoDB TTL of a job record (epoch seconds)."""
    return int((now + timedelta(days=settings.record_retention_days)).timestamp())
