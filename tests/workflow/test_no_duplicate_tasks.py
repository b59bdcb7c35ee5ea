"""Never two upstream tasks for one job (where the upstream lets us): the create step records each
task before moving on and reuses recorded slots; a create retried after a crash or a lost answer
reaches apiframe with the same Idempotency-Key. apiin.one and OpenAI take no key: for them the
tests pin down the window that remains (docs/providers.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from imagegen.jobs import JobStore
from imagegen_local.simulator import HANG
from tests.support import submit, wait_for_job
from tests.workflow.upstream import created_for, scripted, stored_job, stored_keys, unique_prompt


class Crash(RuntimeError):
    """Stands for the create function dying after the upstream answered, before the record."""


@dataclass
class Plan:
    prompt: str = ""
    on_call: int = 0
    calls: list[int] = field(default_factory=list)  # the slots the create step tried to record


@pytest.fixture
def crash_before_recording(monkeypatch) -> Iterator[Callable[..., list[int]]]:
    """crash_before_recording(prompt, on_call=1) makes the create step crash once, at its
    `on_call`-th write of a new task of the job with that prompt, before the write: the job
    store (the port every step writes through; handlers run in this process) raises instead.
    Returns the slots the create step tried to record, in order."""
    original = JobStore.update
    plan = Plan()

    def update(self, job_id, change):
        current = self.get(job_id)
        if current.prompt == plan.prompt:
            preview = change(current.model_copy(deep=True))
            recorded = {t.slot for t in current.upstream_tasks}
            for task in preview.upstream_tasks if preview is not None else []:
                if task.slot not in recorded:
                    plan.calls.append(task.slot)
                    if len(plan.calls) == plan.on_call:
                        raise Crash(f"simulated crash before recording slot {task.slot}")
        return original(self, job_id, change)

    monkeypatch.setattr(JobStore, "update", update)

    def arm(prompt: str, on_call: int = 1) -> list[int]:
        plan.prompt, plan.on_call, plan.calls = prompt, on_call, []
        return plan.calls

    yield arm


def apiframe_tasks(simulator, job_id: str) -> list[str]:
    """Task ids apiframe handed out for the job's Idempotency-Key (it dedups on the key)."""
    return [t["task_id"] for t in simulator.created_tasks if t["idempotency_key"] == f"imagegen-{job_id}-0"]


def test_apiframe_a_crash_between_create_and_record_reuses_the_task(api, simulator, crash_before_recording):
    prompt = unique_prompt("a crash after create")
    attempts = crash_before_recording(prompt)

    job_id = submit(api, prompt=prompt)
    view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert attempts == [0, 0]  # crashed once, the state machine's retry recorded it
    [task_id] = set(apiframe_tasks(simulator, job_id))
    assert len(apiframe_tasks(simulator, job_id)) == 1
    assert [t.task_id for t in stored_job(job_id).upstream_tasks] == [task_id]


def test_apiframe_a_lost_create_answer_reuses_the_task(api, simulator, reconfigure):
    # apiframe creates the task but answers after our read timeout; the retry sends the same key.
    prompt, script = scripted(simulator, "a lost answer", create_failures=[HANG], hang_seconds=1.5)
    with reconfigure(IMAGEGEN_UPSTREAM_TIMEOUT_SECONDS="0.5"):
        job_id = submit(api, prompt=prompt)
        view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert script.create_failures == []
    assert stored_job(job_id).create_attempts >= 1  # the lost answer counted as a failed attempt
    assert len(apiframe_tasks(simulator, job_id)) == 1


def test_recorded_slots_are_reused_and_only_the_unrecorded_one_is_created_again(
    api, simulator, reconfigure, crash_before_recording
):
    prompt = unique_prompt("three kites")
    attempts = crash_before_recording(prompt, on_call=2)  # slot 0 recorded, crash before slot 1
    with reconfigure(IMAGEGEN_PROVIDER="apiinone"):
        job_id = submit(api, prompt=prompt, output_format="png", number_of_images=3)
        view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert len(view["result"]["images"]) == 3
    assert attempts == [0, 1, 1, 2]  # the retry went straight to slot 1
    created = [c["task_id"] for c in created_for(simulator, "apiinone", prompt)]
    job = stored_job(job_id)
    assert created[0] == job.upstream_tasks[0].task_id  # slot 0: created once, reused
    # apiin.one takes no idempotency key: the task created for slot 1 before the crash is
    # orphaned (the window docs/providers.md describes); the job uses one task per slot.
    assert len(created) == 4 and len({t.task_id for t in job.upstream_tasks}) == 3


def test_apiinone_a_crash_between_create_and_record_leaves_one_orphan_task(
    api, simulator, reconfigure, crash_before_recording
):
    prompt = unique_prompt("a crash on apiin.one")
    crash_before_recording(prompt)
    with reconfigure(IMAGEGEN_PROVIDER="apiinone"):
        job_id = submit(api, prompt=prompt, output_format="png")
        view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert view["creditCost"] == 24 and len(view["result"]["images"]) == 1  # the user pays once
    created = created_for(simulator, "apiinone", prompt)
    assert len(created) == 2  # the documented window: no key upstream to find the first one by
    assert [t.task_id for t in stored_job(job_id).upstream_tasks] == [created[1]["task_id"]]


def test_openai_a_crash_between_create_and_record_renders_again_into_the_same_keys(
    api, outputs, simulator, reconfigure, crash_before_recording
):
    prompt = unique_prompt("a crash on openai")
    crash_before_recording(prompt)
    with reconfigure(IMAGEGEN_PROVIDER="openai"):
        job_id = submit(api, prompt=prompt, output_format="png", number_of_images=2)
        view = wait_for_job(api, job_id)

    assert view["status"] == "COMPLETED", view
    assert view["creditCost"] == 2 * 24 and len(view["result"]["images"]) == 2
    assert len(created_for(simulator, "openai", prompt)) == 2  # the documented window: a second render
    # Deterministic keys: the second render overwrote the first, nothing is duplicated in S3.
    assert stored_keys(outputs, job_id) == [f"images/{job_id}/0.png", f"images/{job_id}/1.png"]
