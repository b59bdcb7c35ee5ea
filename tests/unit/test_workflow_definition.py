"""The state machine definition: every task can be retried, timed out and caught; waits are
data-driven; routes lead somewhere; substitutions are complete."""

from __future__ import annotations

import json

import pytest

from imagegen_infra.blueprint import WORKFLOW_FUNCTIONS
from imagegen_infra.workflow_definition import LAMBDA_SERVICE_ERRORS, definition, definition_json, render

DEADLINE = 900


@pytest.fixture
def states():
    return definition(DEADLINE)["States"]


def test_every_task_retries_lambda_service_errors_with_jitter_and_has_a_timeout(states):
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert set(tasks) == {"CreateTask", "PollTask", "Finalize", "RecordFailure"}
    for state in tasks.values():
        first = state["Retry"][0]
        assert first["ErrorEquals"] == LAMBDA_SERVICE_ERRORS and first["JitterStrategy"] == "FULL"
        assert first["MaxDelaySeconds"] > 0 and state["TimeoutSeconds"] > 0
        assert state["Catch"][0]["ErrorEquals"] == ["States.ALL"]
        if any("States.ALL" in r["ErrorEquals"] for r in state["Retry"]):
            assert state["Retry"][-1]["ErrorEquals"] == ["States.ALL"]  # ASL: States.ALL only last


def test_every_failure_path_ends_in_recording_the_failure(states):
    for name in ("CreateTask", "PollTask", "Finalize"):
        assert states[name]["Catch"][0]["Next"] == "RecordFailure"
    assert states["Route"]["Default"] == "RecordFailure"
    assert states["RecordFailure"]["Catch"][0]["Next"] == "FailureNotRecorded"


def test_waits_are_data_driven(states):
    waits = [s for s in states.values() if s["Type"] == "Wait"]
    assert waits and all(
        s == {"Type": "Wait", "SecondsPath": "$.waitSeconds", "Next": s["Next"]} for s in waits
    )


def test_every_transition_targets_an_existing_state(states):
    targets = {s.get("Next") for s in states.values()} | {
        c["Next"] for s in states.values() for c in s.get("Choices", []) + s.get("Catch", [])
    }
    targets |= {s.get("Default") for s in states.values()}
    assert targets - {None} <= set(states)


def test_the_execution_outlives_the_job_deadline():
    assert definition(DEADLINE)["TimeoutSeconds"] > DEADLINE


def test_render_substitutes_every_function_and_refuses_leftovers():
    arns = {
        name: f"arn:aws:lambda:us-east-1:123456789012:function:{spec.name}"
        for name, spec in WORKFLOW_FUNCTIONS.items()
    }
    rendered = json.loads(render(definition_json(DEADLINE), arns))
    assert rendered["States"]["CreateTask"]["Parameters"]["FunctionName"].endswith("imagegen-create-task")
    with pytest.raises(ValueError, match="unsubstituted"):
        render(definition_json(DEADLINE), {})


def test_the_sweeper_waits_longer_than_any_execution_can_run_past_the_deadline():
    from imagegen.jobs import SWEEP_GRACE
    from imagegen_infra.workflow_definition import EXECUTION_MARGIN_SECONDS

    # Otherwise the sweeper could fail a job whose execution is still about to finish it.
    assert SWEEP_GRACE.total_seconds() > EXECUTION_MARGIN_SECONDS
