"""The workflow functions' real entry points, called in-process with the states Step Functions
hands them (events/workflow/), against moto: idempotent steps and every failure recorded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from imagegen.jobs import OPEN_MARKER, SWEEP_AFTER, JobStore, _to_item
from imagegen.lifecycle import new_job
from imagegen.models import GenerateRequest, Job, JobStatus, utc_now
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
    import logging
    import threading

    import workflow.handler as handlers

    job_id = stored_job()
    written = io.StringIO()
    # Functions invoked in the background (the stream's job-events, the sweeper) log through the
    # same handler (one per service name): keep only this thread's lines, this invocation's.
    this_thread = threading.get_ident()

    def from_this_invocation(record: logging.LogRecord) -> bool:
        return record.thread == this_thread

    handler = handlers.logger.registered_handler  # type: ignore[attr-defined]
    previous = handler.setStream(written)
    handler.addFilter(from_this_invocation)
    try:
        run("fail_job", "workflow/fail_job_caught.json", job_id)
    finally:
        handler.removeFilter(from_this_invocation)
        handler.setStream(previous)

    lines = [json.loads(line) for line in written.getvalue().splitlines()]
    assert lines, "the step logged nothing"
    assert {line.get("job_id") for line in lines} == {job_id}


# --- records DynamoDB cannot hold ----------------------------------------------------------------
def legacy_job(filler: int, **changes: Any) -> Job:
    """A QUEUED job overdue for the sweep carrying `filler` characters more than a request may:
    the kind of record written before requests were bounded. (In `origin`, which the model does
    not bound on read: an over-long input URL would now make the record unreadable instead.)"""
    request = GenerateRequest(prompt="a quiet harbour", model="gpt-image-1.5")
    job = new_job(request, owner="local-user", settings=Settings.from_environ())
    job.origin = {"legacy": "a" * filler}
    job.deadline_at = utc_now() - timedelta(hours=2)
    for name, value in changes.items():
        setattr(job, name, value)
    return job


def put_legacy(job: Job) -> bool:
    """Write the record as it is, bypassing every budget; False when DynamoDB refuses it."""
    from botocore.exceptions import ClientError

    try:
        store().table.put_item(Item=_to_item(job))
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ValidationException"
        return False
    return True


def largest_legacy_job(**changes: Any) -> Job:
    """The largest such record DynamoDB takes (by bisection, so it holds whatever DynamoDB counts):
    not even the few bytes that fail it fit any more."""
    low, high = 300_000, 420_000
    job = legacy_job(low, **changes)
    assert put_legacy(job)
    while high - low > 1:
        middle = (low + high) // 2
        candidate = legacy_job(middle, job_id=job.job_id, **changes)
        if put_legacy(candidate):
            low, job = middle, candidate
        else:
            high = middle
    return job


def test_a_change_the_record_cannot_hold_is_refused_and_the_job_can_still_be_failed(stack):
    from imagegen.errors import JobRecordRefused
    from imagegen.lifecycle import failed
    from imagegen.models import UpstreamTask

    job_id = stored_job(status=JobStatus.PROCESSING)
    before = store().get(job_id)

    def record_absurd_task(job: Job) -> Job:
        job.upstream_tasks.append(UpstreamTask(slot=0, task_id="t" * 300_000))
        return job

    with pytest.raises(JobRecordRefused) as refused:
        store().update(job_id, record_absurd_task)
    assert store().get(job_id) == before  # nothing written
    ended, changed = store().update(job_id, failed(refused.value.message))  # what the fail step does

    assert changed and ended == store().get(job_id)
    assert ended.status is JobStatus.FAILED and ended.error == refused.value.message
    item = store().table.get_item(Key={"job_id": job_id})["Item"]
    assert OPEN_MARKER not in item and SWEEP_AFTER not in item  # out of the sweeper's index


def test_a_record_boto3_cannot_serialize_is_refused(stack):
    from imagegen.errors import JobRecordRefused

    job_id = stored_job(status=JobStatus.PROCESSING)
    before = store().get(job_id)

    with pytest.raises(JobRecordRefused, match="could not be serialized"):
        store().update(job_id, lambda job: job.model_copy(update={"progress": 10**40}))
    assert store().get(job_id) == before


def test_the_sweeper_skips_and_reports_a_job_it_cannot_fail_and_sweeps_the_rest(stack, capsys):
    import json

    import workflow.handler as handlers
    from imagegen.workflow import SWEPT_REASON

    unfixable = largest_legacy_job(deadline_at=utc_now() - timedelta(hours=3))  # swept first
    oversized = legacy_job(330_000)  # over the record budget, with room to fail it
    assert put_legacy(oversized)
    abandoned = stored_job(deadline_at=utc_now() - timedelta(hours=1))
    capsys.readouterr()
    try:
        answer = handlers.sweep_overdue({}, FakeLambdaContext(function_name=bp.SWEEPER_FUNCTION.name))

        assert unfixable.job_id in answer["unsweepable"]
        assert {oversized.job_id, abandoned} <= set(answer["failed"])
        for job_id in (oversized.job_id, abandoned):
            job = store().get(job_id)
            assert (job.status, job.error, job.charged_credits) == (JobStatus.FAILED, SWEPT_REASON, 0)
        assert store().get(unfixable.job_id).status is JobStatus.QUEUED
        emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        assert any(line.get("JobsUnsweepable") == [1.0] for line in emitted), emitted
    finally:
        store().table.delete_item(Key={"job_id": unfixable.job_id})  # not to alarm later tests' sweeps
