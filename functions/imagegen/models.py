"""The shapes of the service: the public request (apiframe v2), the job record and its views.

The request model is the one validation point for every entry (HTTP API and S3 uploads), so
both reject the same input with the same messages.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_ID = "gpt-image-1.5"
MAX_PROMPT_CHARS = 2000
MAX_INPUT_IMAGES = 16  # OpenAI's limit for edits (REFERENCE §3)
# Every URL is kept in the job record (a DynamoDB item stops at 400 KB) and sent upstream, so its
# length is bounded: 16 x 4 KiB stays far below that. Not 2,048: S3 edits pass our own presigned
# URLs through this model, and from Lambda they carry a session token of 1-2 KB plus the key.
MAX_URL_CHARS = 4096

Quality = Literal["auto", "low", "medium", "high"]
AspectRatio = Literal["1:1", "3:2", "2:3"]
OutputFormat = Literal["webp", "png", "jpeg"]
Background = Literal["auto", "transparent", "opaque"]
InputFidelity = Literal["low", "high"]

# Pixel sizes per aspect ratio, as GPT Image renders them (REFERENCE §3).
SIZES: dict[str, tuple[int, int]] = {"1:1": (1024, 1024), "3:2": (1536, 1024), "2:3": (1024, 1536)}
CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"  # by its owner (POST /v2/jobs/{id}/cancel): refunded, never resumed

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)

    @property
    def is_refunded(self) -> bool:
        """The ends that give the job's credits back (imagegen.accounts)."""
        return self in (JobStatus.FAILED, JobStatus.CANCELED)


class JobSource(StrEnum):
    API = "api"
    S3 = "s3"
    EVENT = "event"  # requested by an event on our bus or a message on the intake queue


# apiframe's webhook events (seed 000): which changes of a job its webhook is told about.
WebhookEvent = Literal["progress", "completed", "failed"]
DEFAULT_WEBHOOK_EVENTS: list[WebhookEvent] = ["completed", "failed"]


class GptImageParams(BaseModel):
    """`gptImageParams` with every field and default of the seed. Unknown fields are refused so a
    typo such as `aspectRatio` is reported instead of silently ignored."""

    model_config = ConfigDict(extra="forbid")

    quality: Quality = "auto"
    aspect_ratio: AspectRatio = "1:1"
    output_format: OutputFormat = "webp"
    background: Background = "auto"
    input_images: list[str] | None = Field(default=None, max_length=MAX_INPUT_IMAGES)
    input_fidelity: InputFidelity = "low"
    number_of_images: int = Field(default=1, ge=1, le=10)

    @field_validator("input_images")
    @classmethod
    def _urls_are_http(cls, urls: list[str] | None) -> list[str] | None:
        # Syntax only; where the URL resolves to is checked by imagegen.ssrf at submission.
        for index, url in enumerate(urls or []):
            if len(url) > MAX_URL_CHARS:
                raise ValueError(f"input_images[{index}] is longer than {MAX_URL_CHARS} characters")
            if not url.lower().startswith(("https://", "http://")):
                raise ValueError("input_images must be http(s) URLs")
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 - parsing the port is the check (range, digits)
            except ValueError as exc:
                raise ValueError(f"input_images[{index}] is not a valid URL: {exc}") from None
            if not parts.hostname:
                raise ValueError(f"input_images[{index}] has no host")
        return urls or None

    @field_validator("background")
    @classmethod
    def _transparent_needs_alpha(cls, background: str, info) -> str:  # type: ignore[no-untyped-def]
        if background == "transparent" and info.data.get("output_format") == "jpeg":
            raise ValueError("a transparent background needs output_format png or webp")
        return background

    @property
    def size(self) -> tuple[int, int]:
        return SIZES[self.aspect_ratio]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.output_format]


