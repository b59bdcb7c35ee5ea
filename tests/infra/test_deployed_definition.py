"""The definition CloudFormation deploys is the definition the local stack executes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagegen_infra import blueprint as bp
from imagegen_infra.config import DeployConfig
from imagegen_infra.workflow_definition import definition_json, render
from tests.infra.cfn import logical_id, only

pytestmark = pytest.mark.infra


def test_deployed_definition_is_the_local_one(template: dict[str, Any]) -> None:
    machine = only(template, "AWS::StepFunctions::StateMachine", StateMachineName=bp.STATE_MACHINE)
    substitutions = machine["DefinitionSubstitutions"]
    assert set(substitutions) == set(bp.WORKFLOW_FUNCTIONS)
    fake_arns = {}
    for name, spec in bp.WORKFLOW_FUNCTIONS.items():
        function = logical_id(template, "AWS::Lambda::Function", FunctionName=spec.name)
        assert substitutions[name] == {"Fn::GetAtt": [function, "Arn"]}, name
        fake_arns[name] = f"arn:aws:lambda:us-east-1:123456789012:function:{spec.name}"

    deployed = render(machine["DefinitionString"], fake_arns)
    local = render(definition_json(DeployConfig().runtime.job_deadline_seconds), fake_arns)
    assert deployed == local
    assert json.loads(deployed)["StartAt"] == "CreateTask"
