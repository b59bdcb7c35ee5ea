"""The job store: one DynamoDB item per job, written with optimistic locking.

Every change goes through `update`, which re-reads, applies a pure function and writes back on
the condition that nobody wrote in between. Retried workflow steps and redelivered events can
then never move a job backwards or finish it twice.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from imagegen.accounts import Accounts, IdempotencyKeyClaimed, Remembered, attribute, balance_of
from imagegen.errors import (
    InsufficientCredits,
    InvalidRequest,
    JobNotFound,
    JobRecordRefused,
    JobRecordUnwritable,
)
from imagegen.lifecycle import failed
from imagegen.models import Job, JobStatus, iso, utc_now

MAX_CONFLICT_RETRIES = 8

# Record sizes, measured as compact UTF-8 JSON of the item (record_bytes), which counts more
# than DynamoDB does (quotes, commas): its limit is 400 KB per item, names and values.
# - A new job may take NEW_JOB_MAX_BYTES: submission refuses a bigger request with a 400 before
#   anything is written. A prompt at its limit and 16 long input URLs fit with room to spare.
# - Any write may take JOB_MAX_BYTES. The workflow adds what upstreams answer (task ids, image
#   URLs, messages); a change that would take the record past this budget is not written and
#   the job is failed instead, a write that fits in the room left below DynamoDB's limit.
NEW_JOB_MAX_BYTES = 64 * 1024
JOB_MAX_BYTES = 256 * 1024

# A sparse index of the jobs still open: only a QUEUED or PROCESSING job carries its keys, so
# the sweeper reads just those, oldest deadline first. A job still open this long after its
# deadline has no live execution left to end it (an execution outlives the deadline by at most
# workflow_definition.EXECUTION_MARGIN_SECONDS, checked by a test): the workflow never
# started (a crash between writing the job and starting it) or was lost.
OPEN_JOBS_INDEX = "open-jobs-by-sweep-time"
OPEN_MARKER = "open_marker"
SWEEP_AFTER = "sweep_after"
SWEEP_GRACE = timedelta(minutes=20)
# Each owner's jobs, newest first (GET /v2/jobs): partition `owner`, sort `listed_at` (the
# creation time, ISO 8601 with milliseconds: sorts as it reads). It projects whole records, so a
# page (and its status filter) is one Query, with no read of the table per job.
OWNER_INDEX = "jobs-by-owner"
LISTED_AT = "listed_at"
_CURSOR_KEYS = {"job_id", "owner", LISTED_AT}
MAX_LIST_QUERIES = 10  # a status filter skips records; a page ends after this many reads


class JobStore:
    """The jobs table (imagegen.ports.JobRepository), through a DynamoDB resource the runtime
    builds with bounded timeouts."""

    def __init__(self, table_name: str, resource: Any, accounts: Accounts | None = None) -> None:
        self.table = resource.Table(table_name)
        self.client = resource.meta.client
        # With accounts, a new job is debited and a job ending FAILED or CANCELED refunded in
        # the same transaction as its write (imagegen.accounts).
        self.accounts = accounts

    def create(self, job: Job) -> bool:
        """Write a new job. False when another request already wrote a job with this id (a
        redelivery); True when this call's job is stored, also when botocore retried a put whose
        answer was lost and the retry met the record the first attempt wrote (its token is ours).

        With accounts, an open job with a cost is debited in the same transaction (it sets
        `job.debited_credits`): InsufficientCredits when the balance does not cover it. A job
        with an Idempotency-Key claims it there too: IdempotencyKeyClaimed when it is taken."""
        extra: list[dict[str, Any]] = []
        if self.accounts is not None:
            if job.credit_cost > 0 and not job.status.is_terminal:
                job.debited_credits = job.credit_cost
                extra += self.accounts.debit(job)
            if job.idempotency_key:
                extra.append(self.accounts.remember(job))
        if not extra:
            try:
                self.table.put_item(Item=_to_item(job), ConditionExpression="attribute_not_exists(job_id)")
            except ClientError as exc:
                if _is_condition_failure(exc):
                    return self.get(job.job_id).request_token == job.request_token
                raise
            return True
        put = {
            "Put": {
                "TableName": self.table.name,
                "Item": _to_item(job),
                "ConditionExpression": "attribute_not_exists(job_id)",
            }
        }
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                self.client.transact_write_items(TransactItems=[put, *extra])
                return True
            except ClientError as exc:
                reasons = _cancellation_reasons(exc)
                if not reasons:
                    raise
                if reasons[0].get("Code") == "ConditionalCheckFailed":
                    return self.get(job.job_id).request_token == job.request_token
                for item, reason in zip(extra, reasons[1:], strict=False):
                    if reason.get("Code") != "ConditionalCheckFailed":
                        continue
                    if "Update" in item:  # the balance does not cover the cost
                        raise InsufficientCredits(balance_of(reason), job.debited_credits) from None
                    if item["Put"]["Item"]["key_hash"].startswith("idempotency#"):
                        claim = Remembered(
                            attribute(reason, "job_id") or "", attribute(reason, "request_hash") or ""
                        )
                        raise IdempotencyKeyClaimed(claim) from None
                if any(r.get("Code") == "TransactionConflict" for r in reasons):
                    # Another transaction on the same account or key was in flight: try again.
                    time.sleep(random.uniform(0, 0.05 * 2**attempt))
                    continue
                raise
        raise RuntimeError(f"job {job.job_id}: too many concurrent transactions")

    def get(self, job_id: str) -> Job:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise JobNotFound(f"job {job_id} not found")
        return job_from_item(item)

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

        A change the record cannot hold (over JOB_MAX_BYTES, or refused by DynamoDB or boto3
        as too large or invalid) is never written. If the change fails the job, the failure is
        written on the current record by a minimal write (see fail_in_place), which raises
        JobRecordUnwritable only if even that is refused; any other such change raises
        JobRecordRefused, and its caller fails the job.
        """
        for _ in range(MAX_CONFLICT_RETRIES):
            current = self.get(job_id)
            changed = change(current.model_copy(deep=True))
            if changed is None:
                return current, False
            try:
                try:
                    check_fits(changed)
                    return self._put(current, changed), True
                except JobRecordRefused as refused:
                    return self._fail_in_place(current, fail_in_place(current, changed, refused)), True
            except _Conflict:
                continue  # somebody else wrote first: read again and re-apply
        raise RuntimeError(f"job {job_id}: too many concurrent updates")

    def list_owned(
        self, owner: str, limit: int, cursor: str | None = None, status: JobStatus | None = None
    ) -> tuple[list[Job], str | None]:
        """A page of the owner's jobs, newest first, and the cursor of the next page (None at
        the end). A cursor is opaque to callers, and only ever the owner's own."""
        kwargs: dict[str, Any] = {
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": Key("owner").eq(owner),
            "ScanIndexForward": False,
        }
        if status is not None:
            kwargs["FilterExpression"] = "#s = :s"
            kwargs["ExpressionAttributeNames"] = {"#s": "status"}
            kwargs["ExpressionAttributeValues"] = {":s": status.value}
        start = decode_cursor(cursor, owner) if cursor else None
        jobs: list[Job] = []
        for _ in range(MAX_LIST_QUERIES):
            if start:
                kwargs["ExclusiveStartKey"] = start
            # At most what the page still needs: the last key read is then the page's last.
            page = self.table.query(**kwargs, Limit=limit - len(jobs))
            jobs.extend(job_from_item(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start or len(jobs) >= limit:
                break
        return jobs, encode_cursor(start) if start else None

    def count_by_status(self, owner: str) -> dict[str, int]:
        """How many of the owner's (unexpired) jobs are in each status."""
        counts = dict.fromkeys((s.value for s in JobStatus), 0)
        kwargs: dict[str, Any] = {
            "IndexName": OWNER_INDEX,
            "KeyConditionExpression": Key("owner").eq(owner),
            "ProjectionExpression": "#s",
            "ExpressionAttributeNames": {"#s": "status"},
        }
        while True:
            page = self.table.query(**kwargs)
            for item in page.get("Items", []):
                counts[str(item["status"])] = counts.get(str(item["status"]), 0) + 1
            if "LastEvaluatedKey" not in page:
                return counts
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _refund(self, current: Job, changed: Job) -> list[dict[str, Any]]:
        """The refund a change carries: the one that ends a debited job FAILED or CANCELED."""
        if self.accounts is None or current.status.is_terminal or not changed.status.is_refunded:
            return []
        return self.accounts.refund(changed) if changed.debited_credits > 0 else []

    def _put(self, current: Job, changed: Job) -> Job:
        changed.version = current.version + 1
        changed.updated_at = utc_now()
        condition = {
            "ConditionExpression": "#v = :v",
            "ExpressionAttributeNames": {"#v": "version"},
            "ExpressionAttributeValues": {":v": current.version},
        }
        refund = self._refund(current, changed)
        if refund:
            put = {"Put": {"TableName": self.table.name, "Item": _to_item(changed), **condition}}
            self._write(lambda: self.client.transact_write_items(TransactItems=[put, *refund]))
        else:
            self._write(lambda: self.table.put_item(Item=_to_item(changed), **condition))
        return changed

    def _fail_in_place(self, current: Job, ended: Job) -> Job:
        """Write the failure touching only its own attributes (and dropping the job from the
        open-jobs index), conditional on the version read: it fits wherever the record did."""
        ended.version = current.version + 1
        ended.updated_at = utc_now()
        item = _to_item(ended)
        names = ("status", "error", "completed_at", "updated_at", "version")
        update = {
            "Key": {"job_id": current.job_id},
            "UpdateExpression": "SET "
            + ", ".join(f"#{n} = :{n}" for n in names)
            + f" REMOVE {OPEN_MARKER}, {SWEEP_AFTER}",
            "ConditionExpression": "#version = :read",
            "ExpressionAttributeNames": {f"#{n}": n for n in names},
            "ExpressionAttributeValues": {**{f":{n}": item[n] for n in names}, ":read": current.version},
        }
        refund = self._refund(current, ended)
        try:
            if refund:
                transaction = [{"Update": {"TableName": self.table.name, **update}}, *refund]
                self._write(lambda: self.client.transact_write_items(TransactItems=transaction))
            else:
                self._write(lambda: self.table.update_item(**update))
        except JobRecordRefused as refused:
            raise JobRecordUnwritable(
                f"job {current.job_id} could not be failed ({ended.error}): {refused.problem}"
            ) from None
        return ended

    @staticmethod
    def _write(call: Callable[[], Any]) -> None:
        try:
            call()
        except (TypeError, ValueError, ArithmeticError) as exc:
            # boto3 could not serialize the item: a number past DynamoDB's 38 digits, text that
            # is not Unicode. Nothing was sent; like DynamoDB's refusal, the job cannot hold it.
            raise JobRecordRefused(f"the record could not be serialized ({type(exc).__name__})") from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ConditionalCheckFailedException":
                raise _Conflict from None
            reasons = _cancellation_reasons(exc)  # a job's write with its refund
            if reasons and (
                reasons[0].get("Code") == "ConditionalCheckFailed"
                or any(r.get("Code") == "TransactionConflict" for r in reasons)
            ):
                raise _Conflict from None
            if any(r.get("Code") == "ValidationError" for r in reasons):
                raise JobRecordRefused("DynamoDB refused the record") from None
            if error.get("Code") == "ValidationException":  # too large, or not a valid item
                raise JobRecordRefused(
                    f"DynamoDB refused the record: {str(error.get('Message'))[:200]}"
                ) from None
            raise


class _Conflict(Exception):
    """Another writer changed the record since it was read."""


def record_bytes(job: Job) -> int:
    """The size of the job's item, counted as its compact UTF-8 JSON: at least DynamoDB's count."""
    text = json.dumps(_to_item(job), ensure_ascii=False, separators=(",", ":"))
    return len(text.encode("utf-8", "surrogatepass"))


def check_fits(job: Job) -> None:
    """Raise JobRecordRefused when the job's record is over JOB_MAX_BYTES."""
    size = record_bytes(job)
    if size > JOB_MAX_BYTES:
        raise JobRecordRefused(f"its record would take {size} bytes, over the {JOB_MAX_BYTES}-byte limit")


def fail_in_place(current: Job, changed: Job, refused: JobRecordRefused) -> Job:
    """What a store writes instead of a change the record cannot hold: when the change fails the
    job, the current record with the failure (its reason, its time) and nothing else of the
    change; any other change is refused (`refused` is raised)."""
    if changed.status is not JobStatus.FAILED or current.status.is_terminal:
        raise refused
    ended = failed(changed.error or refused.message, changed.completed_at)(current.model_copy(deep=True))
    assert ended is not None  # current is open
    return ended


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, owner: str) -> dict[str, Any]:
    """The index key a cursor stands for; InvalidRequest for anything else, or another owner's."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, RecursionError):
        key = None
    if (
        not isinstance(key, dict)
        or set(key) != _CURSOR_KEYS
        or not all(isinstance(v, str) for v in key.values())
        or key["owner"] != owner
    ):
        raise InvalidRequest(
            "cursor is not valid", details=[{"field": "cursor", "message": "not a cursor we gave"}]
        )
    return key


def _cancellation_reasons(exc: ClientError) -> list[dict[str, Any]]:
    if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return []
    return list(exc.response.get("CancellationReasons") or [])


def _to_item(job: Job) -> dict[str, Any]:
    item = job.model_dump(mode="json", exclude_none=True)
    item[LISTED_AT] = iso(job.created_at)
    if not job.status.is_terminal:  # every write is a full put: a terminal job drops out of the index
        item[OPEN_MARKER] = "open"
        item[SWEEP_AFTER] = iso(job.deadline_at + SWEEP_GRACE)
    return item


def job_from_item(item: dict[str, Any]) -> Job:
    """A job from its DynamoDB item (as the table, or a stream record's image, holds it)."""
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
