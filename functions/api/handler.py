"""The public API (apiframe v2 shape): submit a generation, read a job.

Thin by design: authenticate, parse, call the domain, answer. Errors are mapped in errors.py.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from api.cors import with_cors
from api.errors import register_error_handlers
from api.views import job_view
from imagegen.errors import InvalidRequest, JobNotFound
from imagegen.keys import ApiKey
from imagegen.lifecycle import new_job
from imagegen.models import GenerateRequest, load_json
from imagegen.runtime import services
from imagegen.submission import submit_job

logger = Logger()
metrics = Metrics()
app = APIGatewayRestResolver()
register_error_handlers(app)


def _caller() -> ApiKey:
    return services().keys.authenticate(app.current_event.headers.get("x-api-key") or None)


@app.post("/v2/images/generate")
def generate() -> Response:
    caller = _caller()
    try:
        body = load_json(app.current_event.body or "")
    except ValueError:
        raise InvalidRequest("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    request = GenerateRequest.model_validate(body)
    svc = services()
    job = new_job(request, owner=caller.owner, settings=svc.settings, key_id=caller.key_id)
    job, _ = submit_job(
        job, svc.jobs, svc.starter, svc.settings.allow_loopback_urls, svc.settings.provider_chain
    )
    logger.info("job submitted", job_id=job.job_id, credits=job.credit_cost)
    metrics.add_metric(name="JobsSubmitted", unit=MetricUnit.Count, value=1)
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body={"jobId": job.job_id, "status": job.status.value},
    )


@app.get("/v2/webhooks/secret")
def webhook_secret() -> dict[str, Any]:
    """The caller's key's webhook signing secret (made on first use)."""
    return {"secret": services().webhook_secrets.current(_caller().key_id)}


@app.post("/v2/webhooks/secret/rotate")
def rotate_webhook_secret() -> dict[str, Any]:
    """A new secret signs from now on; the previous one keeps signing for 24 hours."""
    return {"secret": services().webhook_secrets.rotate(_caller().key_id)}


@app.get("/v2/jobs/<job_id>")
def get_job(job_id: str) -> dict[str, Any]:
    caller = _caller()
    svc = services()
    job = svc.jobs.get(job_id)
    if job.owner != caller.owner:
        raise JobNotFound(f"job {job_id} not found")  # never reveal another owner's jobs
    return job_view(job, svc.results, svc.settings.result_url_ttl_seconds)


# Every log line of a request carries API Gateway's request id as its correlation id: the id
# a caller quotes (x-amzn-RequestId) finds all of it.
@logger.inject_lambda_context(clear_state=True, correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return with_cors(app.resolve(event, context), event, services().settings.cors_allow_origins)
