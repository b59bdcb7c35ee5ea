"""Submitting a job: the one path for every entry (HTTP API, S3 uploads).

Validate, price, write the job QUEUED, start its workflow named by the job id. If the start
fails the job is marked FAILED (and so refunded) before the error goes back to the caller:
no job is left QUEUED with nothing to move it.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

from imagegen.credits import credit_cost
from imagegen.errors import InvalidRequest, ServiceUnavailable
from imagegen.jobs import JobStore
from imagegen.models import GenerateRequest, Job, JobSource, JobStatus, utc_now
from imagegen.providers import refusal_of_chain
from imagegen.providers.base import GenerationRequest
from imagegen.settings import Settings
from imagegen.ssrf import check_urls


class WorkflowStarter:
    def __init__(self, state_machine_arn: str, sfn_client: Any = None) -> None:
        self.state_machine_arn = state_machine_arn
        self.sfn = sfn_client or boto3.client("stepfunctions")

    def start(self, job_id: str) -> None:
        """Start the job's execution. Named by the job id, so a retried start cannot run the
        job twice: Step Functions refuses a second execution of the same name."""
        try:
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=job_id,
                input=json.dumps({"jobId": job_id}),
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise


def new_job(
    request: GenerateRequest,
    owner: str,
    settings: Settings,
    source: JobSource = JobSource.API,
    job_id: str | None = None,
    origin: dict[str, str] | None = None,
) -> Job:
    now = utc_now()
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
        expires_at=int((now + timedelta(days=settings.record_retention_days)).timestamp()),
    )


def submit_job(
    job: Job,
    store: JobStore,
    starter: WorkflowStarter,
    allow_loopback_urls: bool = False,
    provider_chain: list[str] | None = None,
) -> tuple[Job, bool]:
    """Store and start `job`. Returns the stored job and False when it already existed
    (a redelivered trigger): then nothing new is started. A request that no configured
    provider can serve (say webp on apiin.one) is refused here, before anything is charged."""
    check_urls(job.params.input_images or [], allow_loopback_urls)
    if provider_chain:
        request = GenerationRequest(job_id=job.job_id, prompt=job.prompt, params=job.params)
        reason = refusal_of_chain(provider_chain, request)
        if reason:
            raise InvalidRequest(reason, details=[{"field": "gptImageParams", "message": reason}])
    if not store.create(job):
        return store.get(job.job_id), False
    try:
        starter.start(job.job_id)
    except Exception as exc:
        reason = f"could not start the job's workflow: {type(exc).__name__}"
        store.update(job.job_id, lambda j: _failed(j, reason))
        raise ServiceUnavailable("the job could not be started; it was not charged, please retry") from exc
    return job, True


def _failed(job: Job, reason: str) -> Job | None:
    if job.status.is_terminal:
        return None
    job.status = JobStatus.FAILED
    job.error = reason
    job.completed_at = utc_now()
    return job
