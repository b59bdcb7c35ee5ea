"""The job workflow's steps: create the upstream task(s), poll, finalize, record a failure.

Step Functions only routes: each step returns the small state below, whose `next` names the
following step and whose `waitSeconds` feeds the Wait state's SecondsPath. Retries of
upstream calls, their backoff and jitter, and the job deadline are decided here, in code that
unit tests drive directly, and honour a provider's Retry-After.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from imagegen.errors import (
    JobRecordRefused,
    UpstreamTerminalError,
    UpstreamTransientError,
    UpstreamUnavailableError,
)
from imagegen.lifecycle import Change, completed, failed, short_reason
from imagegen.models import Job, JobStatus, UpstreamTask, utc_now
from imagegen.ports import JobRepository, ResultRepository
from imagegen.providers.base import GenerationRequest, Provider
from imagegen.settings import PollSchedule
from imagegen.storage import image_key
from imagegen.transport import deadline

Next = Literal["create", "poll", "finalize", "fail", "done"]
# Images of one job copied at once: 10 is the most a job has (number_of_images); each copy holds
# at most one multipart part (imagegen.storage.TRANSFER) in memory.
MAX_PARALLEL_COPIES = 10
SWEPT_REASON = "the job was still open long after its deadline (its workflow never started or was lost)"


class StepState(BaseModel):
    """What travels between states: a job id and a routing decision, never images or URLs
    (Step Functions payloads are capped at 256 KiB)."""

    model_config = ConfigDict(extra="ignore")

    jobId: str
    next: Next = "create"
    waitSeconds: int = 0
    reason: str | None = None
    error: dict[str, Any] | None = None  # set by a Catch: {"Error": ..., "Cause": ...}
    # Set once a create call on the job's current provider failed in a way that may have
    # created a task we never heard of (a timeout, a 500): from then on the job never fails
    # over to another provider, so one job never has tasks on two providers.
    pinned: bool = False


@dataclass
class Sweep:
    """What one sweep did: the jobs it failed, and those it could not (job id -> why)."""

    failed: list[str] = field(default_factory=list)
    unsweepable: dict[str, str] = field(default_factory=dict)


Step = Callable[["JobWorkflow", StepState], StepState]


def _fails_what_cannot_be_recorded(step: Step) -> Step:
    """A step whose write the job's record cannot hold (an upstream's answer too large for it)
    fails the job through the failure step, which writes the failure in place and announces it
    (only the finalize and fail functions may publish)."""

    @functools.wraps(step)
    def guarded(self: JobWorkflow, state: StepState) -> StepState:
        try:
            return step(self, state)
        except JobRecordRefused as refused:
            return StepState(jobId=state.jobId, next="fail", reason=short_reason(refused.message))

    return guarded


class JobWorkflow:
    def __init__(
        self,
        store: JobRepository,
        provider_factory: Callable[[str | None], Provider],
        results: ResultRepository,
        schedule: PollSchedule,
        clock: Callable[[], datetime] = utc_now,
        jitter: Callable[[], float] = random.random,
        provider_chain: Sequence[str] = (),
        on_finished: Callable[[Job], None] = lambda job: None,
    ) -> None:
        self.store = store
        self.provider_factory = provider_factory
        # The primary provider, then where a job may go when it keeps failing transiently on
        # create before any task exists (Settings.provider_chain). Empty: no failover.
        self.provider_chain = list(provider_chain)
        self.results = results
        self.schedule = schedule
        self.clock = clock
        self.jitter = jitter
        self.on_finished = on_finished  # e.g. the handler's metrics; called once per terminal job

    # --- create -------------------------------------------------------------------------------
    @_fails_what_cannot_be_recorded
    def create(self, state: StepState) -> StepState:
        job = self._open_job(state, "deadline exceeded before the upstream task could be created")
        if isinstance(job, StepState):
            return job
        provider = self.provider_factory(job.provider)
        request = GenerationRequest(job_id=job.job_id, prompt=job.prompt, params=job.params)
        recorded = {task.slot for task in job.upstream_tasks}
        try:
            for slot in range(provider.task_count(request)):
                if slot in recorded:
                    continue  # created by an earlier attempt: reuse it, never create twice
                with deadline(self._seconds_left(job)):
                    created = provider.create_task(request, slot)
                task = UpstreamTask(slot=slot, task_id=created.task_id)
                if created.images:
                    task = self._store_inline_images(job, task, created.images)
                job = self._record_task(job.job_id, provider.name, task)
                if job.status.is_terminal:  # ended meanwhile: create nothing more for it
                    return self._route(job, "done")
        except UpstreamTerminalError as exc:
            return self._fail(job, exc.message)
        except UpstreamTransientError as exc:
            pinned = state.pinned or not isinstance(exc, UpstreamUnavailableError)
            job, _ = self._update(job.job_id, _count_create_attempt)
            if job.create_attempts >= self.schedule.max_create_attempts:
                successor = None if pinned or job.upstream_tasks else self._failover_target(provider, request)
                if successor is not None:
                    job, switched = self._update(job.job_id, lambda j: _switch_provider(j, successor))
                    if switched:
                        return self._route(job, "create")
                reason = f"upstream kept failing after {job.create_attempts} attempts: {exc.message}"
                return self._fail(job, reason)
            wait = self._wait_then(job, "create", self._backoff(job.create_attempts, exc.retry_after))
            return wait.model_copy(update={"pinned": pinned})
        if all(task.status is JobStatus.COMPLETED for task in job.upstream_tasks):
            return self._route(job, "finalize")
        return self._wait_then(job, "poll", self.schedule.first_poll_seconds)

    def _failover_target(self, current: Provider, request: GenerationRequest) -> str | None:
        """The next provider in the chain after `current` that can serve the request at all."""
        if current.name not in self.provider_chain:
            return None
        for name in self.provider_chain[self.provider_chain.index(current.name) + 1 :]:
            if self.provider_factory(name).refusal(request) is None:
                return name
        return None

    def _store_inline_images(self, job: Job, task: UpstreamTask, images: list[Any]) -> UpstreamTask:
        first_index = sum(len(t.stored_keys) for t in job.upstream_tasks)
        keys = []
        for offset, image in enumerate(images):
            key = image_key(job.job_id, first_index + offset, job.params.output_format)
            self.results.put_image(key, image.data, job.params.content_type)
            keys.append(key)
        return task.model_copy(update={"status": JobStatus.COMPLETED, "progress": 100, "stored_keys": keys})

    def _record_task(self, job_id: str, provider_name: str, task: UpstreamTask) -> Job:
        def record(job: Job) -> Job | None:
            if job.status.is_terminal or any(t.slot == task.slot for t in job.upstream_tasks):
                return None
            job.upstream_tasks.append(task)
            job.provider = provider_name
            job.status = JobStatus.PROCESSING
            return job

        job, _ = self._update(job_id, record)
        return job

    # --- poll ---------------------------------------------------------------------------------
    @_fails_what_cannot_be_recorded
    def poll(self, state: StepState) -> StepState:
        job = self._open_job(state, "deadline exceeded: the upstream did not finish in time")
        if isinstance(job, StepState):
            return job
        provider = self.provider_factory(job.provider)
        updates: dict[int, UpstreamTask] = {}
        try:
            for task in job.upstream_tasks:
                if task.status is not JobStatus.COMPLETED:
                    with deadline(self._seconds_left(job)):
                        seen = provider.get_task(task.task_id)
                    updates[task.slot] = task.model_copy(
                        update={
                            "status": seen.status,
                            "progress": seen.progress,
                            "image_urls": seen.image_urls,
                            "error": seen.error,
                        }
                    )
        except UpstreamTerminalError as exc:
            return self._fail(job, exc.message)
        except UpstreamTransientError as exc:
            job, _ = self._update(job.job_id, _count_poll_error)
            if job.poll_errors > self.schedule.max_poll_errors:
                return self._fail(job, f"upstream status kept failing: {exc.message}")
            backoff = self._backoff(job.poll_errors, exc.retry_after, floor=self._poll_interval(job))
            return self._wait_then(job, "poll", backoff)
        job, _ = self._update(job.job_id, lambda j: _apply_poll(j, updates))
        failed = [t for t in job.upstream_tasks if t.status is JobStatus.FAILED]
        if failed:
            return self._fail(job, failed[0].error or "the upstream task failed")
        if all(t.status is JobStatus.COMPLETED for t in job.upstream_tasks):
            return self._route(job, "finalize")
        return self._wait_then(job, "poll", self._poll_interval(job))

    # --- finalize -----------------------------------------------------------------------------
    @_fails_what_cannot_be_recorded
    def finalize(self, state: StepState) -> StepState:
        """Copy every image into S3 under a deterministic key, then mark COMPLETED and announce
        it. Transient download errors propagate so the state machine's Retry runs again. No
        deadline check: the upstream finished in time, and storing its images is ours to do."""
        job = self._open_job(state, too_late=None)
        if isinstance(job, StepState):
            return job
        keys: list[str] = []
        copies: list[tuple[str, str]] = []  # (url, key)
        for task in sorted(job.upstream_tasks, key=lambda t: t.slot):
            keys.extend(task.stored_keys)
            for url in task.image_urls:
                key = image_key(job.job_id, len(keys), job.params.output_format)
                copies.append((url, key))
                keys.append(key)
        self._copy_all(copies, job.params.content_type)
        if not keys:
            return self._fail(job, "the upstream finished without any image")
        job, _ = self._update(job.job_id, completed(keys, self.clock()))
        return self._route(job, "done")

    def _copy_all(self, copies: list[tuple[str, str]], content_type: str) -> None:
        """Every image of the job at once (a job waits for its slowest image, not for their
        sum), at most MAX_PARALLEL_COPIES at a time; each copy streams in bounded parts
        (imagegen.storage). The first failure is raised, as a sequential loop would."""
        if len(copies) <= 1:
            for url, key in copies:
                self.results.copy_from_url(url, key, content_type)
            return
        workers = min(len(copies), MAX_PARALLEL_COPIES)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="finalize-copy") as pool:
            futures = [pool.submit(self.results.copy_from_url, url, key, content_type) for url, key in copies]
            for future in futures:
                future.result()

    # --- fail ---------------------------------------------------------------------------------
    def fail(self, state: StepState) -> StepState:
        """Record a failure decided by a step (`reason`) or caught by the state machine (`error`)."""
        reason = state.reason or _reason_from_catch(state.error)
        job, _ = self._update(state.jobId, failed(reason, self.clock()))
        return StepState(jobId=job.job_id, next="done", reason=job.error)

    # --- sweep --------------------------------------------------------------------------------
    def sweep(self, limit: int = 100) -> Sweep:
        """Fail (and so refund and announce) every job still open well past its deadline: the
        backstop for a workflow that never started or was lost."""
        sweep = Sweep()
        for job_id in self.store.overdue(self.clock(), limit):
            try:
                _, changed = self._update(job_id, failed(SWEPT_REASON, self.clock()))
            except Exception as exc:
                # Whatever one job does (a record that cannot be read or written), the others
                # are still swept; this one is reported, and alarmed on, by the caller.
                sweep.unsweepable[job_id] = f"{type(exc).__name__}: {exc}"[:500]
                continue
            if changed:
                sweep.failed.append(job_id)
        return sweep

    # --- helpers ------------------------------------------------------------------------------
    def _open_job(self, state: StepState, too_late: str | None) -> Job | StepState:
        """Every step's preamble: the job if it is still open (and, where `too_late` says why
        it would fail, within its deadline), else the state that ends or fails it."""
        job = self.store.get(state.jobId)
        if job.status.is_terminal:
            return self._route(job, "done")
        if too_late is not None and self._past_deadline(job):
            return self._fail(job, too_late)
        return job

    def _update(self, job_id: str, change: Change) -> tuple[Job, bool]:
        """Every write of a step. The write that ended the job announces it: the workflow's
        changes leave a terminal job alone, so a write that changed the job and left it
        terminal is the one that ended it."""
        job, changed = self.store.update(job_id, change)
        if changed and job.status.is_terminal:
            self._finished(job)
        return job, changed

    def _finished(self, job: Job) -> None:
        """Once per job, by whichever step made it terminal: tell the observer (metrics). The
        job's event comes from the table's change stream (imagegen.events), not from here."""
        self.on_finished(job)

    def _fail(self, job: Job, reason: str) -> StepState:
        return StepState(jobId=job.job_id, next="fail", reason=short_reason(reason))

    def _route(self, job: Job, next_step: Next) -> StepState:
        return StepState(jobId=job.job_id, next=next_step)

    def _wait_then(self, job: Job, next_step: Next, seconds: float) -> StepState:
        # Never wait past the deadline: the step after the wait is the one that fails the job.
        wait = max(0, min(math.ceil(seconds), math.ceil(max(self._seconds_left(job), 0))))
        return StepState(jobId=job.job_id, next=next_step, waitSeconds=wait)

    def _past_deadline(self, job: Job) -> bool:
        return self.clock() >= job.deadline_at

    def _seconds_left(self, job: Job) -> float:
        """Before the job's deadline; upstream calls wait no longer (imagegen.transport.deadline)."""
        return (job.deadline_at - self.clock()).total_seconds()

    def _poll_interval(self, job: Job) -> float:
        """The wait before the next poll. Adaptive: the upstream's progress p (percent) after
        the time elapsed since the job began predicts its finish; the wait ends just before it
        (rounded down: an early poll costs one more poll a second later, a late one costs the
        user the overshoot). A zero interval (tests) stays zero."""
        fixed = float(self.schedule.poll_interval_seconds)
        if not self.schedule.adaptive_polling or fixed == 0:
            return fixed
        elapsed = (self.clock() - job.created_at).total_seconds()
        waiting = [t for t in job.upstream_tasks if t.status is not JobStatus.COMPLETED]
        if not waiting or elapsed <= 0 or any(not 0 < t.progress < 100 for t in waiting):
            return fixed  # no progress figure to go by (queued, or a provider without one)
        slowest = min(t.progress for t in waiting)
        remaining = elapsed * (100 - slowest) / slowest
        return float(max(1, min(self.schedule.max_poll_interval_seconds, math.floor(remaining))))

    def _backoff(self, attempt: int, retry_after: float | None, floor: float = 0.0) -> float:
        """Exponential backoff with full jitter, never sooner than the provider's Retry-After."""
        ceiling = min(self.schedule.retry_max_seconds, self.schedule.retry_base_seconds * 2 ** (attempt - 1))
        return max(self.jitter() * ceiling, retry_after or 0.0, floor)


