"""The local Lambda runtime runs functions as Lambda does (#9.1, #9.9), for every function:
one invocation at a time per execution environment, a new environment when all are busy, each
environment with its own copy of the handler's modules and Powertools, and each invocation with
its function's configuration as it stands when the invocation starts.

Measured with a probe function of the tests' own (tests/local/probe.py), invoked through moto's
Lambda API as Step Functions, S3 and SNS invoke ours."""

from __future__ import annotations

import io
import json
import threading
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus

import boto3
import pytest
from botocore.config import Config

from imagegen.edits.keys import error_key
from imagegen_infra import blueprint as bp
from tests.support import function_environment, wait_until

CALLERS = 8
# A hang (an invocation waiting for itself) fails the test instead of stalling the suite.
NO_RETRY = Config(read_timeout=60, retries={"max_attempts": 1, "mode": "standard"})


def lambda_client() -> Any:
    return boto3.client("lambda", config=NO_RETRY)


def create_probe(name: str, **variables: str) -> str:
    """Register the probe like our functions: same role, runtime and environment."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "code runs in-process from tests/local/probe.py")
    role = boto3.client("iam").get_role(RoleName="imagegen-local")["Role"]["Arn"]
    lambda_client().create_function(
        FunctionName=name,
        Runtime=bp.LAMBDA_RUNTIME,
        Role=role,
        Handler="tests.local.probe.handler",
        Code={"ZipFile": buffer.getvalue()},
        Timeout=30,
        MemorySize=128,
        Environment={"Variables": {**function_environment(bp.API_FUNCTION.name), **variables}},
    )
    return name


def invoke(name: str, client: Any = None, **event: Any) -> dict[str, Any]:
    answer = (client or lambda_client()).invoke(FunctionName=name, Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, payload
    return dict(payload)


@pytest.fixture
def probe(stack: Any) -> str:
    return create_probe(f"imagegen-test-probe-{uuid.uuid4().hex[:8]}")


def test_concurrent_invocations_never_share_an_execution_environment(probe, stack):
    with ThreadPoolExecutor(CALLERS) as pool:
        answers = list(pool.map(lambda _: invoke(probe, hold=0.2), range(2 * CALLERS)))

    assert [a["overlapping"] for a in answers] == [1] * len(answers)
    copies = {a["copy"] for a in answers}
    assert 1 < len(copies) <= CALLERS  # scaled out while busy, reused once idle
    assert {a["log_stream"] for a in answers} == {
        f"environment-{e.number}" for e in stack.runtime.environments(probe)
    }


def test_each_environment_has_its_own_powertools_state(probe):
    with ThreadPoolExecutor(CALLERS) as pool:
        answers = list(pool.map(lambda _: invoke(probe, hold=0.2, report_router=True), range(CALLERS)))

    from aws_lambda_powertools.event_handler import api_gateway

    routers = {a["copy"]: a["router"] for a in answers}
    # The class the resolver keeps the current event on (imported inside the function, at run
    # time): one per environment, none shared.
    assert len(set(routers.values())) == len(routers) > 1
    assert id(api_gateway.BaseRouter) not in routers.values()
    # Metrics collected until the invocation flushes them: only its own.
    assert [a["pending_metrics"] for a in answers] == [1] * len(answers)
    # Not isolated (the runtime's docstring says so): Powertools' Logger keeps its keys on the
    # formatter of the process-wide stdlib logger named after the service.
    assert len({a["log_formatter"] for a in answers}) == 1


def test_a_function_that_invokes_itself_runs_in_a_second_environment(probe):
    answer = invoke(probe, invoke_self=True)

    assert answer["nested"]["copy"] != answer["copy"]  # the busy one is skipped, not waited for
    assert answer["nested"]["overlapping"] == 1


def test_the_s3_edit_function_notified_of_its_own_error_file_does_not_wait_for_itself(stack, outputs):
    """s3-edit writes edits/<name>.error.json into the uploads bucket while it runs; moto's
    server invokes s3-edit for that object before the PutObject answers."""
    key = f"edits/runtime-{uuid.uuid4().hex[:8]}.png"
    seen = len(stack.runtime.invocations)

    boto3.client("s3", config=NO_RETRY).put_object(
        Bucket=outputs["UploadsBucket"], Key=key, Body=b"no prompt"
    )

    def s3_edit_keys() -> dict[str, int]:
        return {
            unquote_plus(record["s3"]["object"]["key"]): invocation.environment
            for invocation in stack.runtime.invocations[seen:]
            if invocation.function_name == bp.S3_EDIT_FUNCTION.name
            for record in invocation.event.get("Records", [])
        }

    keys = wait_until(s3_edit_keys, lambda found: len(found) >= 2, what="both s3-edit invocations")
    assert keys[error_key(key)] != keys[key]  # the outer one was still running: another environment


def test_an_invocation_runs_with_its_functions_configuration(stack):
    first = create_probe(f"imagegen-test-probe-{uuid.uuid4().hex[:8]}", IMAGEGEN_JOB_DEADLINE_SECONDS="111")
    second = create_probe(f"imagegen-test-probe-{uuid.uuid4().hex[:8]}", IMAGEGEN_JOB_DEADLINE_SECONDS="222")
    before = invoke(first)

    lambda_client().update_function_configuration(
        FunctionName=first,
        Environment={"Variables": {**function_environment(first), "IMAGEGEN_JOB_DEADLINE_SECONDS": "333"}},
    )
    after = invoke(first)

    assert (before["deadline"], after["deadline"], invoke(second)["deadline"]) == (111, 333, 222)
    assert after["copy"] != before["copy"]  # a configuration change retires the environments


def test_reconfiguring_while_invocations_run_never_serves_a_stale_configuration(probe):
    """#9.9: four callers invoke the probe while its configuration changes 10 times; an
    invocation that starts after a change returned must run with that change or a later one."""
    client = lambda_client()
    base = function_environment(probe)
    published = [0]  # the last deadline UpdateFunctionConfiguration has returned for
    observed: set[int] = set()
    stale: list[tuple[int, int]] = []
    stop = threading.Event()

    def caller() -> None:
        own = lambda_client()
        while not stop.is_set():
            floor = published[0]
            deadline = invoke(probe, own)["deadline"]
            observed.add(deadline)
            if deadline < floor:
                stale.append((floor, deadline))

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    try:
        for deadline in range(1001, 1011):
            client.update_function_configuration(
                FunctionName=probe,
                Environment={"Variables": {**base, "IMAGEGEN_JOB_DEADLINE_SECONDS": str(deadline)}},
            )
            published[0] = deadline
            wait_until(lambda d=deadline: d in observed, what=f"an invocation with deadline {deadline}")
    finally:
        stop.set()
        for thread in callers:
            thread.join(timeout=60)

    assert stale == []


def test_a_function_that_cannot_start_answers_lambdas_error_and_is_recorded(stack):
    name = create_probe(f"imagegen-test-probe-{uuid.uuid4().hex[:8]}")
    lambda_client().update_function_configuration(
        FunctionName=name, Handler="tests.local.probe.no_such_handler"
    )
    seen = len(stack.runtime.invocations)

    answer = lambda_client().invoke(FunctionName=name, Payload=b"{}")

    assert answer["FunctionError"] == "Handled"
    assert json.loads(answer["Payload"].read())["errorType"] == "AttributeError"
    mine = [i.error_type for i in stack.runtime.invocations[seen:] if i.function_name == name]
    assert mine == ["AttributeError"]
