"""The alarm on jobs the sweeper could not fail: the metric it watches is the one the sweeper
emits (tests/integration/test_workflow_handlers.py checks the emitting side)."""

from __future__ import annotations

from typing import Any

import pytest

from imagegen_infra import blueprint as bp

pytestmark = pytest.mark.infra


def test_jobs_the_sweeper_cannot_fail_raise_an_alarm(template: dict[str, Any]) -> None:
    alarms = [
        a["Properties"]
        for a in template["Resources"].values()
        if a["Type"] == "AWS::CloudWatch::Alarm" and a["Properties"].get("MetricName") == "JobsUnsweepable"
    ]

    assert len(alarms) == 1
    [alarm] = alarms
    assert alarm["Namespace"] == bp.METRICS_NAMESPACE
    assert alarm["Dimensions"] == [{"Name": "service", "Value": bp.SERVICE_NAME}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["AlarmActions"]
