"""The workflow functions' real entry points, called in-process with the states Step Functions
hands them (events/workflow/), against moto: idempotent steps and every failure recorded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from imagegen.jobs import JobStore
from imagegen.lifecycle import new_job
from imagegen.models import GenerateRequest, JobStatus, utc_now
from imagegen.runtime import dynamodb_resource
from imagegen.settings import Settings
from imagegen_infra import blueprint as bp
from imagegen_local.lambda_runtime import FakeLambdaContext
from tests.support import load_event


def store() -> JobStore:
    return JobStore(bp.JOBS_TABLE.name, dynamodb_resource())


def stored_job(**changes: Any) -> str:
    """A job written straight to the store, as the submit step leaves it."""
    request = GenerateRequest(prompt="a quiet harbour", model="gpt-image-1.5")
    job = new_job(request, owner="local-user", settings=Settings.from_environ())
    for name, value in changes.items():
        setattr(job, name, value)
    assert store().create(job)
    return job.job_id


def run(entry_point: str, sample: str, job_id: str) -> dict[str, Any]:
    import workflow.handler as handlers

    event = {**load_event(sample), "jobId": job_id}
    return getattr(handlers, entry_point)(event, FakeLambdaContext(function_name=entry_point))  # type: ignore[no-any-return]


def test_a_failure_caught_by_the_state_machine_is_recorded_with_the_functions_message(stack, job_events):
    job_id = stored_job()

    answer = run("fail_job", "workflow/fail_job_caught.json", job_id)

    assert answer["next"] == "done"
    job = store().get(job_id)
    assert job.status is JobStatus.FAILED and job.error == "RuntimeError: boom"
    assert job.charged_credits == 0
    [event] = job_events(job_id)
    assert event["type"] == "job.failed" and event["error"] == "RuntimeError: boom"


def test_the_execution_backstop_fails_a_job_left_processing(stack):
    job_id = stored_job(status=JobStatus.PROCESSING)

    run("fail_job", "workflow/fail_job_execution_ended.json", job_id)

    assert store().get(job_id).error == "the workflow execution ended TIMED_OUT"


def test_recording_a_failure_twice_changes_nothing_and_announces_once(stack, job_events):
    job_id = stored_job()
    run("fail_job", "workflow/fail_job_decided.json", job_id)
    first = store().get(job_id)

    run("fail_job", "workflow/fail_job_caught.json", job_id)

    again = store().get(job_id)
    assert (again.error, again.version) == (first.error, first.version)
    assert len(job_events(job_id, expect=2, timeout=1.0)) == 1


def test_a_completed_job_is_never_failed_afterwards(stack):
    job_id = stored_job(status=JobStatus.COMPLETED, result_keys=["images/x/0.webp"])

    run("fail_job", "workflow/fail_job_decided.json", job_id)

    assert store().get(job_id).status is JobStatus.COMPLETED


def test_poll_after_the_deadline_routes_to_failure(stack):
    job_id = stored_job(status=JobStatus.PROCESSING, deadline_at=utc_now() - timedelta(seconds=1))

    answer = run("poll_task", "workflow/poll_task.json", job_id)

    assert answer["next"] == "fail" and "deadline exceeded" in answer["reason"]


@pytest.mark.parametrize("entry_point", ["create_task", "poll_task", "finalize_job"])
def test_steps_on_a_finished_job_do_nothing(stack, entry_point):
    job_id = stored_job(status=JobStatus.FAILED, error="earlier failure")
    sample = {
        "create_task": "workflow/create_task.json",
        "poll_task": "workflow/poll_task.json",
        "finalize_job": "workflow/finalize_job.json",
    }[entry_point]

    answer = run(entry_point, sample, job_id)

    assert answer["next"] == "done"
    assert store().get(job_id).error == "earlier failure"


def test_an_unknown_job_raises_so_the_state_machine_catches_it(stack):
    import workflow.handler as handlers
    from imagegen.errors import JobNotFound

    with pytest.raises(JobNotFound):
        handlers.poll_task(load_event("workflow/poll_task.json"), FakeLambdaContext(function_name="poll"))


def invoke_sweeper() -> dict[str, Any]:
    """Through moto's Lambda API, as the schedule invokes it."""
    import json

    import boto3

    answer = boto3.client("lambda").invoke(FunctionName=bp.SWEEPER_FUNCTION.name, Payload=b"{}")
    assert "FunctionError" not in answer
    return json.loads(answer["Payload"].read())  # type: ignore[no-any-return]


def test_a_job_left_open_long_past_its_deadline_is_swept_failed_and_refunded(stack, job_events):
    from imagegen.workflow import SWEPT_REASON

    # Written QUEUED, then the API function died before starting its workflow.
    abandoned = stored_job(deadline_at=utc_now() - timedelta(hours=1))
    running = stored_job(status=JobStatus.PROCESSING)  # within its deadline: not touched
    finished = stored_job(
        status=JobStatus.COMPLETED,
        result_keys=["images/x/0.webp"],
        deadline_at=utc_now() - timedelta(hours=1),
    )

    swept = invoke_sweeper()["failed"]

    assert abandoned in swept and running not in swept and finished not in swept
    job = store().get(abandoned)
    assert (job.status, job.error, job.charged_credits) == (JobStatus.FAILED, SWEPT_REASON, 0)
    assert job_events(abandoned)[0]["type"] == "job.failed"
    assert store().get(running).status is JobStatus.PROCESSING
    assert invoke_sweeper()["failed"] == []  # a terminal job leaves the index: swept once


def test_the_finished_hook_runs_once_per_job_however_often_its_step_is_delivered(stack):
    from imagegen.runtime import services
    from imagegen.workflow import JobWorkflow, StepState

    finished: list[str] = []
    svc = services()
    workflow = JobWorkflow(
        svc.jobs,
        svc.provider,
        svc.results,
        svc.events,
        svc.settings.schedule,
        on_finished=lambda job: finished.append(job.job_id),
    )
    job_id = stored_job()

    for _ in range(2):
        workflow.fail(StepState(jobId=job_id, next="fail", reason="content policy violation"))

    assert finished == [job_id]


def test_every_log_line_of_a_step_names_its_job(stack):
    import io
    import json

    import workflow.handler as handlers

    job_id = stored_job()
    written = io.StringIO()
    previous = handlers.logger.registered_handler.setStream(written)  # type: ignore[attr-defined]
    try:
        run("fail_job", "workflow/fail_job_caught.json", job_id)
    finally:
        handlers.logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]

    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert lines, "the step logged nothing"
    assert {line.get("job_id") for line in lines} == {job_id}
