"""The one small interface every upstream provider implements.

A provider turns our request into one or more upstream tasks and reports their state in our
vocabulary. It raises UpstreamTransientError when trying again can help (timeouts, 429, 5xx)
and UpstreamTerminalError when it cannot (validation, content policy, unknown model); the
workflow decides about retries, deadlines, failover and storage, never the provider.

Adding a provider is one module (a Provider subclass) and one line in
imagegen.providers.PROVIDERS; docs/providers.md walks through it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError
from imagegen.models import GptImageParams, JobStatus

MAX_INPUT_IMAGE_BYTES = 20 * 1024 * 1024  # per input image a provider fetches itself


class UpstreamUnavailableError(UpstreamTransientError):
    """Transient, and the upstream certainly did not act on the request: the connection was
    never made, or it answered 429 / 503. Only after failures of this kind may a job move to
    another provider (failover): a timeout or a 500 may have created a task we never heard of."""


@dataclass(frozen=True)
class GenerationRequest:
    """What a provider needs to know about a job. `input_image_urls` are already SSRF-checked
    (or presigned URLs of our own uploads)."""

    job_id: str
    prompt: str
    params: GptImageParams

    @property
    def input_image_urls(self) -> list[str]:
        return list(self.params.input_images or [])


@dataclass(frozen=True)
class InlineImage:
    """An image a synchronous provider returned in its response (OpenAI's b64_json)."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class CreatedTask:
    task_id: str
    # Synchronous providers return the finished images at once; asynchronous ones return none.
    images: list[InlineImage] = field(default_factory=list)


@dataclass(frozen=True)
class TaskState:
    status: JobStatus  # PROCESSING, COMPLETED or FAILED (QUEUED upstream counts as PROCESSING)
    progress: int = 0
    image_urls: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class ProviderConfig:
    base_url: str
    api_key: str
    timeout_seconds: float = 20.0
    # Read timeout of a call that renders before it answers (OpenAI). Longer than a
    # high-quality render, shorter than the create-task function's own timeout.
    render_timeout_seconds: float = 240.0
    # Whether input images on 127.0.0.1 may be fetched (the local stack only).
    allow_loopback_urls: bool = False
    max_input_image_bytes: int = MAX_INPUT_IMAGE_BYTES


class Provider(ABC):
    """Subclasses set `name` and register themselves in imagegen.providers.PROVIDERS."""

    name: ClassVar[str]  # the registry name: IMAGEGEN_PROVIDER, Job.provider
    label: ClassVar[str] = ""  # how error messages name it, if not by `name`
    default_base_url: ClassVar[str]

    def __init__(self, config: ProviderConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self.http = client or httpx.Client(
            base_url=(config.base_url or self.default_base_url).rstrip("/"),
            timeout=httpx.Timeout(config.timeout_seconds, connect=5.0),
            follow_redirects=False,
        )

    @property
    def said_by(self) -> str:
        return self.label or self.name

    def task_count(self, request: GenerationRequest) -> int:
        """How many upstream tasks this request needs (one unless the provider fans out)."""
        return 1

    @classmethod
    def refusal(cls, request: GenerationRequest) -> str | None:
        """Why this provider cannot serve `request` at all (a missing feature), or None.
        Submission refuses such a request with a 400 when no provider of the chain can serve
        it; create_task fails it as terminal; failover skips such a provider. A classmethod:
        deciding needs no key and no connection."""
        return None

    @abstractmethod
    def create_task(self, request: GenerationRequest, slot: int) -> CreatedTask:
        """Create upstream task number `slot` (0-based) of the request."""

    @abstractmethod
    def get_task(self, task_id: str) -> TaskState:
        """Current state of a task created by create_task."""

    # Shared plumbing: one place classifies HTTP failures, so every provider agrees on what
    # is worth a retry.
    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the upstream: safe to retry anywhere.
            message = f"{self.said_by}: connection failed ({type(exc).__name__})"
            raise UpstreamUnavailableError(message) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTransientError(f"{self.said_by}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise UpstreamTransientError(f"{self.said_by}: connection failed ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise self.error_for(response)
        return response

    def error_for(self, response: httpx.Response) -> UpstreamTransientError | UpstreamTerminalError:
        """The error an HTTP error answer stands for; providers with special cases override."""
        return classify(
            self.said_by, response.status_code, self.error_message(response), retry_after_seconds(response)
        )

    def error_message(self, response: httpx.Response) -> str:
        """The provider's own words for an error response; subclasses know their shapes."""
        return default_error_message(response)

    def close(self) -> None:
        self.http.close()


def classify(
    provider: str, code: int, message: str, retry_after: float | None = None
) -> UpstreamTransientError | UpstreamTerminalError:
    """One rule for HTTP status codes and for status codes a provider puts in a body:
    429 and 503 (nothing done), 408 and other 5xx (maybe done) are transient; any other
    code (validation, auth, credits, content policy, unknown model) is terminal."""
    if code in (429, 503):
        return UpstreamUnavailableError(f"{provider}: HTTP {code}: {message}", retry_after=retry_after)
    if code == 408 or code >= 500:
        return UpstreamTransientError(f"{provider}: HTTP {code}: {message}", retry_after=retry_after)
    return UpstreamTerminalError(f"{provider}: {message}")


def default_error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"HTTP {response.status_code}"


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delay-seconds or an HTTP-date (RFC 9110)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
