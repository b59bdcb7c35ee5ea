"""The webhook queue in, signed deliveries out (imagegen.webhooks). A delivery to retry goes
back on the queue with a delay, so nothing runs while it waits."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from imagegen.runtime import services
from imagegen.webhooks import WebhookMessage

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def deliver(record: SQSRecord) -> str:
    svc = services()
    message = WebhookMessage.model_validate_json(record.body)
    delivery = svc.webhook_deliverer.deliver(message)
    if delivery.outcome == "retry":
        svc.webhook_queue.send(
            svc.webhook_deliverer.next_message(message), delay_seconds=delivery.retry_in_seconds
        )
    logger.info(
        "webhook delivery",
        job_id=message.job_event.jobId,
        event_id=message.job_event.id,
        attempt=message.attempt,
        outcome=delivery.outcome,
        retry_in_seconds=delivery.retry_in_seconds,
        error=delivery.error,
    )
    return delivery.outcome


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[return-value]
        event=event, record_handler=deliver, processor=processor, context=context
    )
