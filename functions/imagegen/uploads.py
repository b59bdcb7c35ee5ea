"""S3-triggered edits: an object created under `edits/` in the uploads bucket becomes an edit job.

What a key means (docs/s3-edits.md states the same rules for users):

- `edits/inputs/...`                    inputs named by manifests: never start a job
- `edits/....result.json`, `.error.json` our own answers next to uploads: ignored
- keys ending in `/`                    folder markers: ignored
- any other `edits/....json`            a manifest: a GenerateRequest body plus `images` (keys)
- any other key under `edits/`          an image; its metadata carries the prompt and params

A request goes through the API's own path (`new_job` + `submit_job`): same validation, credits,
job record and workflow. Inputs reach the upstream as presigned GET URLs of the exact object
version, valid until past the job's deadline. The job id is derived from bucket, key and
version (or sequencer), so a redelivered S3 event finds its job and starts nothing.

A bad upload gets `<name>.error.json` (the API's error shape) and a FAILED job record, whose
`job.failed` event goes out like any other. `<name>.result.json` is written for every job
that came from an upload, by `ResultWriter`, from the job events (see s3_edit.handler).

This module knows nothing of Lambda event shapes: the handler hands it `UploadRecord`s.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from email.header import decode_header, make_header
from enum import StrEnum
from typing import Any, Literal

import boto3
from botocore.exceptions import ClientError
from pydantic import Field, ValidationError, field_validator

from imagegen.errors import ImagegenError, InvalidRequest, JobNotFound, ServiceUnavailable
from imagegen.events import EventPublisher, JobEvent
from imagegen.jobs import JobStore
from imagegen.models import (
    MAX_INPUT_IMAGES,
    MODEL_ID,
    GenerateRequest,
    GptImageParams,
    Job,
    JobSource,
    JobStatus,
    utc_now,
)
from imagegen.settings import Settings
from imagegen.storage import signing_s3_client
from imagegen.submission import WorkflowStarter, new_job, submit_job

EDITS_PREFIX = "edits/"  # the S3 notification's prefix filter (blueprint.EDITS_PREFIX)
INPUTS_PREFIX = EDITS_PREFIX + "inputs/"
RESULT_SUFFIX = ".result.json"
ERROR_SUFFIX = ".error.json"
MANIFEST_SUFFIX = ".json"
MAX_MANIFEST_BYTES = 64 * 1024
# Presigned input URLs outlive the job's deadline by this much: the upstream may fetch late.
PRESIGN_MARGIN_SECONDS = 300
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit
# Metadata names (x-amz-meta-<name>, `-` or `_`) that map onto gptImageParams.
METADATA_PARAMS = (
    "quality",
    "aspect_ratio",
    "output_format",
    "background",
    "input_fidelity",
    "number_of_images",
)
_EDIT_JOB_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://imagegen/s3-edits")

ImageFormat = Literal["png", "jpeg", "webp"]


class UploadKind(StrEnum):
    IMAGE = "image"
    MANIFEST = "manifest"
    IGNORED = "ignored"


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


# --- errors -----------------------------------------------------------------------------------
class UploadRejected(InvalidRequest):
    """The upload cannot become a job; the message and details go into `<name>.error.json`."""


class UnsupportedImage(UploadRejected):
    code = "unsupported_image"


class UploadTooLarge(UploadRejected):
    code = "upload_too_large"


class UploadsNotConfigured(ImagegenError):
    """A deploy mistake: the function is not configured for this bucket (never a user error)."""

    code = "configuration_error"


# --- keys and ids (pure) ----------------------------------------------------------------------
def classify(key: str) -> UploadKind:
    if not key.startswith(EDITS_PREFIX) or key.startswith(INPUTS_PREFIX) or key.endswith("/"):
        return UploadKind.IGNORED
    if key.endswith((RESULT_SUFFIX, ERROR_SUFFIX)):
        return UploadKind.IGNORED
    return UploadKind.MANIFEST if key.lower().endswith(MANIFEST_SUFFIX) else UploadKind.IMAGE


def base_name(key: str) -> str:
    """`edits/cats/tabby.png` -> `edits/cats/tabby`: the upload's key without its extension."""
    folder, _, file_name = key.rpartition("/")
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.lstrip(".") else file_name
    return f"{folder}/{stem}" if folder else stem


def result_key(key: str) -> str:
    return base_name(key) + RESULT_SUFFIX


def error_key(key: str) -> str:
    return base_name(key) + ERROR_SUFFIX


def edit_job_id(bucket: str, key: str, revision: str) -> str:
    """The job id of one object version: the same event delivered twice names the same job."""
    return str(uuid.uuid5(_EDIT_JOB_NAMESPACE, f"s3://{bucket}/{key}#{revision}"))


