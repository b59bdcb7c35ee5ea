"""Submitting a job: the one path for every entry (HTTP API, S3 uploads, event requests).

Validate, price, write the job QUEUED and debit its owner in one transaction, start its
workflow named by the job id. If the start
fails the job is marked FAILED (and so refunded) before the error goes back to the caller:
no job is left QUEUED with nothing to move it.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from botocore.exceptions import ClientError

from imagegen.accounts import IdempotencyKeyClaimed
from imagegen.errors import IdempotencyKeyReused, ImagegenError, InvalidRequest, ServiceUnavailable
from imagegen.jobs import NEW_JOB_MAX_BYTES, record_bytes
from imagegen.lifecycle import failed
from imagegen.models import Job
from imagegen.ports import JobRepository, WorkflowStarterPort
from imagegen.providers import refusal_of_chain
from imagegen.providers.base import GenerationRequest
from imagegen.ssrf import check_urls


class WorkflowStarter:
    """Step Functions, through a client the runtime builds (imagegen.ports.WorkflowStarterPort)."""

    def __init__(self, state_machine_arn: str, sfn_client: Any) -> None:
        self.state_machine_arn = state_machine_arn
        self.sfn = sfn_client

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


def submit_job(
    job: Job,
    store: JobRepository,
    starter: WorkflowStarterPort,
    allow_loopback_urls: bool = False,
    provider_chain: list[str] | None = None,
) -> tuple[Job, bool]:
    """Store and start `job`. Returns the stored job and False when another request had already
    stored it (a redelivered trigger, or a request retried with the same Idempotency-Key and
    body): then nothing new is started, nothing more debited. A record this very call wrote
    (its write retried after a lost answer) is ours, and is started. A request that no configured
    provider can serve (say webp on apiin.one) is refused here, before anything is charged,
    and so is a request too large for its job record (imagegen.jobs.NEW_JOB_MAX_BYTES)."""
    size = record_bytes(job)
    if size > NEW_JOB_MAX_BYTES:
        field = "gptImageParams.input_images" if job.params.input_images else "body"
        detail = f"the job would take {size} bytes; the limit is {NEW_JOB_MAX_BYTES} bytes"
        if job.params.input_images:
            detail += " (send fewer or shorter input_images URLs)"
        raise InvalidRequest("the request is too large", details=[{"field": field, "message": detail}])
    check_urls([*(job.params.input_images or []), *filter(None, [job.webhook_url])], allow_loopback_urls)
    if provider_chain:
        request = GenerationRequest(job_id=job.job_id, prompt=job.prompt, params=job.params)
        reason = refusal_of_chain(provider_chain, request)
        if reason:
            raise InvalidRequest(reason, details=[{"field": "gptImageParams", "message": reason}])
    try:
        created = store.create(job)  # debits the owner (402 when the balance is short)
    except IdempotencyKeyClaimed as claimed:
        if claimed.claim.request_hash != job.request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was sent with another request body",
                details=[{"field": "Idempotency-Key", "message": "use a new key for a new request"}],
            ) from None
        return store.get(claimed.claim.job_id), False  # a retry: its job, charged once
    except ImagegenError:
        raise  # refused (402, say): nothing was written
    except Exception:
        _fail_if_written(job, store)
        raise
    if not created:
        return store.get(job.job_id), False
    try:
        starter.start(job.job_id)
    except Exception as exc:
        store.update(job.job_id, failed(f"could not start the job's workflow: {type(exc).__name__}"))
        raise ServiceUnavailable("the job could not be started; it was not charged, please retry") from exc
    return job, True


def _fail_if_written(job: Job, store: JobRepository) -> None:
    """A create that raised (a timeout, say) may still have been stored: the caller is told it
    failed, so the job must not stay open and charged. Fail it if it is there and it is this
    request's (its token). Not there, or the store still failing: nothing more to do here, the
    sweeper fails it once it is overdue."""
    ours = failed("the job could not be recorded in time; it was refunded, please retry")
    with contextlib.suppress(Exception):
        store.update(
            job.job_id, lambda stored: ours(stored) if stored.request_token == job.request_token else None
        )
