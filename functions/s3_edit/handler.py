"""Entry points of S3-triggered edits.

`lambda_handler`: S3 ObjectCreated notifications of the uploads bucket (prefix edits/) start
edit jobs. `write_result`: job events from the events topic (subscription filter source = s3)
become `<name>.result.json` next to the upload. Both only parse the event (s3_edit.parse) and
call imagegen.edits; every rule lives there.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from imagegen.edits.intake import EditIntake
from imagegen.edits.results import ResultWriter
from imagegen.runtime import services
from s3_edit.parse import job_events, upload_records

logger = Logger()
metrics = Metrics()

_METRICS = {"started": "EditsStarted", "rejected": "EditsRejected", "duplicate": "EditsRedelivered"}


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    svc = services()
    intake = EditIntake(svc.settings, svc.jobs, svc.starter, svc.uploads)
    outcomes = [intake.handle(record) for record in upload_records(event)]
    for outcome in outcomes:
        logger.info("upload handled", **asdict(outcome))
        if outcome.action in _METRICS:
            metrics.add_metric(name=_METRICS[outcome.action], unit=MetricUnit.Count, value=1)
    return {"outcomes": [asdict(outcome) for outcome in outcomes]}


@logger.inject_lambda_context(clear_state=True)
def write_result(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    svc = services()
    writer = ResultWriter(svc.jobs, svc.uploads)
    written = []
    for job_event in job_events(event):
        key = writer.write(job_event)
        logger.info("job event handled", job_id=job_event.jobId, source=job_event.source, result_key=key)
        if key:
            written.append(key)
    return {"written": written}
