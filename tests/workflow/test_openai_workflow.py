"""The real state machine against the simulator speaking OpenAI Images (IMAGEGEN_PROVIDER=openai):
one synchronous render per job, images decoded from b64_json and written to S3 by the create
step (never through Step Functions state), edits sent as multipart, and a render that hangs
failing the job after the attempt budget."""

from __future__ import annotations

import json

import boto3
import pytest

from imagegen.models import JobStatus
from tests.support import submit, wait_for_job
from tests.workflow.upstream import (
    created_for,
    images_of,
    input_image_url,
    scripted,
    stored_job,
    stored_keys,
    unique_prompt,
)


@pytest.fixture(autouse=True)
def openai(reconfigure):
    with reconfigure(IMAGEGEN_PROVIDER="openai"):
        yield


def _execution_history(outputs: dict[str, str], job_id: str) -> list[dict]:
    arn = outputs["StateMachineArn"].replace(":stateMachine:", ":execution:") + f":{job_id}"
    return boto3.client("stepfunctions").get_execution_history(executionArn=arn)["events"]


def test_two_jpegs_in_one_render_are_stored_by_the_create_step(api, outputs, simulator):
    prompt = unique_prompt("a fox in the snow")
    job_id = submit(
        api, prompt=prompt, quality="low", aspect_ratio="3:2", output_format="jpeg", number_of_images=2
    )

    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert view["creditCost"] == 2 * 4
    assert [(i.format, i.size) for i in images_of(view)] == [("JPEG", (1536, 1024))] * 2
    [created] = created_for(simulator, "openai", prompt)
    assert created["request"] == {
        "model": "gpt-image-1.5",
        "prompt": prompt,
        "n": 2,
        "size": "1536x1024",
        "quality": "low",
        "background": "auto",
        "output_format": "jpeg",
    }
    job = stored_job(job_id)
    [task] = job.upstream_tasks
    assert job.provider == "openai" and task.status is JobStatus.COMPLETED and task.image_urls == []
    assert (
        task.stored_keys
        == job.result_keys
        == stored_keys(outputs, job_id)
        == [f"images/{job_id}/0.jpeg", f"images/{job_id}/1.jpeg"]
    )
    # The images went straight to S3: no state of the execution carries them.
    assert max(len(json.dumps(e, default=str)) for e in _execution_history(outputs, job_id)) < 4096


def test_a_transparent_png_keeps_its_alpha(api):
    view = wait_for_job(api, submit(api, output_format="png", background="transparent"))

    assert view["status"] == "COMPLETED", view
    [image] = images_of(view)
    assert (image.format, image.mode) == ("PNG", "RGBA")


def test_an_edit_sends_the_input_as_multipart_with_input_fidelity(api, outputs, simulator):
    prompt = unique_prompt("give the cat a hat")
    source = input_image_url(outputs)
    job_id = submit(
        api,
        prompt=prompt,
        aspect_ratio="2:3",
        output_format="webp",
        input_images=[source],
        input_fidelity="high",
    )

    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert [(i.format, i.size) for i in images_of(view)] == [("WEBP", (1024, 1536))]
    [created] = created_for(simulator, "openai", prompt)
    assert created["request"]["image"] == ["input-1.png"]
    assert created["request"]["input_fidelity"] == "high" and created["request"]["size"] == "1024x1536"


def test_a_moderation_block_fails_at_once_with_openais_words(api, simulator):
    prompt, _ = scripted(
        simulator,
        "something forbidden",
        task_outcome="fail",
        fail_reason="Your request was rejected by the safety system.",
    )

    view = wait_for_job(api, submit(api, prompt=prompt))

    assert view["status"] == "FAILED" and view["creditCost"] == 0
    assert view["error"] == "openai: Your request was rejected by the safety system. (moderation_blocked)"
    assert len(created_for(simulator, "openai", prompt)) == 1  # terminal: never tried again


def test_transient_errors_are_retried_until_completed(api, simulator):
    prompt, script = scripted(simulator, "a fox after errors", create_failures=[503, 500, 429])

    view = wait_for_job(api, submit(api, prompt=prompt))

    assert view["status"] == "COMPLETED", view
    assert script.create_failures == []


def test_a_render_that_hangs_times_out_and_fails_after_the_attempt_budget(api, simulator, reconfigure):
    # hang_seconds: the simulator's threads are back soon after the test.
    prompt, _ = scripted(simulator, "an endless render", task_outcome="never", hang_seconds=1.0)
    with reconfigure(IMAGEGEN_RENDER_TIMEOUT_SECONDS="0.3", IMAGEGEN_MAX_CREATE_ATTEMPTS="2"):
        view = wait_for_job(api, submit(api, prompt=prompt), timeout=20)

    assert view["status"] == "FAILED" and view["creditCost"] == 0
    assert view["error"] == "upstream kept failing after 2 attempts: openai: timed out (ReadTimeout)"
