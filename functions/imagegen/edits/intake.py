"""The intake: upload records in, edit jobs out, through the API's own submission path.

A request goes through `new_job` + `submit_job`: same validation, credits, job record and
workflow as a POST. Inputs reach the upstream as presigned GET URLs of the exact object
version, valid until past the job's deadline. The job id is derived from bucket, key and
version (or sequencer), so a redelivered S3 event finds its job and starts nothing.

A bad upload gets `<name>.error.json` (the API's error shape) and a FAILED job record, whose
`job.failed` event goes out like any other (from the job table's change stream).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from imagegen.edits.bucket import UploadsBucket
from imagegen.edits.errors import (
    UnsupportedImage,
    UploadRejected,
    UploadsNotConfigured,
    UploadTooLarge,
    error_document,
    rejection_text,
)
from imagegen.edits.keys import UploadKind, classify, edit_job_id, error_key, result_key
from imagegen.edits.requests import MAX_MANIFEST_BYTES, body_from_metadata, parse_manifest, validated_request
from imagegen.errors import ImagegenError, InvalidRequest, JobNotFound, ServiceUnavailable
from imagegen.images import SNIFF_BYTES, sniff_image
from imagegen.lifecycle import new_job, rejected_job
from imagegen.models import GenerateRequest, JobSource
from imagegen.ports import JobRepository, WorkflowStarterPort
from imagegen.settings import Settings
from imagegen.submission import submit_job

# Presigned input URLs outlive the job's deadline by this much: the upstream may fetch late.
PRESIGN_MARGIN_SECONDS = 300


@dataclass(frozen=True)
class UploadRecord:
    """One S3 ObjectCreated notification, parsed by the handler (key already URL-decoded)."""

    bucket: str
    key: str
    size: int | None = None
    version_id: str | None = None
    sequencer: str | None = None
    etag: str | None = None
    event_name: str = "ObjectCreated:Put"


@dataclass(frozen=True)
class Outcome:
    """What became of one record: started | duplicate | rejected | ignored."""

    key: str
    kind: UploadKind
    action: Literal["started", "duplicate", "rejected", "ignored"]
    job_id: str | None = None
    error_code: str | None = None


class EditIntake:
    """Turns upload records into edit jobs through the API's submission path."""

    def __init__(
        self,
        settings: Settings,
        store: JobRepository,
        starter: WorkflowStarterPort,
        uploads: UploadsBucket,
    ) -> None:
        if not settings.uploads_bucket or not settings.uploads_owner:
            raise UploadsNotConfigured("S3 edits need IMAGEGEN_UPLOADS_BUCKET and IMAGEGEN_UPLOADS_OWNER")
        self.settings = settings
        self.store = store
        self.starter = starter
        self.uploads = uploads

    def handle(self, record: UploadRecord) -> Outcome:
        kind = classify(record.key)
        if kind is UploadKind.IGNORED or not record.event_name.startswith("ObjectCreated"):
            return Outcome(record.key, kind, "ignored")
        if record.bucket != self.settings.uploads_bucket:
            # Raised, not swallowed: an S3 notification from another bucket is a wiring mistake.
            raise UploadsNotConfigured(f"bucket {record.bucket!r} is not the uploads bucket")
        head = self.uploads.head(record.key, record.version_id)
        revision = record.version_id or record.sequencer or (head or {}).get("VersionId") or record.etag or ""
        version = record.version_id or (head or {}).get("VersionId")
        job_id = edit_job_id(record.bucket, record.key, revision)
        if self._job_exists(job_id):
            return Outcome(record.key, kind, "duplicate", job_id)  # a redelivery: its job is underway
        origin = {
            "kind": kind.value,
            "bucket": record.bucket,
            "key": record.key,
            "result_key": result_key(record.key),
            "error_key": error_key(record.key),
        }
        if version:
            origin["version"] = version
        try:
            if head is None:
                raise UploadRejected(f"{record.key} no longer exists in the uploads bucket")
            if kind is UploadKind.IMAGE:
                request = self._request_from_image(record.key, head)
            else:
                request = self._request_from_manifest(record.key, head)
            job = new_job(request, self.settings.uploads_owner, self.settings, JobSource.S3, job_id, origin)
            _, created = submit_job(
                job, self.store, self.starter, self.settings.allow_loopback_urls, self.settings.provider_chain
            )
        except InvalidRequest as exc:  # ours, validation, the SSRF guard, what no provider can serve
            return self._reject(kind, job_id, origin, exc)
        except ServiceUnavailable as exc:
            return self._start_failed(kind, job_id, origin, exc)
        return Outcome(record.key, kind, "started" if created else "duplicate", job_id)

    # --- requests -----------------------------------------------------------------------------
    def _request_from_image(self, key: str, head: dict[str, Any]) -> GenerateRequest:
        self._check_image(key, head)
        body = body_from_metadata(head.get("Metadata") or {})
        return validated_request(body, [self._presign(key, head.get("VersionId"))], "the upload's metadata")

    def _request_from_manifest(self, key: str, head: dict[str, Any]) -> GenerateRequest:
        if int(head.get("ContentLength", 0)) > MAX_MANIFEST_BYTES:
            raise UploadTooLarge(f"the manifest is over the {MAX_MANIFEST_BYTES // 1024} KiB limit")
        manifest = parse_manifest(self.uploads.read(key, head.get("VersionId")))
        urls: list[str] = []
        problems: list[dict[str, Any]] = []
        for index, image_key in enumerate(manifest.images):
            image_head = self.uploads.head(image_key)
            try:
                if image_head is None:
                    raise UploadRejected(f"no object {image_key!r} in the uploads bucket")
                self._check_image(image_key, image_head)
            except UploadRejected as exc:
                problems.append({"field": f"images.{index}", "message": exc.message})
                continue
            urls.append(self._presign(image_key, image_head.get("VersionId")))
        if problems:
            raise UploadRejected("the manifest names images that cannot be used", problems)
        body = manifest.model_dump(include={"prompt", "model", "gptImageParams"}, exclude_none=True)
        return validated_request(body, urls, "the manifest")

    def _check_image(self, key: str, head: dict[str, Any]) -> None:
        """Size from HEAD, then the first bytes only: nothing is downloaded before both pass."""
        size, limit = int(head.get("ContentLength", 0)), self.settings.max_upload_bytes
        if size > limit:
            raise UploadTooLarge(f"{key} is {size} bytes; the limit is {limit} bytes")
        byte_range = f"bytes=0-{SNIFF_BYTES - 1}"
        first_bytes = self.uploads.read(key, head.get("VersionId"), byte_range) if size else b""
        if sniff_image(first_bytes) is None:
            raise UnsupportedImage(f"{key} is not a PNG, JPEG or WebP image")

    def _presign(self, key: str, version_id: str | None) -> str:
        """A GET URL of this exact version that outlives the job's deadline."""
        ttl = self.settings.job_deadline_seconds + PRESIGN_MARGIN_SECONDS
        return self.uploads.presign(key, version_id, ttl)

    # --- outcomes -----------------------------------------------------------------------------
    def _reject(self, kind: UploadKind, job_id: str, origin: dict[str, str], error: ImagegenError) -> Outcome:
        """Error file first (so a pipeline learns why even if the rest fails), then a FAILED job
        record, visible through the API, whose job.failed event the change stream publishes."""
        self.uploads.put_json(origin["error_key"], error_document(error, job_id))
        origin = {**origin, "error_code": error.code}
        job = rejected_job(
            job_id, self.settings.uploads_owner, self.settings, JobSource.S3, origin, rejection_text(error)
        )
        self.store.create(job)  # its job.failed event comes from the table's change stream
        return Outcome(origin["key"], kind, "rejected", job_id, error.code)

    def _start_failed(
        self, kind: UploadKind, job_id: str, origin: dict[str, str], error: ImagegenError
    ) -> Outcome:
        """submit_job stored the job FAILED (not charged); the stream announces it."""
        self.uploads.put_json(origin["error_key"], error_document(error, job_id))
        return Outcome(origin["key"], kind, "rejected", job_id, error.code)

    def _job_exists(self, job_id: str) -> bool:
        try:
            self.store.get(job_id)
        except JobNotFound:
            return False
        return True
