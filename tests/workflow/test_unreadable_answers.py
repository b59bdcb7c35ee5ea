"""An upstream answering HTTP 200 with a body that cannot be read (JSON cut off midway, a proxy's
HTML page): the real state machine retries the call within its budget, as after a lost answer,
and the job completes; a JSON answer of the wrong shape fails the job with a readable reason.
Before imagegen.transport.json_answer, apiframe raised JSONDecodeError (the job failed as
"JSONDecodeError: Expecting value...") and apiin.one and OpenAI failed the job at once."""

from __future__ import annotations

import pytest

from imagegen_local.simulator import CUT_BODY, HTML_PAGE
from tests.support import submit, wait_for_job
from tests.workflow.upstream import created_for, scripted, stored_job


def test_apiframe_unreadable_create_and_poll_answers_are_retried_on_the_same_task(api, simulator):
    prompt, script = scripted(
        simulator,
        "a fox behind a broken proxy",
        create_failures=[CUT_BODY, HTML_PAGE],
        poll_failures=[HTML_PAGE, CUT_BODY],
    )
    job_id = submit(api, prompt=prompt)

    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert script.create_failures == [] and script.poll_failures == []  # every one was answered
    # Every create carried the job's Idempotency-Key: the retries found the task the first made.
    tasks = {t["task_id"] for t in simulator.created_tasks if t["idempotency_key"] == f"imagegen-{job_id}-0"}
    assert [t.task_id for t in stored_job(job_id).upstream_tasks] == list(tasks)


def test_apiinone_unreadable_poll_answers_are_retried(api, simulator, reconfigure):
    with reconfigure(IMAGEGEN_PROVIDER="apiinone"):
        prompt, script = scripted(simulator, "a kite in fog", poll_failures=[CUT_BODY, HTML_PAGE])
        job_id = submit(api, prompt=prompt, output_format="png")

        view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert script.poll_failures == []
    [created] = created_for(simulator, "apiinone", prompt)
    assert [t.task_id for t in stored_job(job_id).upstream_tasks] == [created["task_id"]]


@pytest.mark.parametrize("fault", [CUT_BODY, HTML_PAGE])
def test_an_unreadable_openai_render_is_rendered_again(api, simulator, reconfigure, fault):
    with reconfigure(IMAGEGEN_PROVIDER="openai"):
        prompt, script = scripted(simulator, "a lighthouse, garbled", create_failures=[fault])
        job_id = submit(api, prompt=prompt)

        view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert script.create_failures == []
    # The first render's answer was lost, as after a read timeout: the job holds the second.
    _lost, second = created_for(simulator, "openai", prompt)
    assert [t.task_id for t in stored_job(job_id).upstream_tasks] == [second["task_id"]]
