"""The DynamoDB job store's exact error paths, through botocore's Stubber (no moto, no network):
what it writes when DynamoDB refuses a record. tests/integration runs it against moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from botocore.stub import ANY, Stubber

from imagegen.errors import JobRecordRefused, JobRecordUnwritable
from imagegen.jobs import OPEN_MARKER, SWEEP_AFTER, JobStore, _to_item
from imagegen.lifecycle import failed, new_job
from imagegen.models import GenerateRequest, Job, JobStatus
from imagegen.settings import Settings

SETTINGS = Settings(jobs_table="jobs", api_keys_table="k", results_bucket="r", events_topic_arn="t")
TOO_LARGE = "Item size has exceeded the maximum allowed size"


@pytest.fixture
def stubbed() -> Iterator[tuple[JobStore, Stubber]]:
    resource = boto3.resource(
        "dynamodb", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    store = JobStore("jobs", resource)
    with Stubber(store.table.meta.client) as stubber:
        yield store, stubber
        stubber.assert_no_pending_responses()


def a_job() -> Job:
    return new_job(GenerateRequest(prompt="a kite", model="gpt-image-1.5"), "alice", SETTINGS)


def serve(stubber: Stubber, job: Job) -> None:
    item = {k: TypeSerializer().serialize(v) for k, v in _to_item(job).items()}
    stubber.add_response(
        "get_item", {"Item": item}, {"TableName": "jobs", "Key": ANY, "ConsistentRead": True}
    )


def minimal_failure_write() -> dict[str, Any]:
    """The failure's attributes only, the open-jobs index keys removed, on the version read."""
    return {
        "TableName": "jobs",
        "Key": ANY,
        "UpdateExpression": "SET #status = :status, #error = :error, #completed_at = :completed_at, "
        f"#updated_at = :updated_at, #version = :version REMOVE {OPEN_MARKER}, {SWEEP_AFTER}",
        "ConditionExpression": "#version = :read",
        "ExpressionAttributeNames": ANY,
        "ExpressionAttributeValues": ANY,
    }


def test_a_failure_dynamodb_refuses_is_written_in_place_with_a_minimal_write(stubbed):
    store, stubber = stubbed
    job = a_job()
    serve(stubber, job)
    stubber.add_client_error("put_item", service_error_code="ValidationException", service_message=TOO_LARGE)
    stubber.add_response("update_item", {}, minimal_failure_write())

    stored, changed = store.update(job.job_id, failed("the upstream said no"))

    assert changed and stored.status is JobStatus.FAILED and stored.version == job.version + 1
    assert stored.error == "the upstream said no"


def test_any_other_change_dynamodb_refuses_is_refused_and_nothing_is_written(stubbed):
    store, stubber = stubbed
    job = a_job()
    serve(stubber, job)
    stubber.add_client_error("put_item", service_error_code="ValidationException", service_message=TOO_LARGE)

    with pytest.raises(JobRecordRefused, match="DynamoDB refused the record: Item size has exceeded"):
        store.update(job.job_id, lambda j: j.model_copy(update={"progress": 50}))


def test_when_even_the_failure_is_refused_the_store_says_so_instead_of_looping(stubbed):
    store, stubber = stubbed
    job = a_job()
    serve(stubber, job)
    stubber.add_client_error("put_item", service_error_code="ValidationException", service_message=TOO_LARGE)
    stubber.add_client_error(
        "update_item", service_error_code="ValidationException", service_message=TOO_LARGE
    )

    with pytest.raises(JobRecordUnwritable):
        store.update(job.job_id, failed("the upstream said no"))
