"""Helpers tests import (fixtures live in conftest.py): sample events, reconfiguring the
functions, submitting a job and waiting on a condition instead of sleeping a fixed time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import boto3
import httpx

from imagegen_infra import blueprint as bp

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "events"
TERMINAL = ("COMPLETED", "FAILED")
FUNCTION_NAMES = tuple(function.name for function in bp.ALL_FUNCTIONS)

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition a test waited on did not come true in time."""


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool] = bool,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call `probe` until `done(value)`; returns that value, or raises WaitTimeout with the
    last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"{what} not reached after {timeout} s; last seen: {value!r}")
        time.sleep(interval)


def load_event(relative: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / relative).read_text()))


def function_environment(name: str, client: Any = None) -> dict[str, str]:
    """A function's environment variables as moto holds them (its Lambda configuration)."""
    client = client or boto3.client("lambda")
    config = client.get_function_configuration(FunctionName=name)
    return dict(config.get("Environment", {}).get("Variables", {}))


def _configure(client: Any, name: str, variables: Mapping[str, str]) -> None:
    client.update_function_configuration(FunctionName=name, Environment={"Variables": dict(variables)})


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Change the functions' environment for the duration, as a deploy would: every function's
    configuration (lambda:UpdateFunctionConfiguration), which each invocation that starts
    afterwards runs with; invocations already running keep theirs. Handlers a test calls
    directly, in this thread, see the change too (imagegen.settings.FUNCTION_ENVIRONMENT)."""
    from imagegen.settings import FUNCTION_ENVIRONMENT

    client = boto3.client("lambda")
    saved = {name: function_environment(name, client) for name in FUNCTION_NAMES}
    for name, before in saved.items():
        _configure(client, name, {**before, **values})
    token = FUNCTION_ENVIRONMENT.set(MappingProxyType({**saved[bp.API_FUNCTION.name], **values}))
    try:
        yield
    finally:
        FUNCTION_ENVIRONMENT.reset(token)
        for name, before in saved.items():
            _configure(client, name, before)


def wait_for_job(api: httpx.Client, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll our API until the job is terminal and return its view; raises WaitTimeout with the
    last view when it is not terminal in time."""
    return wait_until(
        lambda: dict(api.get(f"/v2/jobs/{job_id}").json()),
        lambda view: view.get("status") in TERMINAL,
        timeout=timeout,
        interval=0.1,
        what=f"job {job_id} terminal",
    )


def submit(api: httpx.Client, **params: Any) -> str:
    body = {
        "prompt": params.pop("prompt", "a lighthouse at dawn"),
        "model": "gpt-image-1.5",
        "gptImageParams": params,
    }
    response = api.post("/v2/images/generate", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["jobId"])
