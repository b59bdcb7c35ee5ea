"""The real state machine against the simulator speaking apiin.one (IMAGEGEN_PROVIDER=apiinone):
PNG only, quality mapped to its two tiers, one task per image gathered into one job, body
codes and both error shapes, and a task that never finishes failing at the deadline."""

from __future__ import annotations

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
def apiinone(reconfigure):
    with reconfigure(IMAGEGEN_PROVIDER="apiinone"):
        yield


def test_a_png_job_completes_on_apiinone_with_quality_mapped_up(api, simulator):
    prompt = unique_prompt("a lighthouse in fog")
    job_id = submit(api, prompt=prompt, quality="low", aspect_ratio="2:3", output_format="png")

    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert view["creditCost"] == 4  # charged as asked (low), rendered at apiin.one's medium
    assert [(i.format, i.size) for i in images_of(view)] == [("PNG", (1024, 1536))]
    [created] = created_for(simulator, "apiinone", prompt)
    assert created["request"] == {
        "model": "gpt-image-1-5",
        "prompt": prompt,
        "aspect_ratio": "2:3",
        "quality": "medium",
    }
    job = stored_job(job_id)
    assert job.provider == "apiinone" and [t.task_id for t in job.upstream_tasks] == [created["task_id"]]


def test_three_images_are_three_tasks_gathered_into_one_job(api, outputs, simulator):
    prompt = unique_prompt("three paper boats")
    job_id = submit(
        api, prompt=prompt, quality="auto", aspect_ratio="3:2", output_format="png", number_of_images=3
    )

    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert view["creditCost"] == 3 * 24
    assert [(i.format, i.size) for i in images_of(view)] == [("PNG", (1536, 1024))] * 3
    created = created_for(simulator, "apiinone", prompt)
    assert len(created) == 3 and {c["request"]["quality"] for c in created} == {"high"}  # auto -> high
    job = stored_job(job_id)
    assert [t.slot for t in job.upstream_tasks] == [0, 1, 2]
    assert sorted(t.task_id for t in job.upstream_tasks) == sorted(c["task_id"] for c in created)
    assert stored_keys(outputs, job_id) == [f"images/{job_id}/{i}.png" for i in range(3)]


def test_an_edit_hands_apiinone_the_input_urls(api, outputs, simulator):
    prompt = unique_prompt("make the sky purple")
    source = input_image_url(outputs)
    job_id = submit(api, prompt=prompt, output_format="png", input_images=[source])

    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    [created] = created_for(simulator, "apiinone", prompt)
    assert created["request"]["input_urls"] == [source]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({}, 'apiin.one renders PNG only; ask for output_format "png" (this job asked for "webp")'),
        (
            {"output_format": "png", "background": "transparent"},
            "apiin.one cannot render a transparent background",
        ),
    ],
)
def test_what_apiinone_cannot_render_is_refused_at_submission_without_an_upstream_task(
    api, simulator, params, reason
):
    prompt = unique_prompt("a glass of water")
    body = {"prompt": prompt, "model": "gpt-image-1.5", "gptImageParams": params}

    answer = api.post("/v2/images/generate", json=body)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request" and reason in answer.json()["error"]["message"]
    assert created_for(simulator, "apiinone", prompt) == []


def test_a_failed_task_fails_the_job_with_apiinones_reason(api, simulator):
    reason = "content policy violation"
    prompt, _ = scripted(simulator, "a refused kite", task_outcome="fail", fail_reason=reason)

    view = wait_for_job(api, submit(api, prompt=prompt, output_format="png", number_of_images=2))

    assert view["status"] == "FAILED" and view["error"] == "apiin.one: content policy violation"
    assert view["creditCost"] == 0


def test_a_rejected_key_is_terminal_with_the_envelope_message(api, simulator):
    simulator.config.api_key = "a-different-key"

    view = wait_for_job(api, submit(api, output_format="png"))

    assert view["status"] == "FAILED" and view["error"] == "apiin.one: Invalid API key"


def test_transient_errors_on_create_and_poll_are_retried_until_completed(api, simulator):
    prompt, script = scripted(simulator, "a kite", create_failures=[503, 500], poll_failures=[502, 500])

    view = wait_for_job(api, submit(api, prompt=prompt, output_format="png"))

    assert view["status"] == "COMPLETED", view
    assert script.create_failures == [] and script.poll_failures == []


def test_a_task_that_never_finishes_fails_at_the_deadline(api, simulator, reconfigure, job_events):
    prompt, _ = scripted(simulator, "an endless kite", task_outcome="never")
    with reconfigure(IMAGEGEN_JOB_DEADLINE_SECONDS="2"):
        job_id = submit(api, prompt=prompt, output_format="png")
        view = wait_for_job(api, job_id, timeout=20)

    assert view["status"] == "FAILED" and "deadline exceeded" in view["error"]
    assert view["creditCost"] == 0
    assert job_events(job_id)[0]["type"] == "job.failed"
    assert stored_job(job_id).upstream_tasks[0].status is JobStatus.PROCESSING
