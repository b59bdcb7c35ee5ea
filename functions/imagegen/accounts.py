"""Accounts: a credit balance per owner, and the ledger that explains every credit of it.

They live beside the keys, in the API keys table (an owner's keys, balance and ledger are one
account's data), as items with prefixed keys:

- `account#<owner>`: the balance, and the credits used per day and month (`used#2025-01-31`,
  `used#2025-01`), net of refunds, so `GET /v2/account` reads one item;
- `ledger#<owner>#<entry>`: one per grant (`grant#<id>`), debit (`debit#<jobId>`) and refund
  (`refund#<jobId>`), its signed `credits`. The sum of an owner's entries is their balance
  (`audit`);
- `idempotency#<owner>#<sha256 of the key>`: which job an Idempotency-Key made, for 24 hours.

Nothing here writes a balance on its own: the debit and the refund are items of the job's own
DynamoDB transaction (imagegen.jobs.JobStore), so a job is never stored without its debit nor
ended FAILED or CANCELED without its refund, and the ledger entry's condition (it must not
exist) makes a second debit or refund of a job impossible, whatever is retried or redelivered.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from imagegen.models import Job, iso, utc_now

ACCOUNT = "account#"
LEDGER = "ledger#"
IDEMPOTENCY = "idempotency#"
IDEMPOTENCY_WINDOW = timedelta(hours=24)
KEY = "key_hash"  # the API keys table's partition key


@dataclass(frozen=True)
class Account:
    owner: str
    balance: int
    used_today: int
    used_this_month: int


@dataclass(frozen=True)
class Difference:
    """An account whose balance is not the sum of its ledger."""

    owner: str
    balance: int
    ledger: int


@dataclass(frozen=True)
class Remembered:
    """What an Idempotency-Key made: its job and the hash of the request that made it."""

    job_id: str
    request_hash: str


def periods(ts: datetime) -> tuple[str, str]:
    """The usage counters a charge at `ts` counts in: its UTC day and month."""
    day = (iso(ts) or "")[:10]
    return day, day[:7]


def idempotency_item_key(owner: str, idempotency_key: str) -> str:
    # Hashed: the key is the client's text (up to 255 characters), the item key stays short.
    return f"{IDEMPOTENCY}{owner}#{hashlib.sha256(idempotency_key.encode()).hexdigest()}"


class Accounts:
    """Balances and ledger in the API keys table, through a DynamoDB resource."""

    def __init__(self, table_name: str, resource: Any, clock: Callable[[], datetime] = utc_now) -> None:
        self.table_name = table_name
        self.table = resource.Table(table_name)
        self.client = resource.meta.client  # the resource's client: takes plain Python values
        self.clock = clock

    # --- items of a job's transaction (imagegen.jobs.JobStore) --------------------------------
    def debit(self, job: Job) -> list[dict[str, Any]]:
        """Take `job.debited_credits` from the owner, on the condition that the balance covers
        it (the first item: its failure is InsufficientCredits), and write `debit#<jobId>`."""
        day, month = periods(job.created_at)
        cost = job.debited_credits
        return [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {KEY: ACCOUNT + job.owner},
                    "UpdateExpression": "SET balance = balance - :c ADD #day :c, #month :c",
                    "ConditionExpression": "balance >= :c",
                    "ExpressionAttributeNames": {"#day": f"used#{day}", "#month": f"used#{month}"},
                    "ExpressionAttributeValues": {":c": cost},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            self._entry(job.owner, f"debit#{job.job_id}", -cost, job.job_id),
        ]

    def refund(self, job: Job) -> list[dict[str, Any]]:
        """Give `job.debited_credits` back and write `refund#<jobId>` (once: it must not exist).
        The usage of the day and month it was debited in goes down by as much."""
        day, month = periods(job.created_at)
        credits = job.debited_credits
        return [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {KEY: ACCOUNT + job.owner},
                    "UpdateExpression": "SET balance = balance + :c ADD #day :m, #month :m",
                    "ConditionExpression": f"attribute_exists({KEY})",
                    "ExpressionAttributeNames": {"#day": f"used#{day}", "#month": f"used#{month}"},
                    "ExpressionAttributeValues": {":c": credits, ":m": -credits},
                }
            },
            self._entry(job.owner, f"refund#{job.job_id}", credits, job.job_id),
        ]

    def remember(self, job: Job) -> dict[str, Any]:
        """The job's Idempotency-Key, claimed for IDEMPOTENCY_WINDOW: the condition fails (with
        the record that holds it) while another request's claim is alive."""
        assert job.idempotency_key is not None and job.request_hash is not None
        now = self.clock()
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": {
                    KEY: idempotency_item_key(job.owner, job.idempotency_key),
                    "owner": job.owner,
                    "job_id": job.job_id,
                    "request_hash": job.request_hash,
                    "created_at": iso(now),
                    "expires_at": int((now + IDEMPOTENCY_WINDOW).timestamp()),
                },
                "ConditionExpression": f"attribute_not_exists({KEY}) OR expires_at < :now",
                "ExpressionAttributeValues": {":now": int(now.timestamp())},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def _entry(self, owner: str, entry: str, credits: int, job_id: str | None = None) -> dict[str, Any]:
        item: dict[str, Any] = {
            KEY: f"{LEDGER}{owner}#{entry}",
            "owner": owner,
            "entry": entry,
            "credits": credits,
            "created_at": iso(self.clock()),
        }
        if job_id:
            item["job_id"] = job_id
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": item,
                "ConditionExpression": f"attribute_not_exists({KEY})",
            }
        }

    # --- operator and API reads and writes ------------------------------------------------------
    def grant(self, owner: str, credits: int, grant_id: str | None = None) -> int:
        """Add `credits` to the owner's balance (opening the account if needed), with its ledger
        entry `grant#<grant_id>`, in one transaction. Returns the new balance."""
        if credits <= 0:
            raise ValueError("a grant is a positive number of credits")
        entry = f"grant#{grant_id or uuid.uuid4().hex}"
        self.client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {KEY: ACCOUNT + owner},
                        "UpdateExpression": "SET balance = if_not_exists(balance, :zero) + :c, #o = :o, "
                        "created_at = if_not_exists(created_at, :now)",
                        "ExpressionAttributeNames": {"#o": "owner"},
                        "ExpressionAttributeValues": {
                            ":c": credits,
                            ":zero": 0,
                            ":o": owner,
                            ":now": iso(self.clock()),
                        },
                    }
                },
                self._entry(owner, entry, credits),
            ]
        )
        return self.account(owner).balance

    def account(self, owner: str) -> Account:
        """The owner's balance and usage (zero for an owner never granted anything)."""
        item = self.table.get_item(Key={KEY: ACCOUNT + owner}, ConsistentRead=True).get("Item") or {}
        day, month = periods(self.clock())
        return Account(
            owner=owner,
            balance=int(item.get("balance", 0)),
            used_today=int(item.get(f"used#{day}", 0)),
            used_this_month=int(item.get(f"used#{month}", 0)),
        )

    def remembered(self, owner: str, idempotency_key: str) -> Remembered | None:
        """The live claim of an Idempotency-Key, if any."""
        item = self.table.get_item(
            Key={KEY: idempotency_item_key(owner, idempotency_key)}, ConsistentRead=True
        ).get("Item")
        if item is None or int(item["expires_at"]) < int(self.clock().timestamp()):
            return None
        return Remembered(str(item["job_id"]), str(item["request_hash"]))

    def ledger(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Ledger entries (all owners', or one's), read with a Scan: an operator's tool."""
        prefix = LEDGER + (f"{owner}#" if owner else "")
        return [_plain(item) for item in self._scan(prefix)]

    def audit(self) -> list[Difference]:
        """Every account whose balance differs from the sum of its ledger entries (an owner
        with entries and no account counts as a balance of 0)."""
        sums: dict[str, int] = defaultdict(int)
        for entry in self._scan(LEDGER):
            sums[str(entry["owner"])] += int(entry["credits"])
        balances = {str(item["owner"]): int(item.get("balance", 0)) for item in self._scan(ACCOUNT)}
        return [
            Difference(owner, balances.get(owner, 0), sums.get(owner, 0))
            for owner in sorted(set(sums) | set(balances))
            if balances.get(owner, 0) != sums.get(owner, 0)
        ]

    def _scan(self, prefix: str) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Attr

        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"FilterExpression": Attr(KEY).begins_with(prefix), "ConsistentRead": True}
        while True:
            page = self.table.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def balance_of(reason: dict[str, Any]) -> int:
    """The balance in a cancellation reason's item (ReturnValuesOnConditionCheckFailure): the
    error's item is not deserialized by boto3, so it comes as `{"N": "12"}`."""
    value = (reason.get("Item") or {}).get("balance")
    if isinstance(value, dict):
        value = value.get("N", 0)
    return int(Decimal(str(value))) if value is not None else 0


def attribute(reason: dict[str, Any], name: str) -> str | None:
    value = (reason.get("Item") or {}).get(name)
    if isinstance(value, dict):
        value = value.get("S")
    return str(value) if value is not None else None


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in item.items()}


class IdempotencyKeyClaimed(Exception):
    """The job's Idempotency-Key already made a job (imagegen.submission decides: replay or 422)."""

    def __init__(self, claim: Remembered) -> None:
        super().__init__(f"the Idempotency-Key already made job {claim.job_id}")
        self.claim = claim
