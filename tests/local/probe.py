"""A function of the tests' own, registered in moto and run by the local runtime as ours are:
it reports what its execution environment sees. Each execution environment loads its own copy
of this module (and of Powertools)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from imagegen.settings import current_settings

COPY = uuid.uuid4().hex  # which copy of this module answered
logger = Logger(service="imagegen-probe")
metrics = Metrics(namespace="imagegen-tests", service="imagegen-probe")
_running = 0  # invocations running in this copy right now


@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _running
    _running += 1
    try:
        metrics.add_metric(name="ProbeInvocations", unit=MetricUnit.Count, value=1)
        overlapping = _running
        if event.get("hold"):
            time.sleep(event["hold"])  # the function's work: long enough for invocations to overlap
        answer = {
            "copy": COPY,
            "overlapping": max(overlapping, _running),  # > 1: two invocations in one environment
            # 1: its own; 0 or more: another invocation's flush or metrics are in this one's
            "pending_metrics": len(metrics.metric_set.get("ProbeInvocations", {}).get("Value", [])),
            "router": _router_id() if event.get("report_router") else None,
            "log_formatter": id(logger.registered_formatter),
            "deadline": current_settings().job_deadline_seconds,
            "log_stream": context.log_stream_name,
        }
        if event.get("invoke_self"):  # synchronously, while this invocation runs
            nested = boto3.client("lambda").invoke(FunctionName=context.function_name, Payload=b"{}")
            answer["nested"] = json.loads(nested["Payload"].read())
        return answer
    finally:
        _running -= 1


def _router_id() -> int:
    """The class Powertools' resolvers keep the current event on, imported at run time."""
    from aws_lambda_powertools.event_handler import api_gateway

    return id(api_gateway.BaseRouter)