def sniff_image(head: bytes) -> ImageFormat | None:
    """PNG, JPEG or WebP by magic bytes (the formats GPT Image accepts), else None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as {field, message}, exactly as the API reports them (api/errors.py)."""
    return [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def error_document(error: ImagegenError, job_id: str | None = None) -> dict[str, Any]:
    """The API's error shape, plus the id of the FAILED job that records the rejection."""
    document: dict[str, Any] = {
        "error": {"code": error.code, "message": error.message, "details": error.details},
    }
    if job_id:
        document["jobId"] = job_id
    return document


# --- requests from metadata and manifests (pure) ----------------------------------------------
def _decode_header_value(value: str) -> str:
    """S3 metadata is US-ASCII: non-ASCII prompts arrive RFC 2047-encoded (=?UTF-8?B?...?=)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        return value


def body_from_metadata(metadata: Mapping[str, str]) -> dict[str, Any]:
    """x-amz-meta-prompt (and x-amz-meta-quality, -aspect-ratio, ...) as a GenerateRequest body.
    Metadata we do not know is ignored: S3 tools add their own (mtime, s3cmd-attrs ...)."""
    meta = {name.lower().replace("-", "_"): _decode_header_value(value) for name, value in metadata.items()}
    if "prompt" not in meta:
        raise UploadRejected(
            "the upload has no prompt",
            [
                {
                    "field": "prompt",
                    "message": "set the object metadata x-amz-meta-prompt, or upload the image "
                    f"under {INPUTS_PREFIX} and name it in a manifest",
                }
            ],
        )
    params = {name: meta[name] for name in METADATA_PARAMS if name in meta}
    return {"prompt": meta["prompt"], "model": meta.get("model", MODEL_ID), "gptImageParams": params}


class EditManifest(GenerateRequest):
    """`edits/<name>.json`: the API's request body (`model` optional) plus `images`, the keys of
    the inputs in the uploads bucket; their URLs are ours to make, so input_images is refused."""

    model: Literal["gpt-image-1.5"] = "gpt-image-1.5"  # MODEL_ID
    images: list[str] = Field(min_length=1, max_length=MAX_INPUT_IMAGES)

    @field_validator("images")
    @classmethod
    def _keys_of_inputs(cls, keys: list[str]) -> list[str]:
        # Only keys the trigger ignores: an object either starts its own job or is an input.
        for key in keys:
            if not key.startswith(INPUTS_PREFIX) or key.endswith("/"):
                raise ValueError(
                    f"images are keys of uploaded objects under {INPUTS_PREFIX}, "
                    f"e.g. {INPUTS_PREFIX}cat.png (got {key[:200]!r})"
                )
        return keys

    @field_validator("gptImageParams")
    @classmethod
    def _no_input_urls(cls, params: GptImageParams) -> GptImageParams:
        if params.input_images:
            raise ValueError("input_images is not allowed in a manifest: list the uploaded keys in `images`")
        return params


def parse_manifest(raw: bytes) -> EditManifest:
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UploadRejected(f"the manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UploadRejected("the manifest must be a JSON object")
    try:
        return EditManifest.model_validate(document)
    except ValidationError as exc:
        raise UploadRejected("the manifest is invalid", validation_details(exc)) from None


def validated_request(body: dict[str, Any], input_urls: list[str], what: str) -> GenerateRequest:
    """The API's model, with our presigned input URLs in gptImageParams.input_images."""
    body = {**body, "gptImageParams": {**body.get("gptImageParams", {}), "input_images": input_urls}}
    try:
        return GenerateRequest.model_validate(body)
    except ValidationError as exc:
        raise UploadRejected(f"{what} is invalid", validation_details(exc)) from None


def _rejection_text(error: ImagegenError) -> str:
    """The job record's `error`: the message, then each detail, so GET /v2/jobs/{id} says why."""
    details = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in error.details)
    return f"{error.message} ({details})" if details else error.message


