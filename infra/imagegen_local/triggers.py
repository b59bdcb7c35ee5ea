"""The triggers moto does not drive, driven as Lambda's event source mappings drive them.

In the cloud the Lambda service polls a DynamoDB stream or an SQS queue and invokes a function
with a batch; it retries what the function reports failed (`batchItemFailures`) or everything
when the function errs. moto stores stream records and queue messages but invokes nothing for
them (its own stream mapping calls a function synchronously inside PutItem and forgets the
records either way), so here one thread per mapping does what the Lambda service does, through
moto's own APIs:

- StreamTrigger: GetRecords from the stream's shard, invoke with the stream event shape, move
  past a batch only once it succeeded; on a reported failure, retry from the first failed
  record after a backoff. (The cloud gives up after the mapping's retry limit and sends the
  batch to its on-failure destination; locally it keeps trying and logs every failure.)
- QueueTrigger: ReceiveMessage, invoke with the SQS event shape, delete what succeeded; the
  rest reappears after its visibility timeout, and moto moves a message to the queue's
  dead-letter queue after the redrive policy's maxReceiveCount, as SQS does.

- ScheduleTrigger: a scheduled EventBridge rule (`rate(...)`), which moto stores but never
  fires: every period, invoke the rule's Lambda targets with the Scheduled Event shape.

Invocations go through moto's Lambda API, so they run in the local runtime like every other.
EventBridge rules to SQS, SNS to SQS and SNS to Lambda are delivered by moto itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3

log = logging.getLogger("imagegen.local.triggers")
MAX_BACKOFF_SECONDS = 5.0


class _Trigger:
    name = "trigger"

    def __init__(self, function_name: str, region: str, idle_seconds: float) -> None:
        self.function_name = function_name
        self.region = region
        self.idle_seconds = idle_seconds
        self._lambda = boto3.client("lambda", region_name=region)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0  # invocations that failed or reported failed items

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"{self.name}:{self.function_name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                busy, failed = self.poll_once()
            except Exception:  # moto going away at shutdown, a bug of ours: keep the loop alive
                if self._stop.is_set():
                    return
                log.exception("%s -> %s: polling failed", self.name, self.function_name)
                busy, failed = False, True
            if failed:
                self.failures += 1
                backoff = min(MAX_BACKOFF_SECONDS, max(0.2, backoff * 2))
                self._stop.wait(backoff)
            else:
                backoff = 0.0
                if not busy:
                    self._stop.wait(self.idle_seconds)

    def poll_once(self) -> tuple[bool, bool]:
        """One round: (whether there was work, whether any of it failed)."""
        raise NotImplementedError

    def invoke(self, event: dict[str, Any]) -> set[str] | None:
        """Invoke the function; the identifiers it reported failed, or None when it erred."""
        answer = self._lambda.invoke(FunctionName=self.function_name, Payload=json.dumps(event).encode())
        payload = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            log.warning("%s raised %s", self.function_name, (payload or {}).get("errorMessage"))
            return None
        failures = (payload or {}).get("batchItemFailures") or []
        return {str(item["itemIdentifier"]) for item in failures}


class StreamTrigger(_Trigger):
    name = "stream"

    def __init__(
        self,
        stream_arn: str,
        function_name: str,
        region: str,
        batch_size: int = 100,
        idle_seconds: float = 0.05,
    ) -> None:
        super().__init__(function_name, region, idle_seconds)
        self.stream_arn = stream_arn
        self.batch_size = batch_size
        self._streams = boto3.client("dynamodbstreams", region_name=region)
        self._after: str | None = None  # sequence number of the last record handled

    def poll_once(self) -> tuple[bool, bool]:
        shard = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]
        position = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._after}
            if self._after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        iterator = self._streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard["ShardId"], **position
        )["ShardIterator"]
        records = self._streams.get_records(ShardIterator=iterator, Limit=self.batch_size)["Records"]
        if not records:
            return False, False
        event = {"Records": [self._lambda_record(r) for r in records]}
        failed = self.invoke(event)
        if failed is None:
            return True, True
        sequence = [r["dynamodb"]["SequenceNumber"] for r in records]
        done = sequence if not failed else sequence[: min(sequence.index(s) for s in failed if s in sequence)]
        if done:
            self._after = done[-1]
        return True, bool(failed)

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
        return {**record, "dynamodb": dynamodb, "eventSourceARN": self.stream_arn}


class QueueTrigger(_Trigger):
    name = "queue"

    def __init__(
        self,
        queue_url: str,
        function_name: str,
        region: str,
        batch_size: int = 10,
        idle_seconds: float = 0.05,
    ) -> None:
        super().__init__(function_name, region, idle_seconds)
        self.queue_url = queue_url
        self.batch_size = batch_size
        self._sqs = boto3.client("sqs", region_name=region)
        self.queue_arn = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def poll_once(self) -> tuple[bool, bool]:
        messages = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return False, False
        failed = self.invoke({"Records": [self._lambda_record(m) for m in messages]})
        if failed is None:
            return True, True  # nothing deleted: every message comes back after its visibility timeout
        for message in messages:
            if message["MessageId"] not in failed:
                self._sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return True, bool(failed)

    def _lambda_record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }


class ScheduleTrigger(_Trigger):
    """Fires a scheduled rule as EventBridge does: what it invokes and how often are read from
    the rule in moto (its ScheduleExpression and Lambda targets), so the rule is the one source."""

    name = "schedule"

    def __init__(self, rule_name: str, region: str) -> None:
        events = boto3.client("events", region_name=region)
        rule = events.describe_rule(Name=rule_name)
        targets = events.list_targets_by_rule(Rule=rule_name)["Targets"]
        functions = [t["Arn"].rsplit(":", 1)[1] for t in targets if ":lambda:" in t["Arn"]]
        if len(functions) != 1:
            raise ValueError(f"rule {rule_name} must have exactly one Lambda target, has {functions}")
        super().__init__(functions[0], region, rate_seconds(rule["ScheduleExpression"]))
        self.rule_arn = rule["Arn"]
        self.fired = 0  # scheduled events delivered so far

    def _run(self) -> None:
        # The first event comes one period after the rule is made, as in the cloud.
        while not self._stop.wait(self.idle_seconds):
            try:
                self.fire()
            except Exception:  # moto going away at shutdown, a bug of ours: the next period repeats
                if self._stop.is_set():
                    return
                log.exception("%s -> %s: firing failed", self.name, self.function_name)

    def fire(self) -> bool:
        """Deliver one Scheduled Event now; whether the function succeeded."""
        self.fired += 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.rule_arn.split(":")[4],
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [self.rule_arn],
            "detail": {},
        }
        ok = self.invoke(event) is not None
        if not ok:
            self.failures += 1
        return ok


def rate_seconds(expression: str) -> float:
    """`rate(5 minutes)` -> 300.0 (the rate expressions EventBridge accepts)."""
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression.strip())
    if match is None:
        raise ValueError(f"not a rate expression: {expression!r}")
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
    return float(int(match.group(1)) * unit)
