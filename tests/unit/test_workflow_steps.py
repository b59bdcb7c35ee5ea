"""The workflow's steps through their public methods, on in-memory fakes: no moto, no Step
Functions, milliseconds each. tests/workflow runs the same steps inside the real definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from imagegen.announcer import Announcer
from imagegen.errors import UpstreamTerminalError, UpstreamTransientError, UpstreamUnavailableError
from imagegen.jobs import SWEEP_GRACE
from imagegen.lifecycle import new_job
from imagegen.models import GenerateRequest, GptImageParams, JobStatus
from imagegen.providers.apiframe import ApiframeProvider
from imagegen.providers.base import CreatedTask, InlineImage, ProviderConfig, TaskState
from imagegen.settings import PollSchedule, Settings
from imagegen.workflow import SWEPT_REASON, JobWorkflow, StepState
from tests.fakes import (
    Crash,
    InMemoryJobStore,
    InMemoryResults,
    RecordingEvents,
    RecordingQueue,
    ScriptedProvider,
    stream_events,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings(jobs_table="j", api_keys_table="k", results_bucket="r", events_topic_arn="t")
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


class Backup(ScriptedProvider):
    name = "backup"


class World:
    """A workflow on fakes, with one job submitted."""

    def __init__(self, chain: tuple[str, ...] = (), **params: object) -> None:
        self.store, self.results = InMemoryJobStore(), InMemoryResults()
        self.providers = {"scripted": ScriptedProvider(), "backup": Backup()}
        self.finished: list[str] = []
        self.flow = JobWorkflow(
            store=self.store,
            provider_factory=lambda name: self.providers[name or "scripted"],
            results=self.results,
            schedule=PollSchedule(first_poll_seconds=5, poll_interval_seconds=2, max_create_attempts=3),
            clock=lambda: NOW,
            jitter=lambda: 0.5,
            provider_chain=chain,
            on_finished=lambda job: self.finished.append(job.job_id),
        )
        request = GenerateRequest(
            prompt="a kite", model="gpt-image-1.5", gptImageParams=GptImageParams(**params)
        )
        job = new_job(request, "alice", SETTINGS)
        job.deadline_at = NOW + timedelta(minutes=15)
        self.store.create(job)
        self.state = StepState(jobId=job.job_id)

    @property
    def primary(self) -> ScriptedProvider:
        return self.providers["scripted"]

    @property
    def job(self):
        return self.store.get(self.state.jobId)

    def serve_images(self) -> None:
        for task in self.job.upstream_tasks:
            self.results.served[f"https://cdn.example/{task.task_id}.png"] = PNG


# --- create -------------------------------------------------------------------------------------
def test_create_records_the_task_and_waits_for_the_first_poll():
    world = World()
    routed = world.flow.create(world.state)
    assert (routed.next, routed.waitSeconds) == ("poll", 5)
    assert world.job.status is JobStatus.PROCESSING and world.job.provider == "scripted"
    assert [t.task_id for t in world.job.upstream_tasks] == [f"scripted-{world.state.jobId}-0"]


def test_a_create_retried_after_a_crash_creates_only_the_slots_it_had_not_recorded():
    world = World(number_of_images=3)
    world.primary.tasks_per_request = 3
    world.store.crash_when(lambda job: len(job.upstream_tasks) == 2)  # dies recording slot 1
    with pytest.raises(Crash):
        world.flow.create(world.state)
    world.flow.create(world.state)  # the state machine's retry
    slots = [slot for _, slot in world.primary.created]
    assert slots == [0, 1, 1, 2]  # slot 0 reused; slot 1's first task is the documented window
    assert [t.slot for t in world.job.upstream_tasks] == [0, 1, 2]


def test_a_synchronous_provider_stores_its_images_at_create_and_goes_straight_to_finalize():
    world = World(output_format="png")
    world.primary.creates = [CreatedTask("req-1", images=[InlineImage(PNG, "image/png")])]
    assert world.flow.create(world.state).next == "finalize"
    world.flow.finalize(world.state)
    assert world.job.result_keys == [f"images/{world.state.jobId}/0.png"]
    assert world.results.objects[world.job.result_keys[0]] == (PNG, "image/png")


def test_a_terminal_upstream_error_fails_the_job_with_its_message():
    world = World()
    world.primary.creates = [UpstreamTerminalError("scripted: content policy")]
    routed = world.flow.create(world.state)
    assert (routed.next, routed.reason) == ("fail", "scripted: content policy")
    world.flow.fail(routed)
    assert (world.job.status, world.job.error, world.job.charged_credits) == (
        JobStatus.FAILED,
        "scripted: content policy",
        0,
    )


def test_transient_create_errors_are_retried_then_fail_after_the_attempt_budget():
    world = World()
    world.primary.creates = [UpstreamTransientError("scripted: HTTP 500: oops")] * 3
    assert [world.flow.create(world.state).next for _ in range(2)] == ["create", "create"]
    routed = world.flow.create(world.state)
    assert routed.next == "fail"
    assert routed.reason == "upstream kept failing after 3 attempts: scripted: HTTP 500: oops"


# --- failover -----------------------------------------------------------------------------------
def test_a_provider_that_never_took_the_request_fails_over_to_the_next_one():
    world = World(chain=("scripted", "backup"))
    world.primary.creates = [UpstreamUnavailableError("scripted: HTTP 503: busy")] * 3
    routes = [world.flow.create(world.state) for _ in range(3)]
    assert [r.next for r in routes] == ["create", "create", "create"] and not routes[-1].pinned
    assert world.job.provider == "backup" and world.job.create_attempts == 0
    world.flow.create(world.state)
    assert world.providers["backup"].created == [(world.state.jobId, 0)]
    assert world.primary.created == []


def test_a_provider_that_may_have_created_a_task_pins_the_job():
    world = World(chain=("scripted", "backup"))
    world.primary.creates = [UpstreamTransientError("scripted: timed out (ReadTimeout)")] + [
        UpstreamUnavailableError("scripted: HTTP 503: busy")
    ] * 2
    state = world.state
    for _ in range(3):
        state = world.flow.create(state)
    assert state.next == "fail" and world.providers["backup"].created == []


# --- poll ---------------------------------------------------------------------------------------
def test_poll_reports_progress_then_routes_to_finalize():
    world = World()
    world.flow.create(world.state)
    world.primary.polls = [TaskState(JobStatus.PROCESSING, 40)]
    assert (world.flow.poll(world.state).next, world.job.progress) == ("poll", 40)
    assert world.flow.poll(world.state).next == "finalize"
    assert world.job.progress == 99  # 100 only once the images are ours


def test_a_failed_upstream_task_fails_the_job_with_its_reason():
    world = World()
    world.flow.create(world.state)
    world.primary.polls = [TaskState(JobStatus.FAILED, 100, error="scripted: NSFW")]
    assert world.flow.poll(world.state).reason == "scripted: NSFW"


def test_poll_past_the_deadline_fails_the_job():
    world = World()
    world.flow.create(world.state)
    world.store.update(world.state.jobId, lambda j: j.model_copy(update={"deadline_at": NOW}))
    assert world.flow.poll(world.state).reason == "deadline exceeded: the upstream did not finish in time"
    assert world.primary.polled == []


# --- finalize -----------------------------------------------------------------------------------
def test_finalize_stores_every_image_completes_the_job_and_announces_it_once():
    world = World()
    world.flow.create(world.state)
    world.flow.poll(world.state)
    world.serve_images()
    assert world.flow.finalize(world.state).next == "done"
    job = world.job
    assert job.status is JobStatus.COMPLETED and job.progress == 100 and job.completed_at == NOW
    assert list(world.results.objects) == job.result_keys == [f"images/{job.job_id}/0.webp"]
    world.flow.finalize(world.state)  # a duplicated or retried finalize
    assert stream_events(world.store)[-1:] == [f"job.completed {job.job_id}"]
    assert stream_events(world.store).count(f"job.completed {job.job_id}") == 1
    assert world.finished == [job.job_id]


def test_a_transient_download_error_propagates_for_the_state_machine_to_retry():
    world = World()
    world.flow.create(world.state)
    world.flow.poll(world.state)
    [task] = world.job.upstream_tasks
    world.results.served[f"https://cdn.example/{task.task_id}.png"] = UpstreamUnavailableError("HTTP 503")
    with pytest.raises(UpstreamUnavailableError):
        world.flow.finalize(world.state)
    assert world.job.status is JobStatus.PROCESSING
    assert not any(e.startswith(("job.completed", "job.failed")) for e in stream_events(world.store))


def test_an_event_whose_first_publish_fails_is_delivered_anyway():
    world = World()
    for step in (world.flow.create, world.flow.poll):
        step(world.state)
    world.serve_images()
    world.flow.finalize(world.state)
    events = RecordingEvents(failures=[RuntimeError("SNS is down")])
    announcer = Announcer(events, RecordingQueue(), "results-bucket")
    old, new = world.store.changes[-1]
    with pytest.raises(RuntimeError):
        announcer.announce(old, new)
    announcer.announce(old, new)  # the stream delivers the change again
    assert [(e.type, e.id) for e in events.published] == [("job.completed", f"{new.job_id}:{new.version}")]


# --- fail and sweep -----------------------------------------------------------------------------
def test_a_failure_is_recorded_once_however_often_it_is_reported():
    world = World()
    for _ in range(2):
        world.flow.fail(StepState(jobId=world.state.jobId, next="fail", reason="boom"))
    assert world.job.error == "boom"
    assert stream_events(world.store).count(f"job.failed {world.state.jobId}") == 1


def test_the_sweeper_fails_only_jobs_open_long_past_their_deadline():
    world = World()
    late = World()
    world.store.create(late.job.model_copy(update={"job_id": "late", "deadline_at": NOW - SWEEP_GRACE * 2}))
    assert world.flow.sweep().failed == ["late"]
    assert world.store.get("late").error == SWEPT_REASON
    assert world.job.status is JobStatus.QUEUED
    assert [e for e in stream_events(world.store) if e.startswith("job.failed")] == ["job.failed late"]


# --- records that cannot hold a change ------------------------------------------------------------
HUGE = "x" * 500_000  # over DynamoDB's 400 KB item limit on its own


def test_a_task_the_record_cannot_hold_fails_the_job_and_creates_nothing_more():
    world = World(number_of_images=3)
    world.primary.tasks_per_request = 3
    world.primary.creates = [CreatedTask("t-0"), CreatedTask(HUGE)]  # an upstream's absurd task id

    routed = world.flow.create(world.state)

    assert routed.next == "fail" and routed.reason is not None
    assert routed.reason.startswith("the job could not be recorded") and len(routed.reason) < 300
    assert [slot for _, slot in world.primary.created] == [0, 1]  # slot 2 was never created
    assert not any(e.startswith("job.failed") for e in stream_events(world.store))
    world.flow.fail(routed)
    job = world.job
    assert (job.status, job.error, job.charged_credits) == (JobStatus.FAILED, routed.reason, 0)
    assert [t.task_id for t in job.upstream_tasks] == ["t-0"]  # the record as it was, failed
    assert stream_events(world.store)[-1:] == [f"job.failed {job.job_id}"] and world.finished == [job.job_id]


def test_a_poll_answer_the_record_cannot_hold_fails_the_job():
    world = World()
    world.flow.create(world.state)
    world.primary.polls = [TaskState(JobStatus.PROCESSING, 50, image_urls=[f"https://cdn.example/{HUGE}"])]

    routed = world.flow.poll(world.state)
    world.flow.fail(routed)

    assert routed.next == "fail"
    assert world.job.status is JobStatus.FAILED and "could not be recorded" in (world.job.error or "")
    assert world.job.upstream_tasks[0].image_urls == []  # the answer was never written
    assert stream_events(world.store).count(f"job.failed {world.state.jobId}") == 1


def test_an_upstream_message_of_any_length_fails_the_job_with_a_short_reason():
    world = World()
    world.primary.creates = [UpstreamTerminalError("scripted: " + HUGE)]

    routed = world.flow.create(world.state)  # this state travels through Step Functions (256 KiB)
    world.flow.fail(routed)

    assert routed.reason is not None and len(routed.reason) <= 1000
    assert world.job.status is JobStatus.FAILED and world.job.error == routed.reason
    assert world.job.error.startswith("scripted: xxx")


def test_the_sweeper_skips_a_job_it_cannot_fail_and_sweeps_the_others():
    world = World()
    for job_id, hours in (("stuck", 3), ("late", 2)):
        world.store.create(
            world.job.model_copy(
                update={"job_id": job_id, "deadline_at": NOW - SWEEP_GRACE - timedelta(hours=hours)}
            )
        )
    world.store.crash_when(lambda job: job.job_id == "stuck")  # the oldest: swept first

    sweep = world.flow.sweep()

    assert sweep.failed == ["late"] and list(sweep.unsweepable) == ["stuck"]
    assert "Crash" in sweep.unsweepable["stuck"]
    assert world.store.get("late").status is JobStatus.FAILED
    assert world.store.get("stuck").status is JobStatus.QUEUED


# --- the deadline bounds every upstream call ------------------------------------------------------
def test_each_upstream_call_waits_at_most_the_time_left_before_the_deadline():
    """A poll that starts 3 s before the deadline must not wait out a 20 s read timeout."""
    timeouts: list[dict[str, float]] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        if request.method == "POST":
            return httpx.Response(200, json={"jobId": "up-1"})
        return httpx.Response(200, json={"status": "PROCESSING", "progress": 10})

    base = "https://apiframe.example"
    config = ProviderConfig(base_url=base, api_key="k", timeout_seconds=20.0)
    client = httpx.Client(
        base_url=base, transport=httpx.MockTransport(upstream), timeout=config.timeout_seconds
    )
    world = World()
    world.providers["scripted"] = world.providers["apiframe"] = ApiframeProvider(config, client)  # type: ignore[assignment]
    world.store.update(
        world.state.jobId, lambda j: j.model_copy(update={"deadline_at": NOW + timedelta(seconds=3)})
    )

    world.flow.create(world.state)
    world.flow.poll(world.state)

    assert len(timeouts) == 2
    for timeout in timeouts:
        assert all(0 < seconds <= 3 for seconds in timeout.values()), timeout


# --- cancel -------------------------------------------------------------------------------------
def test_a_canceled_job_is_left_alone_by_every_step():
    from imagegen.lifecycle import canceled

    world = World()
    world.flow.create(world.state)
    world.store.update(world.state.jobId, canceled(NOW))
    writes = world.store.writes
    world.primary.polls = [TaskState(JobStatus.COMPLETED, 100, image_urls=["https://x/0.png"])]
    world.serve_images()

    assert world.flow.poll(world.state).next == "done"
    assert world.flow.finalize(world.state).next == "done"
    assert world.primary.polled == [] and world.results.objects == {}
    assert world.store.writes == writes and world.job.status is JobStatus.CANCELED
