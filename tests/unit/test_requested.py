"""Jobs requested by events: one job per request id, invalid requests answered with a
rejection event and removed, our own failures raised so the queue delivers again."""

from __future__ import annotations

import json

import pytest

from imagegen.errors import ServiceUnavailable
from imagegen.models import JobSource
from imagegen.requested import RequestIntake, parse_message, requested_job_id
from imagegen.settings import Settings
from tests.fakes import InMemoryJobStore, RecordingEvents, RecordingStarter
from tests.support import EVENTS

SETTINGS = Settings(
    jobs_table="j", api_keys_table="k", results_bucket="r", events_topic_arn="t", intake_owner="catalog"
)


def sample(name: str) -> str:
    return (EVENTS / "intake" / name).read_text()


def intake(starter: RecordingStarter | None = None):
    store, events, starter = InMemoryJobStore(), RecordingEvents(), starter or RecordingStarter()
    return RequestIntake(SETTINGS, store, starter, events), store, events, starter


@pytest.mark.parametrize("name", ["eventbridge_job_requested.json", "direct_job_requested.json"])
def test_an_event_or_a_direct_message_starts_a_job_of_the_intakes_owner(name):
    handle, store, events, starter = intake()
    outcome = handle.handle(sample(name))
    assert outcome.action == "started"
    job = store.get(outcome.job_id or "")
    assert (job.owner, job.source, starter.started) == ("catalog", JobSource.EVENT, [job.job_id])
    assert job.job_id == requested_job_id("catalog", outcome.request_id)
    assert events.published == []  # its events come from the job table's stream


def test_the_same_request_id_never_makes_a_second_job():
    handle, store, _, starter = intake()
    first = handle.handle(sample("direct_job_requested.json"))
    again = handle.handle(sample("direct_job_requested.json"))
    assert (again.action, again.job_id) == ("duplicate", first.job_id)
    assert len(store.items) == 1 and len(starter.started) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (sample("invalid_job_requested.json"), "invalid_request"),
        ("not json", "invalid_request"),
        ("[" * 5000 + "]" * 5000, "invalid_request"),
        (json.dumps({"requestId": "a b", "request": {}}), "invalid_request"),
        (json.dumps({"detail-type": "Something Else", "detail": {}}), "invalid_request"),
        (
            json.dumps(
                {
                    "requestId": "ssrf-1",
                    "request": {
                        "prompt": "x",
                        "model": "gpt-image-1.5",
                        "gptImageParams": {"input_images": ["http://169.254.169.254/latest"]},
                    },
                }
            ),
            "unsafe_url",
        ),
    ],
)
def test_an_invalid_request_is_rejected_with_the_apis_error_shape_and_starts_nothing(body, code):
    handle, store, events, starter = intake()
    outcome = handle.handle(body)
    assert (outcome.action, outcome.error_code) == ("rejected", code)
    [rejected] = events.published
    assert rejected.type == "job.rejected" and rejected.error.code == code
    assert store.items == {} and starter.started == []


def test_a_failure_of_ours_is_raised_so_the_queue_delivers_the_message_again():
    handle, _store, events, _ = intake(RecordingStarter(failure=RuntimeError("throttled")))
    with pytest.raises(ServiceUnavailable):
        handle.handle(sample("direct_job_requested.json"))
    assert events.published == []


def test_the_request_in_an_eventbridge_envelope_is_its_detail():
    requested = parse_message(sample("eventbridge_job_requested.json"))
    assert requested.requestId == "catalog-item-4711" and requested.request.gptImageParams.quality == "low"


def test_a_webhook_url_to_a_private_address_is_refused_at_submission():
    handle, store, _events, _ = intake()
    body = json.dumps(
        {
            "requestId": "hook-1",
            "request": {"prompt": "x", "model": "gpt-image-1.5", "webhookUrl": "http://10.0.0.7/hook"},
        }
    )
    assert handle.handle(body).error_code == "unsafe_url" and store.items == {}