# --- the intake: records in, jobs out ---------------------------------------------------------
class EditIntake:
    """Turns upload records into edit jobs through the API's submission path."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        starter: WorkflowStarter,
        events: EventPublisher,
        s3_client: Any = None,
    ) -> None:
        if not settings.uploads_bucket or not settings.uploads_owner:
            raise UploadsNotConfigured("S3 edits need IMAGEGEN_UPLOADS_BUCKET and IMAGEGEN_UPLOADS_OWNER")
        self.settings = settings
        self.store = store
        self.starter = starter
        self.events = events
        self.s3 = s3_client or signing_s3_client()

    def handle(self, record: UploadRecord) -> Outcome:
        kind = classify(record.key)
        if kind is UploadKind.IGNORED or not record.event_name.startswith("ObjectCreated"):
            return Outcome(record.key, kind, "ignored")
        if record.bucket != self.settings.uploads_bucket:
            # Raised, not swallowed: an S3 notification from another bucket is a wiring mistake.
            raise UploadsNotConfigured(f"bucket {record.bucket!r} is not the uploads bucket")
        head = self._head(record.key, record.version_id)
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
            # submit_job stored the job FAILED (not charged); announce it like any failed job.
            return self._announce_failure(kind, job_id, origin, exc)
        return Outcome(record.key, kind, "started" if created else "duplicate", job_id)

    # --- requests -----------------------------------------------------------------------------
    def _request_from_image(self, key: str, head: dict[str, Any]) -> GenerateRequest:
        self._check_image(key, head)
        body = body_from_metadata(head.get("Metadata") or {})
        return validated_request(body, [self._presign(key, head.get("VersionId"))], "the upload's metadata")

    def _request_from_manifest(self, key: str, head: dict[str, Any]) -> GenerateRequest:
        if int(head.get("ContentLength", 0)) > MAX_MANIFEST_BYTES:
            raise UploadTooLarge(f"the manifest is over the {MAX_MANIFEST_BYTES // 1024} KiB limit")
        manifest = parse_manifest(self._read(key, head.get("VersionId")))
        urls: list[str] = []
        problems: list[dict[str, Any]] = []
        for index, image_key in enumerate(manifest.images):
            image_head = self._head(image_key)
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
        first_bytes = self._read(key, head.get("VersionId"), byte_range="bytes=0-15") if size else b""
        if sniff_image(first_bytes) is None:
            raise UnsupportedImage(f"{key} is not a PNG, JPEG or WebP image")

    # --- outcomes -----------------------------------------------------------------------------
    def _reject(self, kind: UploadKind, job_id: str, origin: dict[str, str], error: ImagegenError) -> Outcome:
        """Error file first (so a pipeline learns why even if the rest fails), then a FAILED job
        record, visible through the API, whose job.failed event is published once."""
        self._put_json(origin["error_key"], error_document(error, job_id))
        now = utc_now()
        job = Job(
            job_id=job_id,
            owner=self.settings.uploads_owner,
            status=JobStatus.FAILED,
            prompt="",
            params=GptImageParams(),
            source=JobSource.S3,
            credit_cost=0,
            error=_rejection_text(error),
            created_at=now,
            updated_at=now,
            completed_at=now,
            deadline_at=now,
            origin={**origin, "error_code": error.code},
            expires_at=int((now + timedelta(days=self.settings.record_retention_days)).timestamp()),
        )
        if self.store.create(job):
            self.events.publish(JobEvent.for_job(job, self.settings.results_bucket))
        return Outcome(origin["key"], kind, "rejected", job_id, error.code)

    def _announce_failure(
        self, kind: UploadKind, job_id: str, origin: dict[str, str], error: ImagegenError
    ) -> Outcome:
        self._put_json(origin["error_key"], error_document(error, job_id))
        self.events.publish(JobEvent.for_job(self.store.get(job_id), self.settings.results_bucket))
        return Outcome(origin["key"], kind, "rejected", job_id, error.code)

    # --- S3 -----------------------------------------------------------------------------------
    def _head(self, key: str, version_id: str | None = None) -> dict[str, Any] | None:
        params = {"Bucket": self.settings.uploads_bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        try:
            return dict(self.s3.head_object(**params))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NoSuchVersion", "NotFound"):
                return None
            raise

    def _read(self, key: str, version_id: str | None, byte_range: str | None = None) -> bytes:
        params = {"Bucket": self.settings.uploads_bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        if byte_range:
            params["Range"] = byte_range
        return bytes(self.s3.get_object(**params)["Body"].read())

    def _presign(self, key: str, version_id: str | None) -> str:
        """A GET URL of this exact version that outlives the job's deadline."""
        params = {"Bucket": self.settings.uploads_bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        ttl = min(self.settings.job_deadline_seconds + PRESIGN_MARGIN_SECONDS, MAX_PRESIGN_SECONDS)
        return str(self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=ttl))

    def _put_json(self, key: str, document: dict[str, Any]) -> None:
        self.s3.put_object(
            Bucket=self.settings.uploads_bucket,
            Key=key,
            Body=json.dumps(document, indent=2).encode(),
            ContentType="application/json",
        )

    def _job_exists(self, job_id: str) -> bool:
        try:
            self.store.get(job_id)
        except JobNotFound:
            return False
        return True


# --- results next to uploads ------------------------------------------------------------------
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
    """Writes `<name>.result.json` next to the upload once an S3 job is terminal. Fed by the
    events topic (filter source = s3); the upload's location comes from the job record."""

    def __init__(self, store: JobStore, s3_client: Any = None) -> None:
        self.store = store
        self.s3 = s3_client or boto3.client("s3")

    def write(self, event: JobEvent) -> str | None:
        """Returns the key written, or None when the event is not about an upload."""
        if event.source != JobSource.S3.value:
            return None
        job = self.store.get(event.jobId)
        bucket, key = job.origin.get("bucket"), job.origin.get("result_key")
        if not (bucket and key) or not job.status.is_terminal:
            return None
        self.s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(result_document(job, event.bucket), indent=2).encode(),
            ContentType="application/json",
        )
        return key
