"""`<name>.result.json` next to an upload once its job has ended, so a pipeline can wait on
S3 alone. Fed by the job events (subscription filter source = s3), so the workflow knows
nothing of uploads; the upload's location comes from the job record."""

from __future__ import annotations

from typing import Any

from imagegen.edits.bucket import UploadsBucket
from imagegen.events import TERMINAL_TYPES, JobEvent
from imagegen.models import Job, JobSource
from imagegen.ports import JobRepository


def result_document(job: Job, bucket: str) -> dict[str, Any]:
    """`<name>.result.json`: enough for a pipeline that waits on S3 alone."""
    return {
        "jobId": job.job_id,
        "status": job.status.value,
        "resultKeys": job.result_keys,
        "bucket": bucket,
        "error": job.error,
        "creditCost": job.charged_credits,
    }


class ResultWriter:
    def __init__(self, store: JobRepository, uploads: UploadsBucket) -> None:
        self.store = store
        self.uploads = uploads

    def write(self, event: JobEvent) -> str | None:
        """Returns the key written, or None when the event is not about an upload."""
        if event.source != JobSource.S3.value or event.type not in TERMINAL_TYPES:
            return None
        job = self.store.get(event.jobId)
        bucket, key = job.origin.get("bucket"), job.origin.get("result_key")
        if not (bucket and key) or not job.status.is_terminal:
            return None
        self.uploads.put_json(key, result_document(job, event.bucket), bucket=bucket)
        return key
