"""Why an upload cannot become a job, and how that is written next to it."""

from __future__ import annotations

from typing import Any

from imagegen.errors import ImagegenError, InvalidRequest


class UploadRejected(InvalidRequest):
    """The upload cannot become a job; the message and details go into `<name>.error.json`."""


class UnsupportedImage(UploadRejected):
    code = "unsupported_image"


class UploadTooLarge(UploadRejected):
    code = "upload_too_large"


class UploadsNotConfigured(ImagegenError):
    """A deploy mistake: the function is not configured for this bucket (never a user error)."""

    code = "configuration_error"


def error_document(error: ImagegenError, job_id: str | None = None) -> dict[str, Any]:
    """The API's error shape, plus the id of the FAILED job that records the rejection."""
    document: dict[str, Any] = {
        "error": {"code": error.code, "message": error.message, "details": error.details},
    }
    if job_id:
        document["jobId"] = job_id
    return document


def rejection_text(error: ImagegenError) -> str:
    """The job record's `error`: the message, then each detail, so GET /v2/jobs/{id} says why."""
    details = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in error.details)
    return f"{error.message} ({details})" if details else error.message
