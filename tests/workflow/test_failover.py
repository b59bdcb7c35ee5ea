"""Failover (IMAGEGEN_PROVIDER_FAILOVER): a job whose provider keeps failing transiently on create,
with no task created anywhere yet, moves to the next provider that can serve it; the job
records which one served it. Never when a task may already exist upstream."""

from __future__ import annotations

from imagegen_local.simulator import HANG
from tests.support import submit, wait_for_job
from tests.workflow.upstream import created_for, images_of, scripted, stored_job


def apiframe_tasks(simulator, job_id: str) -> set[str]:
    return {t["task_id"] for t in simulator.created_tasks if t["idempotency_key"] == f"imagegen-{job_id}-0"}


def test_a_job_moves_to_the_next_provider_after_the_attempt_budget(api, simulator, reconfigure):
    prompt, script = scripted(simulator, "a windmill", create_failures=[503] * 3)
    with reconfigure(IMAGEGEN_PROVIDER_FAILOVER="apiinone", IMAGEGEN_MAX_CREATE_ATTEMPTS="3"):
        job_id = submit(api, prompt=prompt, output_format="png")
        view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert [i.format for i in images_of(view)] == ["PNG"]
    job = stored_job(job_id)
    assert job.provider == "apiinone" and len(job.upstream_tasks) == 1
    assert apiframe_tasks(simulator, job_id) == set()  # one job, tasks on one provider only
    assert [c["task_id"] for c in created_for(simulator, "apiinone", prompt)] == [
        job.upstream_tasks[0].task_id
    ]
    assert script.create_failures == []


def test_providers_that_cannot_serve_the_request_are_skipped(api, simulator, reconfigure):
    prompt, script = scripted(simulator, "a webp harbour", create_failures=[503] * 2)
    with reconfigure(IMAGEGEN_PROVIDER_FAILOVER="apiinone,openai", IMAGEGEN_MAX_CREATE_ATTEMPTS="2"):
        job_id = submit(api, prompt=prompt, output_format="webp")  # apiin.one renders PNG only
        view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert [i.format for i in images_of(view)] == ["WEBP"]
    assert stored_job(job_id).provider == "openai"
    assert created_for(simulator, "apiinone", prompt) == []
    assert script.create_failures == []


def test_every_provider_failing_fails_the_job_with_the_last_reason(api, simulator, reconfigure):
    prompt, script = scripted(simulator, "a harbour nobody renders", create_failures=[503] * 4)
    with reconfigure(IMAGEGEN_PROVIDER_FAILOVER="apiinone", IMAGEGEN_MAX_CREATE_ATTEMPTS="2"):
        job_id = submit(api, prompt=prompt, output_format="png")
        view = wait_for_job(api, job_id)

    assert view["status"] == "FAILED" and view["creditCost"] == 0
    assert view["error"].startswith("upstream kept failing after 2 attempts: apiin.one: HTTP 503")
    assert stored_job(job_id).provider == "apiinone"
    assert script.create_failures == []  # 2 on apiframe, 2 on apiin.one: all this job's calls


def test_a_terminal_error_never_fails_over(api, simulator, reconfigure):
    prompt, _ = scripted(simulator, "a forbidden thing", create_failures=[400])
    with reconfigure(IMAGEGEN_PROVIDER_FAILOVER="apiinone"):
        view = wait_for_job(api, submit(api, prompt=prompt, output_format="png"))

    assert view["status"] == "FAILED" and "Simulated upstream failure (400)" in view["error"]
    assert created_for(simulator, "apiinone", prompt) == []


def test_a_job_that_may_have_a_task_upstream_never_fails_over(api, simulator, reconfigure):
    # The first create is answered too late (read timeout) although apiframe made the task;
    # then 503s use up the budget. Moving on could pay for a second task elsewhere: the job
    # fails (refunded) instead.
    failures = [HANG, 503, 503]
    prompt, script = scripted(simulator, "an ambiguous request", create_failures=failures, hang_seconds=1.5)
    with reconfigure(
        IMAGEGEN_PROVIDER_FAILOVER="apiinone",
        IMAGEGEN_MAX_CREATE_ATTEMPTS="3",
        IMAGEGEN_UPSTREAM_TIMEOUT_SECONDS="0.5",
    ):
        job_id = submit(api, prompt=prompt, output_format="png")
        view = wait_for_job(api, job_id)

    assert view["status"] == "FAILED" and "after 3 attempts" in view["error"]
    assert created_for(simulator, "apiinone", prompt) == []
    assert len(apiframe_tasks(simulator, job_id)) == 1
    assert stored_job(job_id).provider is None  # it never left the primary
    assert script.create_failures == []
