"""Submission on in-memory fakes: what is written, what is started, and what is refused before
anything is written."""

from __future__ import annotations

import pytest

from imagegen.errors import InvalidRequest
from imagegen.lifecycle import new_job
from imagegen.models import GenerateRequest, GptImageParams, JobStatus
from imagegen.settings import Settings
from imagegen.submission import submit_job
from tests.fakes import InMemoryJobStore, RecordingStarter

SETTINGS = Settings(jobs_table="j", api_keys_table="k", results_bucket="r", events_topic_arn="t")


def a_job(job_id: str | None = None, **params: object):
    request = GenerateRequest(prompt="a kite", model="gpt-image-1.5", gptImageParams=GptImageParams(**params))
    return new_job(request, "alice", SETTINGS, job_id=job_id)


def test_a_new_job_is_stored_queued_and_started():
    store, starter = InMemoryJobStore(), RecordingStarter()
    job = a_job()

    stored, created = submit_job(job, store, starter)

    assert created and stored.job_id == job.job_id
    assert store.get(job.job_id).status is JobStatus.QUEUED
    assert starter.started == [job.job_id]


def test_a_job_this_request_already_wrote_is_still_started():
    """The write landed but its answer was lost, and the retried write met the record: that record
    is this request's own (same request token), so the request goes on and starts it."""
    store, starter = InMemoryJobStore(), RecordingStarter()
    job = a_job()
    assert store.create(job)  # the attempt whose answer was lost

    _, created = submit_job(job, store, starter)

    assert created and starter.started == [job.job_id]
    assert store.writes == 1


def test_a_true_duplicate_is_answered_with_the_existing_job_and_starts_nothing():
    store, starter = InMemoryJobStore(), RecordingStarter()
    first = a_job(job_id="edit-1")
    submit_job(first, store, starter)
    redelivered = a_job(job_id="edit-1", quality="low")  # another request naming the same job

    stored, created = submit_job(redelivered, store, starter)

    assert not created and stored.params.quality == first.params.quality
    assert starter.started == [first.job_id]


def test_a_job_whose_record_would_be_too_large_is_refused_before_anything_is_written():
    store, starter = InMemoryJobStore(), RecordingStarter()
    job = a_job()
    # Each URL may be within a per-URL bound; together they are far over the record budget.
    job.params.input_images = [f"https://images.example/{i}/" + "a" * 8000 for i in range(16)]

    with pytest.raises(InvalidRequest) as refused:
        submit_job(job, store, starter)

    assert "too large" in refused.value.message
    assert refused.value.details and refused.value.details[0]["field"] == "gptImageParams.input_images"
    assert store.items == {} and starter.started == []
