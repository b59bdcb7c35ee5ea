"""Runs our Lambda handlers in-process behind moto's Lambda service.

moto needs Docker to run function code; there is no Docker here. We replace the one method
that runs the code (`LambdaFunction._invoke_lambda`) with a call to the handler named by the
function's own `Handler` setting, imported from functions/ exactly as the Lambda runtime
imports it. Everything that invokes a function through moto then reaches our real handlers:
Step Functions tasks, S3 notifications, direct `lambda:Invoke`.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.awslambda.models import LambdaFunction

log = logging.getLogger("imagegen.local.lambda")

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda context object that Powertools and our code read."""

    function_name: str
    memory_limit_in_mb: int = 256
    timeout_seconds: int = 30
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def load_handler(handler_path: str) -> Handler:
    """'package.module.function' -> the function, imported the way the Lambda runtime does."""
    module_name, _, function_name = handler_path.rpartition(".")
    return getattr(importlib.import_module(module_name), function_name)  # type: ignore[no-any-return]


@dataclass
class Invocation:
    function_name: str
    event: Any
    error_type: str | None
    duration_ms: float


class InProcessLambdaRuntime:
    """Installs itself into moto; keeps a record of invocations for tests and the demo."""

    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        self._original: Any = None

    def install(self) -> None:
        runtime = self
        self._original = LambdaFunction._invoke_lambda

        def _invoke_lambda(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            return runtime.invoke(function, event)

        LambdaFunction._invoke_lambda = _invoke_lambda  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        if self._original is not None:
            LambdaFunction._invoke_lambda = self._original  # type: ignore[method-assign]
            self._original = None

    def invoke(self, function: LambdaFunction, event: Any) -> tuple[str, bool, str]:
        """Returns (payload, errored, logs) as moto's Docker runner does. A raised exception
        becomes Lambda's error payload, errorType being the exception's class name: that is
        the error name Step Functions' Retry and Catch match on."""
        if isinstance(event, str):
            event = json.loads(event or "{}")
        context = FakeLambdaContext(
            function_name=function.function_name,
            memory_limit_in_mb=int(function.memory_size or 256),
            timeout_seconds=int(function.timeout or 30),
            invoked_function_arn=function.function_arn,
        )
        started = time.perf_counter()
        error_type = None
        try:
            result = load_handler(str(function.handler))(event, context)
            payload = json.dumps(result)
            errored = False
        except Exception as exc:
            error_type = type(exc).__name__
            log.warning("%s raised %s: %s", function.function_name, error_type, exc)
            payload = json.dumps(
                {
                    "errorType": error_type,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-5:],
                }
            )
            errored = True
        duration = (time.perf_counter() - started) * 1000
        self.invocations.append(Invocation(function.function_name, event, error_type, duration))
        return payload, errored, f"{function.function_name} {duration:.1f} ms"
