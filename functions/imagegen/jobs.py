"""The job store: one DynamoDB item per job, written with optimistic locking.

Every change goes through `update`, which re-reads, applies a pure function and writes back on
the condition that nobody wrote in between. Retried workflow steps and redelivered events can
then never move a job backwards or finish it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from imagegen.errors import JobNotFound
from imagegen.models import Job, iso, utc_now

MAX_CONFLICT_RETRIES = 8

# A sparse index of the jobs still open: only a QUEUED or PROCESSING job carries its keys, so
# the sweeper reads just those, oldest deadline first. A job still open this long after its
# deadline has no live execution left to end it (an execution outlives the deadline by at most
# workflow_definition.EXECUTION_MARGIN_SECONDS, checked by a test): the workflow never
# started (a crash between writing the job and starting it) or was lost.
OPEN_JOBS_INDEX = "open-jobs-by-sweep-time"
OPEN_MARKER = "open_marker"
SWEEP_AFTER = "sweep_after"
SWEEP_GRACE = timedelta(minutes=20)


class JobStore:
    """The jobs table (imagegen.ports.JobRepository), through a DynamoDB resource the runtime
    builds with bounded timeouts."""

    def __init__(self, table_name: str, resource: Any) -> None:
        self.table = resource.Table(table_name)

    def create(self, job: Job) -> bool:
        """Write a new job. False when another request already wrote a job with this id (a
        redelivery); True when this call's job is stored, also when botocore retried a put whose
        answer was lost and the retry met the record the first attempt wrote (its token is ours)."""
        try:
            self.table.put_item(Item=_to_item(job), ConditionExpression="attribute_not_exists(job_id)")
        except ClientError as exc:
            if _is_condition_failure(exc):
                return self.get(job.job_id).request_token == job.request_token
            raise
        return True

    def get(self, job_id: str) -> Job:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise JobNotFound(f"job {job_id} not found")
        return _from_item(item)

    def overdue(self, now: datetime, limit: int = 100) -> list[str]:
        """Ids of open jobs whose sweep time has passed, oldest first."""
        answer = self.table.query(
            IndexName=OPEN_JOBS_INDEX,
            KeyConditionExpression=Key(OPEN_MARKER).eq("open") & Key(SWEEP_AFTER).lt(iso(now)),
            Limit=limit,
        )
        return [str(item["job_id"]) for item in answer.get("Items", [])]

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> tuple[Job, bool]:
        """Apply `change` to the current record and store the result.

        `change` returns the new job, or None to leave the record as it is (e.g. it is already
        terminal). Returns the job as stored and whether this call changed it.
        """
        for _ in range(MAX_CONFLICT_RETRIES):
            current = self.get(job_id)
            changed = change(current.model_copy(deep=True))
            if changed is None:
                return current, False
            changed.version = current.version + 1
            changed.updated_at = utc_now()
            try:
                self.table.put_item(
                    Item=_to_item(changed),
                    ConditionExpression="#v = :v",
                    ExpressionAttributeNames={"#v": "version"},
                    ExpressionAttributeValues={":v": current.version},
                )
            except ClientError as exc:
                if _is_condition_failure(exc):
                    continue  # somebody else wrote first: read again and re-apply
                raise
            return changed, True
        raise RuntimeError(f"job {job_id}: too many concurrent updates")


def _to_item(job: Job) -> dict[str, Any]:
    item = job.model_dump(mode="json", exclude_none=True)
    if not job.status.is_terminal:  # every write is a full put: a terminal job drops out of the index
        item[OPEN_MARKER] = "open"
        item[SWEEP_AFTER] = iso(job.deadline_at + SWEEP_GRACE)
    return item


def _from_item(item: dict[str, Any]) -> Job:
    return Job.model_validate(_plain(item))


def _plain(value: Any) -> Any:
    """DynamoDB hands numbers back as Decimal; the model wants ints."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
