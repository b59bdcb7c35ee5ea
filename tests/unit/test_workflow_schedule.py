"""The arithmetic the workflow hands Step Functions: backoff, jitter, Retry-After, deadlines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from imagegen.models import GenerateRequest
from imagegen.settings import PollSchedule, Settings
from imagegen.submission import new_job
from imagegen.workflow import JobWorkflow, _reason_from_catch

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def workflow(jitter: float = 1.0, **schedule: float) -> JobWorkflow:
    return JobWorkflow(
        store=None,
        provider_factory=None,
        results=None,
        events=None,  # type: ignore[arg-type]
        schedule=PollSchedule(**schedule),
        clock=lambda: NOW,
        jitter=lambda: jitter,
    )


def job(deadline_in: float):
    settings = Settings(jobs_table="j", api_keys_table="k", results_bucket="r", events_topic_arn="t")
    created = new_job(GenerateRequest(prompt="x", model="gpt-image-1.5"), "me", settings)
    created.deadline_at = NOW + timedelta(seconds=deadline_in)
    return created


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 1), (2, 2), (3, 4), (4, 8), (10, 30)])
def test_backoff_doubles_up_to_the_cap(attempt, ceiling):
    assert workflow(jitter=1.0, retry_base_seconds=1, retry_max_seconds=30)._backoff(attempt, None) == ceiling


def test_full_jitter_draws_between_zero_and_the_ceiling():
    assert workflow(jitter=0.0)._backoff(5, None) == 0
    assert workflow(jitter=0.5, retry_base_seconds=1)._backoff(3, None) == 2


def test_retry_after_is_never_undercut():
    assert workflow(jitter=0.0)._backoff(1, retry_after=7) == 7


def test_waits_are_whole_seconds_and_never_past_the_deadline():
    flow = workflow()
    assert flow._wait_then(job(deadline_in=100), "poll", 2.2).waitSeconds == 3
    assert flow._wait_then(job(deadline_in=4), "poll", 30).waitSeconds == 4
    assert flow._wait_then(job(deadline_in=-5), "poll", 30).waitSeconds == 0


def test_caught_errors_become_readable_reasons():
    cause = json.dumps({"errorType": "KeyError", "errorMessage": "'images'"})
    assert _reason_from_catch({"Error": "KeyError", "Cause": cause}) == "KeyError: 'images'"
    assert _reason_from_catch({"Error": "States.Timeout", "Cause": ""}) == "a workflow step timed out"
    assert _reason_from_catch({"Error": "States.Runtime", "Cause": "not json"}) == "States.Runtime: not json"
    assert _reason_from_catch(None) == "the job failed for an unknown reason"
