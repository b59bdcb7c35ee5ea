"""The arithmetic the workflow hands Step Functions (backoff, jitter, Retry-After, deadlines),
read from the `waitSeconds` its public steps return, on in-memory fakes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from imagegen.errors import UpstreamTransientError
from imagegen.lifecycle import new_job
from imagegen.models import GenerateRequest, JobStatus, UpstreamTask
from imagegen.providers.base import TaskState
from imagegen.settings import PollSchedule, Settings
from imagegen.workflow import JobWorkflow, StepState, _reason_from_catch
from tests.fakes import InMemoryJobStore, InMemoryResults, ScriptedProvider

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings(jobs_table="j", api_keys_table="k", results_bucket="r", events_topic_arn="t")


def setup(jitter: float = 1.0, deadline_in: float = 600, **schedule: float):
    store, provider = InMemoryJobStore(), ScriptedProvider()
    flow = JobWorkflow(
        store=store,
        provider_factory=lambda name: provider,
        results=InMemoryResults(),
        schedule=PollSchedule(**{"max_create_attempts": 50, "max_poll_errors": 50, **schedule}),
        clock=lambda: NOW,
        jitter=lambda: jitter,
    )
    job = new_job(GenerateRequest(prompt="x", model="gpt-image-1.5"), "me", SETTINGS)
    job.deadline_at = NOW + timedelta(seconds=deadline_in)
    store.create(job)
    return flow, provider, StepState(jobId=job.job_id), store


def create_waits(attempts: int, retry_after: float | None = None, **kwargs) -> list[int]:
    flow, provider, state, _ = setup(**kwargs)
    provider.creates = [UpstreamTransientError("busy", retry_after=retry_after)] * attempts
    return [flow.create(state).waitSeconds for _ in range(attempts)]


def test_create_backoff_doubles_up_to_the_cap():
    assert create_waits(10, jitter=1.0, retry_base_seconds=1, retry_max_seconds=30) == [
        1, 2, 4, 8, 16, 30, 30, 30, 30, 30
    ]  # fmt: skip


def test_poll_backoff_grows_with_consecutive_poll_errors():
    flow, provider, state, store = setup(
        jitter=1.0, retry_base_seconds=1, retry_max_seconds=30, poll_interval_seconds=0
    )
    task = UpstreamTask(slot=0, task_id="t")
    store.update(state.jobId, lambda j: j.model_copy(update={"upstream_tasks": [task]}))
    provider.polls = [UpstreamTransientError("status unavailable")] * 5
    assert [flow.poll(state).waitSeconds for _ in range(5)] == [1, 2, 4, 8, 16]


def test_full_jitter_draws_between_zero_and_the_ceiling():
    assert create_waits(5, jitter=0.0)[-1] == 0
    assert create_waits(3, jitter=0.5, retry_base_seconds=1)[-1] == 2


def test_retry_after_is_never_undercut():
    assert create_waits(1, retry_after=7, jitter=0.0) == [7]


@pytest.mark.parametrize(("deadline_in", "wanted", "waited"), [(100, 2.2, 3), (4, 30, 4), (0.5, 30, 1)])
def test_waits_are_whole_seconds_and_never_past_the_deadline(deadline_in, wanted, waited):
    flow, provider, state, _ = setup(deadline_in=deadline_in, first_poll_seconds=int(wanted))
    if wanted != int(wanted):  # a fractional wait comes from Retry-After
        provider.creates = [UpstreamTransientError("busy", retry_after=wanted)]
        assert flow.create(state).waitSeconds == waited
    else:
        assert (flow.create(state).next, flow.create(state).waitSeconds) == ("poll", waited)


def test_a_job_past_its_deadline_is_failed_not_waited_for():
    flow, _, state, store = setup(deadline_in=-5)
    routed = flow.create(state)
    assert (routed.next, routed.waitSeconds) == ("fail", 0)
    assert store.get(state.jobId).status is JobStatus.QUEUED  # the fail step records it


def test_caught_errors_become_readable_reasons():
    cause = json.dumps({"errorType": "KeyError", "errorMessage": "'images'"})
    assert _reason_from_catch({"Error": "KeyError", "Cause": cause}) == "KeyError: 'images'"
    assert _reason_from_catch({"Error": "States.Timeout", "Cause": ""}) == "a workflow step timed out"
    assert _reason_from_catch({"Error": "States.Runtime", "Cause": "not json"}) == "States.Runtime: not json"
    assert _reason_from_catch(None) == "the job failed for an unknown reason"


def _polled_after(seconds: float, progress: int, **schedule: float) -> int:
    """The wait a poll returns for a task at `progress` % `seconds` after the job began."""
    flow, provider, state, store = setup(**schedule)
    began = NOW - timedelta(seconds=seconds)
    task = UpstreamTask(slot=0, task_id="t")
    store.update(state.jobId, lambda j: j.model_copy(update={"upstream_tasks": [task], "created_at": began}))
    provider.polls = [TaskState(JobStatus.PROCESSING, progress)]
    return flow.poll(state).waitSeconds


def test_adaptive_polling_waits_until_the_finish_the_progress_predicts():
    # 30 % after 3 s: 7 s to go; 75 % after 6 s: 2 s to go; rounded down, so never late.
    assert _polled_after(3, 30, poll_interval_seconds=2) == 7
    assert _polled_after(6, 75, poll_interval_seconds=2) == 2
    assert _polled_after(5.5, 60, poll_interval_seconds=2) == 3  # 3.67 s to go
    # Nearly done: one second (Wait states count whole seconds); far off: the cap.
    assert _polled_after(9, 98, poll_interval_seconds=2) == 1
    assert _polled_after(3, 1, poll_interval_seconds=2, max_poll_interval_seconds=10) == 10


def test_without_a_progress_figure_or_when_off_the_interval_is_fixed():
    assert _polled_after(3, 0, poll_interval_seconds=2) == 2  # queued: nothing to predict from
    assert _polled_after(3, 30, poll_interval_seconds=2, adaptive_polling=False) == 2
    assert _polled_after(3, 30, poll_interval_seconds=0) == 0  # tests' zero waits stay zero
