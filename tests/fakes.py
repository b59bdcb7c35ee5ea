"""In-memory fakes of the domain's ports (imagegen.ports) and of a provider, for unit tests that
run the workflow, submission and edits through their public methods in milliseconds.

They keep the semantics the real adapters promise (conditional create, optimistic-locking
updates, versions, the open-jobs index) and nothing more. mypy checks them against the
protocols (`make lint` includes this file), so a port that changes breaks its fake at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from imagegen.errors import JobNotFound, JobRecordRefused, UpstreamTerminalError
from imagegen.events import AnyEvent
from imagegen.jobs import SWEEP_GRACE, check_fits, fail_in_place
from imagegen.models import Job, JobStatus, utc_now
from imagegen.ports import EventPublisherPort, JobRepository, ResultRepository, WorkflowStarterPort
from imagegen.providers.base import CreatedTask, GenerationRequest, Provider, ProviderConfig, TaskState
from imagegen.webhooks import WebhookMessage

Change = Callable[[Job], Job | None]


class Crash(RuntimeError):
    """Stands for a function dying mid-step (out of memory, a timeout, a bug)."""


class InMemoryJobStore:
    """imagegen.jobs.JobStore's contract on a dict: a change whose record would be too large is
    refused, or written in place when it fails the job (imagegen.jobs.fail_in_place). `changes` is
    its change stream: (old, new) for every write, as DynamoDB Streams delivers NEW_AND_OLD_IMAGES.
    `crash_when(predicate)` makes the next update whose *result* matches the predicate raise
    Crash before anything is written."""

    def __init__(self) -> None:
        self.items: dict[str, Job] = {}
        self.changes: list[tuple[Job | None, Job]] = []
        self._crash: Callable[[Job], bool] | None = None

    @property
    def writes(self) -> int:
        return len(self.changes)

    def create(self, job: Job) -> bool:
        if job.job_id in self.items:
            return self.items[job.job_id].request_token == job.request_token
        self.items[job.job_id] = job.model_copy(deep=True)
        self.changes.append((None, job.model_copy(deep=True)))
        return True

    def get(self, job_id: str) -> Job:
        try:
            return self.items[job_id].model_copy(deep=True)
        except KeyError:
            raise JobNotFound(f"job {job_id} not found") from None

    def update(self, job_id: str, change: Change) -> tuple[Job, bool]:
        current = self.get(job_id)
        changed = change(current.model_copy(deep=True))
        if changed is None:
            return current, False
        if self._crash is not None and self._crash(changed):
            self._crash = None
            raise Crash(f"simulated crash before writing job {job_id}")
        try:
            check_fits(changed)
        except JobRecordRefused as refused:  # as the real store: a failure is written in place
            changed = fail_in_place(current, changed, refused)
        changed.version = current.version + 1
        changed.updated_at = utc_now()
        self.items[job_id] = changed.model_copy(deep=True)
        self.changes.append((current, changed.model_copy(deep=True)))
        return changed, True

    def overdue(self, now: datetime, limit: int = 100) -> list[str]:
        open_jobs = [j for j in self.items.values() if not j.status.is_terminal]
        late = sorted(
            (j for j in open_jobs if j.deadline_at + SWEEP_GRACE < now), key=lambda j: j.deadline_at
        )
        return [j.job_id for j in late[:limit]]

    def crash_when(self, predicate: Callable[[Job], bool]) -> None:
        self._crash = predicate


@dataclass
class InMemoryResults:
    """The results bucket: `served` maps a URL to its bytes or to the error fetching it raises."""

    bucket: str = "results-bucket"
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    served: dict[str, bytes | Exception] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    def copy_from_url(self, url: str, key: str, content_type: str) -> None:
        self.fetched.append(url)
        answer = self.served.get(url, UpstreamTerminalError(f"image download answered HTTP 404: {url}"))
        if isinstance(answer, Exception):
            raise answer
        self.objects[key] = (answer, content_type)

    def put_image(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = (data, content_type)

    def presigned_url(self, key: str, ttl_seconds: int) -> str:
        return f"https://{self.bucket}.s3.example/{key}?X-Amz-Expires={ttl_seconds}"


@dataclass
class RecordingEvents:
    """Publishes into a list; `failures` are raised, one per publish, before recording."""

    published: list[AnyEvent] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    def publish(self, event: AnyEvent) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.published.append(event)
        return f"message-{len(self.published)}"


@dataclass
class RecordingStarter:
    started: list[str] = field(default_factory=list)
    failure: Exception | None = None

    def start(self, job_id: str) -> None:
        if self.failure is not None:
            raise self.failure
        if job_id not in self.started:  # named executions: a second start of one name is a no-op
            self.started.append(job_id)


class ScriptedProvider(Provider):
    """An upstream that answers from scripts. `creates` and `polls` are consumed one answer per
    call: an exception is raised, a CreatedTask / TaskState returned; when a script runs out,
    create makes a task and a poll reports it COMPLETED with one image URL per task.
    Subclass with another `name` to have several providers (failover)."""

    name: ClassVar[str] = "scripted"
    default_base_url: ClassVar[str] = "https://scripted.example"

    def __init__(self) -> None:  # no HTTP client: nothing leaves the process
        self.config = ProviderConfig(base_url=self.default_base_url, api_key="unused")
        self.creates: list[CreatedTask | Exception] = []
        self.polls: list[TaskState | Exception] = []
        self.created: list[tuple[str, int]] = []  # (job id, slot) of every create call that succeeded
        self.polled: list[str] = []
        self.tasks_per_request = 1

    def task_count(self, request: GenerationRequest) -> int:
        return self.tasks_per_request

    def create_task(self, request: GenerationRequest, slot: int) -> CreatedTask:
        answer = self.creates.pop(0) if self.creates else CreatedTask(f"{self.name}-{request.job_id}-{slot}")
        if isinstance(answer, Exception):
            raise answer
        self.created.append((request.job_id, slot))
        return answer

    def get_task(self, task_id: str) -> TaskState:
        self.polled.append(task_id)
        answer = (
            self.polls.pop(0)
            if self.polls
            else TaskState(JobStatus.COMPLETED, 100, image_urls=[f"https://cdn.example/{task_id}.png"])
        )
        if isinstance(answer, Exception):
            raise answer
        return answer


# The fakes must satisfy the ports: mypy checks these assignments.
_job_store: JobRepository = InMemoryJobStore()
_results: ResultRepository = InMemoryResults()
_events: EventPublisherPort = RecordingEvents()
_starter: WorkflowStarterPort = RecordingStarter()


def stream_events(store: InMemoryJobStore, bucket: str = "results-bucket") -> list[str]:
    """`<type> <jobId>` of every event the store's change stream stands for, in order."""
    from imagegen.events import events_for_change

    return [f"{e.type} {e.jobId}" for old, new in store.changes for e in events_for_change(old, new, bucket)]


@dataclass
class RecordingQueue:
    """The webhook delivery queue: what was sent, with its delay."""

    sent: list[tuple[WebhookMessage, int]] = field(default_factory=list)

    def send(self, message: WebhookMessage, delay_seconds: int = 0) -> None:
        self.sent.append((message, delay_seconds))
