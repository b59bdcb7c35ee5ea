"""The job table's change stream in, job events out: to the SNS topic and our EventBridge bus,
and to the webhook queue for the events a job's webhook asked for.

Records are handled in order, and the first that fails is reported with everything after it
(`batchItemFailures`): Lambda retries from there, so no change is skipped and a job's events
go out in the order its changes were made. A change announced twice carries the same event
id, which consumers dedupe by.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from imagegen.announcer import Announcer
from imagegen.jobs import job_from_item
from imagegen.runtime import services

logger = Logger()


def announce(record: DynamoDBRecord) -> None:
    svc = services()
    old_image, new_image = record.dynamodb.old_image, record.dynamodb.new_image  # type: ignore[union-attr]
    old = job_from_item(old_image) if old_image else None
    new = job_from_item(new_image) if new_image else None
    announcer = Announcer(svc.events, svc.webhook_queue, svc.settings.results_bucket)
    for event in announcer.announce(old, new):
        logger.info("job event published", job_id=event.jobId, event_id=event.id, type=event.type)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = [DynamoDBRecord(raw) for raw in event.get("Records", [])]
    for index, record in enumerate(records):
        try:
            announce(record)
        except Exception:
            logger.exception("announcing a job change failed; the stream will deliver it again")
            failed = [r.dynamodb.sequence_number for r in records[index:]]  # type: ignore[union-attr]
            return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed]}
    return {"batchItemFailures": []}
