"""Job events: one logical event per change of a job, with a stable id, in versioned contracts
whose JSON Schemas in docs/events/ and samples in events/imagegen/ cannot go stale."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagegen.events import (
    DETAIL_TYPES,
    EventPublisher,
    EventType,
    events_for_change,
    export_schemas,
    message_attributes,
    parse_event,
    rejection,
)
from imagegen.lifecycle import completed, failed, new_job
from imagegen.models import GenerateRequest, JobStatus
from imagegen.settings import Settings
from tests.support import EVENTS, REPO

SETTINGS = Settings(jobs_table="j", api_keys_table="k", results_bucket="r", events_topic_arn="t")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def job(**changes):
    created = new_job(GenerateRequest(prompt="a kite", model="gpt-image-1.5"), "alice", SETTINGS)
    return created.model_copy(update=changes)


def changed(before, change):
    after = change(before.model_copy(deep=True))
    after.version = before.version + 1
    return after


def test_a_new_job_is_accepted():
    [event] = events_for_change(None, job(), "bucket")
    assert (event.type, event.status, event.id) == ("job.accepted", "QUEUED", f"{event.jobId}:0")


def test_each_status_change_is_one_event_with_the_records_version_as_its_id():
    queued = job()
    processing = changed(queued, lambda j: j.model_copy(update={"status": JobStatus.PROCESSING}))
    done = changed(processing, completed(["images/x/0.webp"], NOW))
    [started] = events_for_change(queued, processing, "bucket")
    [finished] = events_for_change(processing, done, "bucket")
    assert (started.type, finished.type) == ("job.progressed", "job.completed")
    assert finished.id == f"{done.job_id}:2" and finished.resultKeys == ["images/x/0.webp"]
    assert events_for_change(processing, done, "bucket") == [finished]  # redelivered: same id


def test_progress_while_rendering_is_announced_and_bookkeeping_is_not():
    rendering = job(status=JobStatus.PROCESSING, progress=10)
    further = changed(rendering, lambda j: j.model_copy(update={"progress": 40}))
    counted = changed(further, lambda j: j.model_copy(update={"poll_errors": 1}))
    assert [e.progress for e in events_for_change(rendering, further, "b")] == [40]
    assert events_for_change(further, counted, "b") == []


def test_a_failed_job_is_announced_refunded_and_an_expired_record_is_not_a_change():
    queued = job()
    gone = changed(queued, failed("boom", NOW))
    [event] = events_for_change(queued, gone, "b")
    assert (event.type, event.error, event.creditCost) == ("job.failed", "boom", 0)
    assert events_for_change(gone, None, "b") == []


def test_message_attributes_serve_filter_policies():
    [event] = events_for_change(None, job(), "b")
    attributes = {k: v["StringValue"] for k, v in message_attributes(event).items()}
    assert attributes == {
        "eventType": "job.accepted",
        "status": "QUEUED",
        "source": "api",
        "owner": "alice",
        "model": "gpt-image-1.5",
    }


class _Recorder:
    def __init__(self, failed_entries: int = 0) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.failed_entries = failed_entries

    def publish(self, **kwargs):
        self.calls.append(("sns", kwargs))
        return {"MessageId": "m-1"}

    def put_events(self, **kwargs):
        self.calls.append(("events", kwargs))
        return {"FailedEntryCount": self.failed_entries, "Entries": [{}]}


def test_the_publisher_sends_each_event_to_the_topic_and_the_bus():
    client = _Recorder()
    [event] = events_for_change(None, job(), "b")
    EventPublisher("topic-arn", client, "imagegen-events", client).publish(event)
    [(_, sns), (_, bus)] = client.calls
    assert json.loads(sns["Message"]) == json.loads(event.model_dump_json())
    [entry] = bus["Entries"]
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        "imagegen",
        "Image Job Accepted",
        "imagegen-events",
    )


def test_a_refused_bus_entry_raises_so_the_stream_delivers_it_again():
    client = _Recorder(failed_entries=1)
    [event] = events_for_change(None, job(), "b")
    with pytest.raises(RuntimeError, match="EventBridge refused"):
        EventPublisher("topic-arn", client, "bus", client).publish(event)


# --- contracts --------------------------------------------------------------------------------
def test_the_exported_schemas_are_current():
    folder = REPO / "docs" / "events"
    exported = {path.name: json.loads(path.read_text()) for path in folder.glob("*.schema.json")}
    assert exported == export_schemas(), (
        "stale: run `PYTHONPATH=functions python -m imagegen.events docs/events`"
    )


SAMPLES = sorted((EVENTS / "imagegen").glob("*.json"))


def test_there_is_a_sample_of_every_event_type():
    types = {json.loads(path.read_text())["detail"]["type"] for path in SAMPLES}
    assert types == {t.value for t in EventType}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_parses_with_its_contract(path: Path):
    envelope = json.loads(path.read_text())  # as EventBridge delivers it
    event = parse_event(envelope["detail"])
    assert envelope["source"] == "imagegen"
    assert envelope["detail-type"] == DETAIL_TYPES[EventType(event.type)]


def test_a_rejection_carries_the_apis_error_shape():
    event = rejection("order-7", "alice", "invalid_request", "the requested job is invalid", [{"field": "x"}])
    assert event.model_dump()["error"] == {
        "code": "invalid_request",
        "message": "the requested job is invalid",
        "details": [{"field": "x"}],
    }
    assert event.id == "rejected:alice:order-7"


def test_a_canceled_job_is_announced_refunded():
    from imagegen.lifecycle import canceled

    queued = job(debited_credits=24, credit_cost=24)
    ended = changed(queued, canceled(NOW))
    [event] = events_for_change(queued, ended, "b")
    assert (event.type, event.status, event.creditCost) == ("job.canceled", "CANCELED", 0)
    assert EventType(event.type).detail_type == "Image Job Canceled"
    assert message_attributes(event)["eventType"]["StringValue"] == "job.canceled"
