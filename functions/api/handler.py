"""The public API (apiframe v2 shape): submit a generation, read, list and cancel jobs, read
the caller's account.

Thin by design: authenticate, parse, call the domain, answer. Errors are mapped in errors.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from api.cors import with_cors
from api.errors import register_error_handlers
from api.views import account_view, job_view
from imagegen.errors import InvalidRequest, JobNotCancelable, JobNotFound
from imagegen.jobs import JobStore
from imagegen.keys import ApiKey
from imagegen.lifecycle import canceled, new_job
from imagegen.models import GenerateRequest, Job, JobStatus, load_json
from imagegen.runtime import services
from imagegen.submission import submit_job

logger = Logger()
metrics = Metrics()
app = APIGatewayRestResolver()
register_error_handlers(app)

# Printable ASCII, as Stripe's and the IETF draft's keys are (a UUID fits with room to spare).
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_PAGE = 100
DEFAULT_PAGE = 20


def _caller() -> ApiKey:
    return services().keys.authenticate(app.current_event.headers.get("x-api-key") or None)


def _idempotency_key() -> str | None:
    key = app.current_event.headers.get("idempotency-key")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters",
            details=[{"field": "Idempotency-Key", "message": "1-255 printable ASCII characters"}],
        )
    return key


@app.post("/v2/images/generate")
def generate() -> Response:
    caller = _caller()
    idempotency_key = _idempotency_key()
    try:
        body = load_json(app.current_event.body or "")
    except ValueError:
        raise InvalidRequest("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    request = GenerateRequest.model_validate(body)
    svc = services()
    job = new_job(
        request,
        owner=caller.owner,
        settings=svc.settings,
        key_id=caller.key_id,
        idempotency_key=idempotency_key,
        # The same request, whatever its whitespace or key order.
        request_hash=hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(),
    )
    job, created = submit_job(
        job, svc.jobs, svc.starter, svc.settings.allow_loopback_urls, svc.settings.provider_chain
    )
    headers: dict[str, str] = {}
    if created:
        logger.info("job submitted", job_id=job.job_id, credits=job.credit_cost)
        metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
    elif idempotency_key:
        headers["Idempotent-Replayed"] = "true"
    # A replay answers what the first request was answered: the job, as it was accepted.
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body={"jobId": job.job_id, "status": JobStatus.QUEUED.value},
        headers=headers,
    )


@app.get("/v2/webhooks/secret")
def webhook_secret() -> dict[str, Any]:
    """The caller's key's webhook signing secret (made on first use)."""
    return {"secret": services().webhook_secrets.current(_caller().key_id)}


@app.post("/v2/webhooks/secret/rotate")
def rotate_webhook_secret() -> dict[str, Any]:
    """A new secret signs from now on; the previous one keeps signing for 24 hours."""
    return {"secret": services().webhook_secrets.rotate(_caller().key_id)}


@app.get("/v2/jobs")
def list_jobs() -> dict[str, Any]:
    """The caller's jobs, newest first, a page at a time (`cursor` from the previous page)."""
    caller = _caller()
    svc = services()
    params = app.current_event.query_string_parameters or {}
    limit = _limit(params.get("limit"))
    status = _status(params.get("status"))
    jobs, cursor = svc.jobs.list_owned(caller.owner, limit, params.get("cursor") or None, status)
    ttl = svc.settings.result_url_ttl_seconds
    return {
        "jobs": [job_view(job, svc.results, ttl) for job in jobs],
        "nextCursor": cursor,
        "hasMore": cursor is not None,
    }


@app.get("/v2/jobs/<job_id>")
def get_job(job_id: str) -> dict[str, Any]:
    svc = services()
    job = _own_job(svc.jobs, job_id, _caller())
    return job_view(job, svc.results, svc.settings.result_url_ttl_seconds)


@app.post("/v2/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> dict[str, Any]:
    """A QUEUED or PROCESSING job ends CANCELED and is refunded (in the same write); its
    workflow finds it ended at its next step and stops there."""
    svc = services()
    _own_job(svc.jobs, job_id, _caller())
    job, changed = svc.jobs.update(job_id, canceled())
    if not changed:
        raise JobNotCancelable(
            f"job {job_id} is already {job.status.value}",
            details=[{"field": "status", "message": job.status.value}],
        )
    logger.info("job canceled", job_id=job_id, credits=job.debited_credits)
    return job_view(job, svc.results, svc.settings.result_url_ttl_seconds)


@app.get("/v2/account")
def account() -> dict[str, Any]:
    caller = _caller()
    svc = services()
    return account_view(svc.accounts.account(caller.owner), svc.jobs.count_by_status(caller.owner))


def _own_job(jobs: JobStore, job_id: str, caller: ApiKey) -> Job:
    job = jobs.get(job_id)
    if job.owner != caller.owner:
        raise JobNotFound(f"job {job_id} not found")  # never reveal another owner's jobs
    return job


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidRequest(
            f"limit must be a whole number from 1 to {MAX_PAGE}",
            details=[{"field": "limit", "message": f"1-{MAX_PAGE}"}],
        )
    return int(value)


def _status(value: str | None) -> JobStatus | None:
    if value is None:
        return None
    try:
        return JobStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise InvalidRequest(
            f"status must be one of {allowed}", details=[{"field": "status", "message": allowed}]
        ) from None


# Every log line of a request carries API Gateway's request id as its correlation id: the id
# a caller quotes (x-amzn-RequestId) finds all of it.
@logger.inject_lambda_context(clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return with_cors(app.resolve(event, context), event, services().settings.cors_allow_origins)
