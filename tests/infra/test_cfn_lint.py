"""cfn-lint on the synthesized template: no errors, and no warnings but one CDK always causes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.infra

# CDK writes DependsOn between a function and its role's policy, which a GetAtt already implies.
CDK_WARNINGS = {"W3005"}


def test_template_passes_cfn_lint(stack_artifact: Any) -> None:
    from cfnlint.api import ManualArgs, lint_file

    template = Path(stack_artifact.template_full_path)
    matches = lint_file(template, ManualArgs(regions=["us-east-1", "eu-west-1"]))
    problems = [
        f"{m.rule.id} {m.message} ({m.path})"
        for m in matches
        if m.rule.id not in CDK_WARNINGS and m.rule.id[0] in "EW"
    ]
    assert not problems, "\n".join(problems)
