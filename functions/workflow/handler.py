"""Entry points of the workflow's four Lambda functions (one module, one function each).

Each parses the state Step Functions hands it, runs one step of imagegen.workflow and returns
the next state. Deployed as separate functions so each has its own role, timeout and metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imagegen.models import Job
from imagegen.runtime import services
from imagegen.workflow import JobWorkflow, StepState

logger = Logger()
metrics = Metrics()


def _workflow() -> JobWorkflow:
    svc = services()
    return JobWorkflow(
        store=svc.jobs,
        provider_factory=svc.provider,
        results=svc.results,
        schedule=svc.settings.schedule,
        provider_chain=svc.settings.provider_chain,
        on_finished=_count_outcome,
    )


def _run(step: Callable[[JobWorkflow, StepState], StepState], event: dict[str, Any]) -> dict[str, Any]:
    """Parse the state, put the job id on every log line of this invocation, run the step."""
    state = StepState.model_validate(event)
    logger.append_keys(job_id=state.jobId)
    answer = step(_workflow(), state)
    logger.info("step done", next=answer.next, wait_seconds=answer.waitSeconds)
    return answer.model_dump(exclude_none=True)


@logger.inject_lambda_context(clear_state=True)
def create_task(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _run(JobWorkflow.create, event)


@logger.inject_lambda_context(clear_state=True)
def poll_task(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _run(JobWorkflow.poll, event)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(raise_on_empty_metrics=False)
def finalize_job(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _run(JobWorkflow.finalize, event)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(raise_on_empty_metrics=False)
def fail_job(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return _run(JobWorkflow.fail, event)


def _count_outcome(job: Job) -> None:
    """EMF metrics for the dashboard, once per job: jobs completed/failed, end-to-end latency."""
    if job.completed_at is None:
        return
    metrics.add_metric(name=f"Jobs{job.status.value.title()}", unit=MetricUnit.Count, value=1)
    latency = (job.completed_at - job.created_at).total_seconds()
    metrics.add_metric(name="JobLatency", unit=MetricUnit.Seconds, value=latency)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(raise_on_empty_metrics=False)
def sweep_overdue(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Scheduled: fail the jobs left open past their deadline (imagegen.jobs.OPEN_JOBS_INDEX).
    A job it cannot fail is skipped, logged and counted (JobsUnsweepable, alarmed on)."""
    sweep = _workflow().sweep()
    if sweep.failed:
        logger.warning("failed jobs left open past their deadline", job_ids=sweep.failed)
        metrics.add_metric(name="JobsSwept", unit=MetricUnit.Count, value=len(sweep.failed))
    if sweep.unsweepable:
        logger.error("open jobs past their deadline that could not be failed", jobs=sweep.unsweepable)
        metrics.add_metric(name="JobsUnsweepable", unit=MetricUnit.Count, value=len(sweep.unsweepable))
    return {"failed": sweep.failed, "unsweepable": sorted(sweep.unsweepable)}