class GenerateRequest(BaseModel):
    """Body of `POST /v2/images/generate`, as in apiframe v2 (seed 000)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    model: Literal["gpt-image-1.5"]
    gptImageParams: GptImageParams = Field(default_factory=GptImageParams)
    # Where to POST the job's changes (signed: docs/webhooks.md); checked against SSRF at
    # submission and again at every delivery.
    webhookUrl: str | None = Field(default=None, max_length=2048)
    webhookEvents: list[WebhookEvent] | None = Field(default=None, max_length=3)

    @field_validator("webhookUrl")
    @classmethod
    def _webhook_is_http(cls, url: str | None) -> str | None:
        if url is not None and not url.lower().startswith(("https://", "http://")):
            raise ValueError("webhookUrl must be an http(s) URL")
        return url

    @model_validator(mode="after")
    def _events_need_a_url(self) -> GenerateRequest:
        if self.webhookEvents and not self.webhookUrl:
            raise ValueError("webhookEvents needs a webhookUrl")
        return self

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, prompt: str) -> str:
        if not prompt.strip():
            raise ValueError("prompt must not be blank")
        return prompt


class UpstreamTask(BaseModel):
    """One task created on the upstream provider. A job has one, or several when the provider
    renders one image per task (fan-out). `slot` orders them; `task_id` is recorded before the
    job moves on so that a retried create step reuses it instead of creating another."""

    slot: int
    task_id: str
    status: JobStatus = JobStatus.PROCESSING
    progress: int = 0
    image_urls: list[str] = Field(default_factory=list)
    stored_keys: list[str] = Field(default_factory=list)  # synchronous providers write straight to S3
    error: str | None = None


class Job(BaseModel):
    """The job record as stored in DynamoDB. It carries room for what later issues add (owner for
    accounts and credits, webhook state, idempotency key) so they fit without a migration."""

    job_id: str
    owner: str
    status: JobStatus = JobStatus.QUEUED
    model: str = MODEL_ID
    prompt: str
    params: GptImageParams
    source: JobSource = JobSource.API
    credit_cost: int
    progress: int = 0
    provider: str | None = None
    upstream_tasks: list[UpstreamTask] = Field(default_factory=list)
    result_keys: list[str] = Field(default_factory=list)
    error: str | None = None
    create_attempts: int = 0
    poll_errors: int = 0
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    deadline_at: datetime
    idempotency_key: str | None = None  # the caller's Idempotency-Key header, if it sent one
    request_hash: str | None = None  # SHA-256 of the request body: a reused key with another body is refused
    # What submission took from the owner's balance (imagegen.accounts): refunded, once, when the
    # job ends FAILED or CANCELED. 0 for jobs stored before accounts existed, which refund nothing.
    debited_credits: int = 0
    key_id: str | None = None  # the API key that asked for it: its webhook secret signs deliveries
    webhook_url: str | None = None
    webhook_events: list[str] = Field(default_factory=list)
    webhook_status: str | None = None  # pending | sent | failed (None: no webhook)
    webhook_attempts: int = 0
    webhook_last_error: str | None = None
    origin: dict[str, str] = Field(default_factory=dict)  # e.g. the upload that started an S3 edit
    expires_at: int | None = None  # DynamoDB TTL (epoch seconds)
    version: int = 0  # optimistic locking: every write is conditional on the version it read
    # New with every Job built (each request, each S3 delivery), stored with the record: tells a
    # create retried after its answer was lost (the record holds this token) from another
    # request that names the same job id (a redelivered S3 event). JobStore.create.
    request_token: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def charged_credits(self) -> int:
        """A FAILED or CANCELED job is refunded: it shows and costs 0."""
        return 0 if self.status.is_refunded else self.credit_cost


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if ts else None


def load_json(raw: str | bytes) -> Any:
    """`json.loads` for what comes from outside (a request body, a manifest). Nesting deeper than
    the parser's recursion (a 10 KB body of brackets) is malformed JSON like any other: a
    ValueError the caller answers with a 400, never a RecursionError that escapes as a 500."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
