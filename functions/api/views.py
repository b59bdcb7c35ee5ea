"""What `GET /v2/jobs/{id}` shows: apiframe v2's job shape, result URLs signed at read time."""

from __future__ import annotations

from typing import Any

from imagegen.accounts import Account
from imagegen.models import Job, JobStatus, iso
from imagegen.storage import ResultStore


def job_view(job: Job, results: ResultStore, url_ttl_seconds: int) -> dict[str, Any]:
    result = None
    if job.status is JobStatus.COMPLETED:
        result = {"images": [results.presigned_url(key, url_ttl_seconds) for key in job.result_keys]}
    return {
        "id": job.job_id,
        "status": job.status.value,
        "model": job.model,
        "progress": job.progress,
        "result": result,
        "error": job.error,
        "creditCost": job.charged_credits,
        "webhookStatus": job.webhook_status,
        "webhookAttempts": job.webhook_attempts,
        "webhookError": job.webhook_last_error,
        "createdAt": iso(job.created_at),
        "completedAt": iso(job.completed_at),
        "prompt": job.prompt,
        "gptImageParams": job.params.model_dump(),
        "source": job.source.value,
    }


def account_view(account: Account, jobs_by_status: dict[str, int]) -> dict[str, Any]:
    """What `GET /v2/account` shows: the balance, the credits used (net of refunds) this UTC day
    and month, and how many of the account's jobs are in each status."""
    return {
        "owner": account.owner,
        "balance": account.balance,
        "creditsUsedToday": account.used_today,
        "creditsUsedThisMonth": account.used_this_month,
        "jobsByStatus": jobs_by_status,
    }
