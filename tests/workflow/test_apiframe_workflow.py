"""The real state machine definition, executed by moto's interpreter, against the simulator
speaking apiframe v2: every job ends COMPLETED or FAILED, with its images or its reason."""

from __future__ import annotations

import io

import boto3
import httpx
import pytest
from PIL import Image

from imagegen.events import parse_job_event
from tests.support import submit, wait_for_job
from tests.workflow.upstream import scripted


def _execution_status(outputs: dict[str, str], job_id: str) -> str:
    arn = outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{job_id}"
    return str(boto3.client("stepfunctions").describe_execution(executionArn=arn)["status"])


def test_seed_request_completes_with_stored_images(api, outputs, job_events, simulator):
    job_id = submit(
        api,
        prompt="A whimsical watercolor painting of a fox",
        quality="high",
        aspect_ratio="3:2",
        output_format="png",
    )

    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert view["progress"] == 100 and view["error"] is None
    assert view["creditCost"] == 24
    [url] = view["result"]["images"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url  # SigV4: S3 refuses SigV2 on new buckets
    image = Image.open(io.BytesIO(httpx.get(url).content))
    assert (image.format, image.size) == ("PNG", (1536, 1024))
    keys = boto3.client("s3").list_objects_v2(Bucket=outputs["ResultsBucket"], Prefix=f"images/{job_id}/")
    assert [(o["Key"]) for o in keys["Contents"]] == [f"images/{job_id}/0.png"]
    head = boto3.client("s3").head_object(Bucket=outputs["ResultsBucket"], Key=f"images/{job_id}/0.png")
    assert head["ContentType"] == "image/png"
    [event] = job_events(job_id)
    assert parse_job_event(event).type == "job.completed"
    assert event["resultKeys"] == [f"images/{job_id}/0.png"] and event["creditCost"] == 24
    assert _execution_status(outputs, job_id) == "SUCCEEDED"
    assert sum(1 for t in simulator.created_tasks if t["idempotency_key"] == f"imagegen-{job_id}-0") == 1


def test_several_images_in_the_requested_format_and_ratio(api, outputs):
    job_id = submit(api, quality="low", aspect_ratio="2:3", output_format="webp", number_of_images=3)

    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert view["creditCost"] == 3 * 4
    images = [Image.open(io.BytesIO(httpx.get(u).content)) for u in view["result"]["images"]]
    assert [(i.format, i.size) for i in images] == [("WEBP", (1024, 1536))] * 3


def test_transparent_background_is_kept(api):
    job_id = submit(api, output_format="png", background="transparent")

    view = wait_for_job(api, job_id)

    image = Image.open(io.BytesIO(httpx.get(view["result"]["images"][0]).content))
    assert image.mode == "RGBA"


def test_upstream_failure_fails_the_job_with_its_reason_and_refunds(api, outputs, simulator, job_events):
    reason = "content policy violation"
    prompt, _ = scripted(simulator, "a refused fox", task_outcome="fail", fail_reason=reason)
    job_id = submit(api, prompt=prompt, quality="medium")

    view = wait_for_job(api, job_id)

    assert view["status"] == "FAILED"
    assert "content policy violation" in view["error"]
    assert view["creditCost"] == 0 and view["result"] is None
    [event] = job_events(job_id)
    assert (event["type"], event["creditCost"]) == ("job.failed", 0)
    assert _execution_status(outputs, job_id) == "SUCCEEDED"  # a failed job is an outcome, not a crash


@pytest.mark.parametrize("failures", [[503, 502], [429], [500, 429, 503]])
def test_transient_create_errors_are_retried_until_completed(api, simulator, failures):
    prompt, script = scripted(simulator, "a fox after errors", create_failures=failures)

    view = wait_for_job(api, submit(api, prompt=prompt))

    assert view["status"] == "COMPLETED", view
    assert script.create_failures == []  # every scripted failure was hit, by this job


def test_transient_poll_errors_are_retried_until_completed(api, simulator):
    prompt, script = scripted(simulator, "a fox polled through errors", poll_failures=[503, 429, 500])

    view = wait_for_job(api, submit(api, prompt=prompt))

    assert view["status"] == "COMPLETED", view
    assert script.poll_failures == []


def test_upstream_that_keeps_failing_fails_the_job_after_the_attempt_budget(api, simulator, reconfigure):
    prompt, script = scripted(simulator, "a fox that never starts", create_failures=[503] * 10)
    with reconfigure(IMAGEGEN_MAX_CREATE_ATTEMPTS="3"):
        view = wait_for_job(api, submit(api, prompt=prompt))

    assert view["status"] == "FAILED"
    assert "after 3 attempts" in view["error"] and "503" in view["error"]
    assert view["creditCost"] == 0
    assert len(script.create_failures) == 7  # the job made exactly its 3 attempts


def test_a_task_that_never_finishes_fails_at_the_deadline(api, simulator, reconfigure, job_events):
    prompt, _ = scripted(simulator, "an endless fox", task_outcome="never")
    with reconfigure(IMAGEGEN_JOB_DEADLINE_SECONDS="2"):
        job_id = submit(api, prompt=prompt)
        view = wait_for_job(api, job_id, timeout=20)

    assert view["status"] == "FAILED"
    assert "deadline exceeded" in view["error"]
    assert job_events(job_id)[0]["type"] == "job.failed"


def test_terminal_upstream_rejection_fails_at_once(api, simulator, stack):
    # A wrong provider key is a terminal error: no retries, the provider's message is kept.
    stack.simulator.config.api_key = "a-different-key"
    view = wait_for_job(api, submit(api))

    assert view["status"] == "FAILED"
    assert "Invalid API key" in view["error"]
