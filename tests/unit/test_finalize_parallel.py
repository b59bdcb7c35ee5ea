"""Finalize copies a job's images at once (a job waits for its slowest image, not for the sum
of them), keeps their order in the keys, and still fails as a sequential copy would."""

from __future__ import annotations

import threading

import pytest

from imagegen.errors import UpstreamTransientError
from imagegen.models import JobStatus, UpstreamTask
from imagegen.workflow import StepState
from tests.fakes import InMemoryResults
from tests.unit.test_workflow_schedule import setup


class RendezvousResults(InMemoryResults):
    """Each copy waits until `parties` copies are in flight together: sequential copies never
    get there, and the barrier breaks (after its timeout) instead of hanging the test."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def copy_from_url(self, url: str, key: str, content_type: str) -> None:
        self.barrier.wait()
        super().copy_from_url(url, key, content_type)


def _job_with_images(count: int, results: InMemoryResults):
    flow, _, state, store = setup()
    flow.results = results
    urls = [f"https://cdn.example/{n}.png" for n in range(count)]
    results.served = {url: url.encode() for url in urls}
    task = UpstreamTask(slot=0, task_id="t", status=JobStatus.COMPLETED, progress=100, image_urls=urls)
    store.update(state.jobId, lambda j: j.model_copy(update={"upstream_tasks": [task]}))
    return flow, StepState(jobId=state.jobId, next="finalize"), store


def test_every_image_of_a_job_is_copied_at_the_same_time():
    results = RendezvousResults(parties=4)
    flow, state, store = _job_with_images(4, results)
    assert flow.finalize(state).next == "done"
    job = store.get(state.jobId)
    assert job.status is JobStatus.COMPLETED
    # Keys keep the images' order, whichever copy finished first.
    assert [results.objects[key][0] for key in job.result_keys] == [
        f"https://cdn.example/{n}.png".encode() for n in range(4)
    ]


def test_a_failed_copy_fails_finalize_as_before():
    results = InMemoryResults()
    flow, state, store = _job_with_images(3, results)
    results.served["https://cdn.example/1.png"] = UpstreamTransientError("download broke off")
    with pytest.raises(UpstreamTransientError):
        flow.finalize(state)
    assert store.get(state.jobId).status is not JobStatus.COMPLETED
