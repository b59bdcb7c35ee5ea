"""The two trigger payloads of S3 edits, parsed into what imagegen.edits works with.

Kept apart from handler.py so tests and tools can parse samples without creating the
handler's Powertools Logger and Metrics (which read their configuration when created).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from imagegen.edits.intake import UploadRecord
from imagegen.events import JobEvent, parse_job_event


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

    return [parse_job_event(record.sns.message) for record in SNSEvent(event).records]
