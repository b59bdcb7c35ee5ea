"""Every sample in events/ parses with the model its consumer uses, so samples cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from imagegen.models import GenerateRequest
from imagegen.workflow import StepState
from tests.support import EVENTS

API_SAMPLES = sorted((EVENTS / "api").glob("*.json"))
WORKFLOW_SAMPLES = sorted((EVENTS / "workflow").glob("*.json"))


def test_there_are_samples():
    assert len(API_SAMPLES) >= 5 and len(WORKFLOW_SAMPLES) >= 5


@pytest.mark.parametrize("path", API_SAMPLES, ids=lambda p: p.name)
def test_api_samples_are_rest_proxy_events_with_bodies_that_match_their_name(path: Path):
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

    event = APIGatewayProxyEvent(json.loads(path.read_text()))
    assert event.http_method in ("GET", "POST") and event.path.startswith("/v2/")
    assert event.request_context.stage == "v2"
    if event.http_method == "POST":
        body = event.body or ""
        if "invalid" in path.name or "not_json" in path.name:
            with pytest.raises((ValidationError, ValueError)):
                GenerateRequest.model_validate_json(body)
        else:
            GenerateRequest.model_validate_json(body)


@pytest.mark.parametrize("path", WORKFLOW_SAMPLES, ids=lambda p: p.name)
def test_workflow_samples_are_step_states(path: Path):
    state = StepState.model_validate(json.loads(path.read_text()))
    assert state.jobId
