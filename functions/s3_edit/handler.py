"""Entry points of S3-triggered edits.

`lambda_handler`: S3 ObjectCreated notifications of the uploads bucket (prefix edits/) start
edit jobs. `write_result`: job events from the events topic (subscription filter source = s3)
become `<name>.result.json` next to the upload. Both only parse the event and call
imagegen.uploads; every rule lives there.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imagegen.events import JobEvent
from imagegen.runtime import services
from imagegen.uploads import EditIntake, ResultWriter, UploadRecord, signing_s3_client

logger = Logger()
metrics = Metrics()

_METRICS = {"started": "EditsStarted", "rejected": "EditsRejected", "duplicate": "EditsRedelivered"}


@lru_cache(maxsize=1)
def s3() -> Any:
    """One S3 client per cold start (it depends on no setting), SigV4 for presigned URLs."""
    return signing_s3_client()


def upload_records(event: dict[str, Any]) -> list[UploadRecord]:
    """S3 notification -> records. The s3:TestEvent S3 sends on configuration has no Records."""
    from aws_lambda_powertools.utilities.data_classes import S3Event

    if not event.get("Records"):
        return []
    records = []
    for record in S3Event(event).records:
        s3_object = record.s3.get_object
        records.append(
            UploadRecord(
                bucket=record.s3.bucket.name,
                key=unquote_plus(s3_object.key),  # S3 URL-encodes keys in events ('+' is a space)
                size=s3_object.size,
                version_id=s3_object.version_id,
                sequencer=s3_object.get("sequencer"),
                etag=s3_object.get("eTag"),
                event_name=record.event_name,
            )
        )
    return records


def job_events(event: dict[str, Any]) -> list[JobEvent]:
    """SNS -> Lambda envelope -> the published JobEvents (the message body is the contract)."""
    from aws_lambda_powertools.utilities.data_classes import SNSEvent

    return [JobEvent.model_validate_json(record.sns.message) for record in SNSEvent(event).records]


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    svc = services()
    intake = EditIntake(svc.settings, svc.jobs, svc.starter, svc.events, s3_client=s3())
    outcomes = [intake.handle(record) for record in upload_records(event)]
    for outcome in outcomes:
        logger.info("upload handled", **asdict(outcome))
        if outcome.action in _METRICS:
            metrics.add_metric(name=_METRICS[outcome.action], unit=MetricUnit.Count, value=1)
    return {"outcomes": [asdict(outcome) for outcome in outcomes]}


@logger.inject_lambda_context(clear_state=True)
def write_result(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    writer = ResultWriter(services().jobs, s3_client=s3())
    written = []
    for job_event in job_events(event):
        key = writer.write(job_event)
        logger.info("job event handled", job_id=job_event.jobId, source=job_event.source, result_key=key)
        if key:
            written.append(key)
    return {"written": written}
