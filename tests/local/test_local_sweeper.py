"""The local stack has the cloud's sweeper rule (bp.DEFAULT.sweep_schedule) and fires it: a job
left open past its deadline with no execution to end it (a workflow that never started) is
failed and refunded locally too, not left QUEUED and charged for ever."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest

from imagegen.jobs import JobStore
from imagegen.lifecycle import new_job
from imagegen.models import GenerateRequest, JobStatus, utc_now
from imagegen.runtime import dynamodb_resource
from imagegen.settings import Settings
from imagegen_infra import blueprint as bp
from imagegen_local.triggers import ScheduleTrigger, rate_seconds


def schedule_trigger(stack: Any) -> ScheduleTrigger:
    [trigger] = [t for t in stack.triggers if isinstance(t, ScheduleTrigger)]
    return trigger


def test_the_sweeper_rule_is_the_clouds_and_its_trigger_fires_it_on_that_rate(stack):
    schedule = bp.DEFAULT.sweep_schedule
    events = boto3.client("events")

    rule = events.describe_rule(Name=schedule.name)
    [target] = events.list_targets_by_rule(Rule=schedule.name)["Targets"]

    assert (rule["ScheduleExpression"], rule["State"]) == (schedule.expression, "ENABLED")
    assert target["Arn"].endswith(f":function:{schedule.target.name}")
    trigger = schedule_trigger(stack)
    assert (trigger.function_name, trigger.idle_seconds) == (
        schedule.target.name,
        schedule.every_minutes * 60,
    )


def test_a_fired_schedule_fails_and_refunds_a_job_that_never_started(stack):
    store = JobStore(bp.JOBS_TABLE.name, dynamodb_resource())
    request = GenerateRequest(prompt="a harbour nobody started", model="gpt-image-1.5")
    job = new_job(request, owner="local-user", settings=Settings.from_environ())
    job.deadline_at = utc_now() - timedelta(hours=1)  # its execution never started (no start_execution)
    assert store.create(job)

    assert schedule_trigger(stack).fire()

    swept = store.get(job.job_id)
    assert swept.status is JobStatus.FAILED and swept.charged_credits == 0
    assert swept.error


@pytest.mark.parametrize(
    ("expression", "seconds"), [("rate(5 minutes)", 300), ("rate(1 minute)", 60), ("rate(2 hours)", 7200)]
)
def test_rate_expressions(expression, seconds):
    assert rate_seconds(expression) == seconds


def test_a_schedule_that_is_not_a_rate_is_refused():
    with pytest.raises(ValueError, match="not a rate expression"):
        rate_seconds("cron(0 12 * * ? *)")
