"""Two syntheses per session (each takes seconds), read by every infra test: the default
deployment, and a deployment named `dev` with the optional features on (the `variant`).

Synthesized with fail_on_findings=False, so cdk-nag findings land in the assembly as
annotations for the tests to list, instead of failing the synthesis they would fail in a deploy.
"""

from __future__ import annotations

from typing import Any

import pytest

# The default deployment: its construct id is its stack name, so `cdk deploy imagegen` finds it.
STACK_ID = "imagegen"
VARIANT_STAGE = "dev"
VARIANT_STACK_ID = f"imagegen-{VARIANT_STAGE}"
ORIGIN = "https://app.example"
# A second deployment beside the default one, with what the default leaves off: CORS, Express,
# provider failover with a per-provider base URL (and so a second secret), other numbers.
VARIANT_CONTEXT = {
    "stage": VARIANT_STAGE,
    "corsAllowOrigins": [ORIGIN],
    "workflowType": "EXPRESS",
    "jobDeadlineSeconds": 240,
    "logRetentionDays": 30,
    "apiThrottleRateLimit": 3,
    "provider": "openai",
    "providerFailover": ["apiinone"],
    "providerBaseUrls": {"apiinone": "https://apiinone.example"},
    "renderTimeoutSeconds": 120,
    "maxUploadBytes": 1048576,
}


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


@pytest.fixture(scope="session")
def variant_assembly(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from app import synth

    return synth(str(tmp_path_factory.mktemp("cdk.out.dev")), VARIANT_CONTEXT, fail_on_findings=False)


@pytest.fixture(scope="session")
def variant(variant_assembly: Any) -> Any:
    return variant_assembly.get_stack_artifact(VARIANT_STACK_ID)
