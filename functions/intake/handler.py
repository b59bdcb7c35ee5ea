"""The intake queue in, jobs out: each message is a requested job (imagegen.requested).

Powertools' batch processing reports the messages that failed (`batchItemFailures`), so only
they are delivered again; an invalid request is not a failure (it is answered with a
`job.rejected` event and removed).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from imagegen.requested import RequestIntake
from imagegen.runtime import services

logger = Logger()
processor = BatchProcessor(event_type=EventType.SQS)


def request_job(record: SQSRecord) -> dict[str, Any]:
    svc = services()
    outcome = RequestIntake(svc.settings, svc.jobs, svc.starter, svc.events).handle(record.body)
    logger.info("job requested", message_id=record.message_id, **asdict(outcome))
    return asdict(outcome)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[return-value]
        event=event, record_handler=request_job, processor=processor, context=context
    )