def _count_create_attempt(job: Job) -> Job | None:
    if job.status.is_terminal:
        return None
    job.create_attempts += 1
    return job


def _switch_provider(job: Job, name: str) -> Job | None:
    """Move a job that has no upstream task yet to provider `name`, with a fresh attempt budget."""
    if job.status.is_terminal or job.upstream_tasks:
        return None
    job.provider = name
    job.create_attempts = 0
    return job


def _count_poll_error(job: Job) -> Job | None:
    if job.status.is_terminal:
        return None
    job.poll_errors += 1
    return job


def _apply_poll(job: Job, updates: dict[int, UpstreamTask]) -> Job | None:
    if job.status.is_terminal:
        return None
    job.upstream_tasks = [updates.get(t.slot, t) for t in job.upstream_tasks]
    # Progress of a fanned-out job is the mean of its tasks'; 100 only once it is stored in S3.
    mean = sum(t.progress for t in job.upstream_tasks) / max(len(job.upstream_tasks), 1)
    job.progress = min(99, max(job.progress, int(mean)))
    job.status = JobStatus.PROCESSING
    return job


def _reason_from_catch(error: dict[str, Any] | None) -> str:
    """A Catch hands us {"Error": name, "Cause": text}; Lambda's Cause is JSON with errorMessage."""
    import json

    if not error:
        return "the job failed for an unknown reason"
    name, cause = str(error.get("Error", "Error")), error.get("Cause")
    try:
        message = json.loads(cause).get("errorMessage") if cause else None
    except (ValueError, AttributeError):
        message = cause
    if name == "States.Timeout":
        return "a workflow step timed out"
    return f"{name}: {message}" if message else name
