"""One synthesis per session (it takes seconds): every infra test reads the same assembly.

Synthesized with fail_on_findings=False, so cdk-nag findings land in the assembly as
annotations for test_nag to list, instead of failing the synthesis they would fail in a deploy.
"""

from __future__ import annotations

from typing import Any

import pytest

STACK_ID = "Imagegen"


@pytest.fixture(scope="session")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from app import synth

    return synth(str(tmp_path_factory.mktemp("cdk.out")), fail_on_findings=False)


@pytest.fixture(scope="session")
def stack_artifact(assembly: Any) -> Any:
    return assembly.get_stack_artifact(STACK_ID)


@pytest.fixture(scope="session")
def template(stack_artifact: Any) -> dict[str, Any]:
    return dict(stack_artifact.template)
