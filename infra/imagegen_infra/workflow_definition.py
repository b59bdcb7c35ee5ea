"""The job state machine, in JSONPath ASL (moto's interpreter has no JSONata).

One generator, used by the CDK stack (with definitionSubstitutions for the function ARNs) and
by the local stack (which substitutes the same names itself), so the definition deployed is
the definition tested. Read it as a chain:

    CreateTask -> Route -> WaitBeforePoll -> PollTask -> Route -> ... -> Finalize -> Route -> Done
                     \\-> WaitBeforeCreate -> CreateTask        (transient upstream errors)
                     \\-> RecordFailure -> Done                  (terminal error, deadline, crash)

Waits read `waitSeconds` (SecondsPath) computed by the steps: backoff, jitter, Retry-After and
the job deadline are decided in code, so tests run with zero waits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from imagegen.errors import transient_error_names
from imagegen_infra.blueprint import (
    CREATE_TASK_FUNCTION,
    FAIL_FUNCTION,
    FINALIZE_FUNCTION,
    POLL_TASK_FUNCTION,
    WORKFLOW_FUNCTIONS,
    FunctionSpec,
)

# Errors of the Lambda service itself (not our code): always worth a retry (REFERENCE §5).
LAMBDA_SERVICE_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# Raised by finalize when an image download fails transiently. Lambda's errorType is the
# exception's class name and Retry matches names exactly, so every transient class is listed.
TRANSIENT_UPSTREAM_ERRORS = transient_error_names()
# A crash of our own step (a bug, an out-of-memory, a timeout) is retried once before the job
# fails: a crash between creating the upstream task and recording it must not lose the job, and
# the retry reuses the task through the provider's idempotency key.
RETRY_ONCE_ON_CRASH = {
    "ErrorEquals": ["States.ALL"],
    "IntervalSeconds": 1,
    "MaxAttempts": 1,
    "BackoffRate": 1.0,
}
TASK_TIMEOUT_MARGIN_SECONDS = 30
EXECUTION_MARGIN_SECONDS = 900  # finalize and failure recording after the job deadline


def _arn_placeholder(function: FunctionSpec) -> str:
    name = next(key for key, spec in WORKFLOW_FUNCTIONS.items() if spec == function)
    return "${" + name + "}"


def _lambda_task(
    function: FunctionSpec,
    next_state: str,
    extra_retry: list[dict[str, Any]] | None = None,
    catch: bool = True,
) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": _arn_placeholder(function), "Payload.$": "$"},
        "OutputPath": "$.Payload",
        # Longer than the function's own timeout, so Lambda's timeout error is the one reported.
        "TimeoutSeconds": function.timeout_seconds + TASK_TIMEOUT_MARGIN_SECONDS,
        "Retry": [
            {
                "ErrorEquals": LAMBDA_SERVICE_ERRORS,
                "IntervalSeconds": 1,
                "MaxAttempts": 4,
                "BackoffRate": 2.0,
                "MaxDelaySeconds": 20,
                "JitterStrategy": "FULL",
            },
            *(extra_retry or []),
        ],
        "Next": next_state,
    }
    if catch:
        state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}]
    return state


def _wait(next_state: str) -> dict[str, Any]:
    return {"Type": "Wait", "SecondsPath": "$.waitSeconds", "Next": next_state}


def definition(job_deadline_seconds: int) -> dict[str, Any]:
    route_to = {
        "create": "WaitBeforeCreate",
        "poll": "WaitBeforePoll",
        "finalize": "Finalize",
        "fail": "RecordFailure",
        "done": "Done",
    }
    return {
        "Comment": "imagegen job: create the upstream task, poll it, store the images, announce the outcome",
        "StartAt": "CreateTask",
        "TimeoutSeconds": job_deadline_seconds + EXECUTION_MARGIN_SECONDS,
        "States": {
            "CreateTask": _lambda_task(CREATE_TASK_FUNCTION, "Route", extra_retry=[RETRY_ONCE_ON_CRASH]),
            "Route": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.next", "StringEquals": step, "Next": state}
                    for step, state in route_to.items()
                ],
                "Default": "RecordFailure",
            },
            "WaitBeforeCreate": _wait("CreateTask"),
            "WaitBeforePoll": _wait("PollTask"),
            "PollTask": _lambda_task(POLL_TASK_FUNCTION, "Route", extra_retry=[RETRY_ONCE_ON_CRASH]),
            "Finalize": _lambda_task(
                FINALIZE_FUNCTION,
                "Route",
                extra_retry=[
                    {
                        "ErrorEquals": TRANSIENT_UPSTREAM_ERRORS,
                        "IntervalSeconds": 2,
                        "MaxAttempts": 3,
                        "BackoffRate": 2.0,
                        "MaxDelaySeconds": 30,
                        "JitterStrategy": "FULL",
                    }
                ],
            ),
            "RecordFailure": {
                **_lambda_task(FAIL_FUNCTION, "Done", catch=False),
                "Catch": [
                    {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "FailureNotRecorded"}
                ],
            },
            "Done": {"Type": "Succeed"},
            # Reached only if recording a failure itself fails: the execution fails, which alarms.
            "FailureNotRecorded": {
                "Type": "Fail",
                "Error": "FailureNotRecorded",
                "Cause": "the job's failure could not be written; see the execution history",
            },
        },
    }


def definition_json(job_deadline_seconds: int) -> str:
    return json.dumps(definition(job_deadline_seconds), indent=2, sort_keys=True)


def render(template: str, substitutions: Mapping[str, str]) -> str:
    """Replace ${Name} as Step Functions' definitionSubstitutions do; refuse leftovers."""
    rendered = re.sub(r"\$\{(\w+)\}", lambda m: substitutions.get(m.group(1), m.group(0)), template)
    leftover = re.findall(r"\$\{(\w+)\}", rendered)
    if leftover:
        raise ValueError(f"unsubstituted names in the definition: {sorted(set(leftover))}")
    return rendered
