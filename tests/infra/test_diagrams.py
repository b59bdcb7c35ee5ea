"""docs/architecture.md's Mermaid diagrams are what the code deploys: regenerated from the
synthesized template and the deployed definition, they must equal the document."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from imagegen_infra import blueprint as bp
from imagegen_infra import diagrams
from tests.infra.cfn import resources

pytestmark = pytest.mark.infra


def test_the_document_shows_what_is_deployed(template: dict[str, Any]) -> None:
    document = diagrams.ARCHITECTURE_DOC.read_text()
    assert diagrams.render(document, diagrams.diagrams(template)) == document, (
        "docs/architecture.md is out of date: run `make diagrams`"
    )
    assert document.count("```mermaid\n") == 2


def test_the_architecture_has_every_resource_and_trigger(template: dict[str, Any]) -> None:
    chart = diagrams.architecture(template)
    for spec in bp.ALL_FUNCTIONS:
        assert f'["λ {spec.name}"]' in chart, spec.name
    for name in (
        bp.JOBS_TABLE.name,
        bp.API_KEYS_TABLE.name,
        bp.EVENTS_TOPIC,
        bp.ALARMS_TOPIC,
        bp.STATE_MACHINE,
    ):
        assert f'"{name}"' in chart, name
    for queue in bp.DEFAULT.dead_letter_queues:
        assert f'[/"{queue}"/]' in chart, queue
    [routes] = [line for line in chart.splitlines() if line.endswith("--> function_api")]
    assert {f"{method} {path}" for method, path in bp.API_ROUTES} == set(routes.split('"')[1].split(", "))
    assert f'"object created {bp.EDITS_PREFIX}" --> function_s3_edit' in chart
    assert (
        '"source = s3, eventType = job.completed | job.failed | job.canceled" --> function_s3_edit_result'
        in chart
    )
    assert 'table_jobs -- "change stream" --> function_job_events' in chart
    assert '"Image Job Requested" --> rule_job_requests' in chart
    assert '"rate(5 minutes)" --> rule_sweep_overdue_jobs' in chart
    alarms = len(resources(template, "AWS::CloudWatch::Alarm"))
    assert f'alarms>"{alarms} CloudWatch alarms"]' in chart


def test_the_architecture_follows_the_roles(template: dict[str, Any]) -> None:
    """An edge appears only where a role allows it: take a grant away and the edge goes."""
    chart = diagrams.architecture(template)
    assert 'function_api -- "start" --> machine_jobs' in chart
    assert 'function_api -- "publish"' not in chart  # the API publishes nothing
    changed = json.loads(json.dumps(template))
    for policy in resources(changed, "AWS::IAM::Policy").values():
        for statement in policy["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            statement["Action"] = [a for a in actions if a != "states:StartExecution"] or [
                "xray:PutTraceSegments"
            ]
    assert "start" not in re.findall(r'-- "([^"]+)" -->', diagrams.architecture(changed))


def test_the_workflow_has_every_state_and_transition(template: dict[str, Any]) -> None:
    [machine] = resources(template, "AWS::StepFunctions::StateMachine").values()
    definition = json.loads(machine["DefinitionString"])
    chart = diagrams.workflow(definition)
    assert chart.startswith(f"stateDiagram-v2\n    [*] --> {definition['StartAt']}\n")
    for name, state in definition["States"].items():
        assert re.search(rf"^    (state )?{name}\b", chart, re.MULTILINE), name
        if "Next" in state:
            assert f"    {name} --> {state['Next']}\n" in chart
        for choice in state.get("Choices", []):
            assert f"    {name} --> {choice['Next']} : next = {choice['StringEquals']}\n" in chart
    assert "CreateTask : CreateTask (λ create-task)" in chart
