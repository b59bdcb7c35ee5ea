"""Asynchronous upstream tasks: timing, background rendering and the in-memory file store."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from .config import FaultScript
from .faults import Outcome
from .render import CONTENT_TYPES, InputImageError, RenderSpec, fetch_input_image, render_image

log = logging.getLogger(__name__)

Phase = Literal["queued", "processing", "completed", "failed"]

INPUT_FETCH_FAILED = "could not fetch input image"
QUEUED_SHARE = 0.1  # the first 10% of a task's latency reports QUEUED


@dataclass(frozen=True)
class StoredFile:
    data: bytes
    content_type: str


class FileStore:
    """Rendered files by name. Bounded so a long local load test cannot eat all memory;
    evicted files 404, which only matters if nobody copied them for a long time."""

    def __init__(self, max_bytes: int = 512 * 1024 * 1024) -> None:
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def put(self, name: str, data: bytes, content_type: str) -> None:
        with self._lock:
            self._files[name] = StoredFile(data, content_type)
            self._bytes += len(data)
            while self._bytes > self._max_bytes and len(self._files) > 1:
                _, evicted = self._files.popitem(last=False)
                self._bytes -= len(evicted.data)

    def get(self, name: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(name)


@dataclass(frozen=True)
class TaskView:
    """What a status call reports at one instant."""

    phase: Phase
    progress: int
    images: list[str] | None
    error: str | None
    completed_at: datetime | None


@dataclass(frozen=True)
class Webhook:
    """Where and what apiframe reports about a task (webhookUrl, webhookEvents), and the API
    key of the account that created it (the signing secret derives from it)."""

    url: str
    events: frozenset[str]
    api_key: str


@dataclass(frozen=True)
class TaskRecord:
    """What the simulator created, as a benchmark or a chaos run reads it: one per upstream
    task (one per OpenAI render). `finished_at` is when the task became terminal (when its
    result became visible to a status call), None while it runs or if it never finishes."""

    protocol: str
    task_id: str
    idempotency_key: str | None
    prompt: str
    count: int
    outcome: Outcome
    status: Phase
    created_at: datetime
    finished_at: datetime | None

    def as_json(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "taskId": self.task_id,
            "idempotencyKey": self.idempotency_key,
            "prompt": self.prompt,
            "count": self.count,
            "outcome": self.outcome,
            "status": self.status,
            "createdAt": iso(self.created_at),
            "finishedAt": iso(self.finished_at) if self.finished_at else None,
        }


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Task:
    task_id: str
    protocol: str
    spec: RenderSpec
    count: int
    input_urls: list[str]
    outcome: Outcome
    duration: float
    fail_reason: str
    credit_cost: int = 0
    idempotency_key: str | None = None
    script: FaultScript | None = None  # the job's scripted faults: its polls and files get them too
    webhook: Webhook | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    # Set once by the render worker; until then the task cannot be terminal.
    finished: float | None = None
    images: list[str] | None = None
    error: str | None = None
    webhook_status: str | None = None  # apiframe's webhookStatus: "sent" once delivered

    def record(self) -> TaskRecord:
        view = self.view()
        return TaskRecord(
            protocol=self.protocol,
            task_id=self.task_id,
            idempotency_key=self.idempotency_key,
            prompt=self.spec.prompt,
            count=self.count,
            outcome=self.outcome,
            status=view.phase,
            created_at=self.created_at,
            finished_at=view.completed_at,
        )

    def view(self, now: float | None = None) -> TaskView:
        elapsed = (time.monotonic() if now is None else now) - self.started
        finished = self.finished
        if finished is not None and elapsed >= self.duration:
            done_after = max(self.duration, finished - self.started)
            completed_at = self.created_at + timedelta(seconds=done_after)
            if self.error is not None:
                return TaskView("failed", 100, None, self.error, completed_at)
            return TaskView("completed", 100, self.images, None, completed_at)
        if elapsed < QUEUED_SHARE * self.duration:
            return TaskView("queued", 0, None, None, None)
        # Never-finishing tasks (and renders slower than the latency) creep up to 99.
        progress = int(100 * elapsed / self.duration) if self.duration else 99
        return TaskView("processing", max(1, min(99, progress)), None, None, None)


class TaskStore:
    """Creates tasks and renders them on a small worker pool, right away: the latency is
    simulated by when the result becomes visible, not by sleeping in a worker."""

    def __init__(self, files: FileStore, file_url: Callable[[str], str], workers: int = 4) -> None:
        self._files = files
        self._file_url = file_url
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sim-render")

    def add(self, task: Task, render: bool = True) -> Task:
        """Store `task` and, unless the caller renders it itself (OpenAI answers with the
        images, so its handler renders), start its render."""
        with self._lock:
            self._tasks[task.task_id] = task
        if not render:
            return task
        if task.outcome == "fail":
            task.error, task.finished = task.fail_reason, task.started
        elif task.outcome == "succeed":
            self._pool.submit(self._render, task)
        return task  # "never": no render, finished stays None forever

    def get(self, protocol: str, task_id: str) -> Task | None:
        task = self.find(task_id)
        return task if task is not None and task.protocol == protocol else None

    def find(self, task_id: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_id)

    def all(self) -> list[Task]:
        with self._lock:
            return list(self._tasks.values())  # dicts keep insertion order: creation order

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _render(self, task: Task) -> None:
        try:
            # Fetch every input (as the real service would) but derive from the first.
            sources = [fetch_input_image(url) for url in task.input_urls]
            extension = task.spec.output_format
            urls = []
            for index in range(task.count):
                data = render_image(task.spec, index, sources[0] if sources else None)
                name = f"{task.task_id}-{index + 1}.{extension}"
                self._files.put(name, data, CONTENT_TYPES[extension])
                urls.append(self._file_url(name))
            task.images = urls
        except InputImageError as error:
            log.info("task %s: %s", task.task_id, error)
            task.error = INPUT_FETCH_FAILED
        except Exception:
            log.exception("task %s: render failed", task.task_id)
            task.error = "internal error while rendering"
        finally:
            task.finished = time.monotonic()
