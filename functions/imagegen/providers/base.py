"""The one small interface every upstream provider implements.

A provider turns our request into one or more upstream tasks and reports their state in our
vocabulary. It raises UpstreamTransientError when trying again can help (timeouts, 429, 5xx)
and UpstreamTerminalError when it cannot (validation, content policy); the workflow decides
about retries, deadlines and storage, never the provider.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import httpx

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError
from imagegen.models import GptImageParams, JobStatus


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


class Provider(ABC):
    """Subclasses set `name` and register themselves in imagegen.providers.PROVIDERS."""

    name: ClassVar[str]

    def __init__(self, config: ProviderConfig, client: httpx.Client | None = None) -> None:
        self.config = config
        self.http = client or httpx.Client(
            base_url=config.base_url.rstrip("/"),
            timeout=httpx.Timeout(config.timeout_seconds, connect=5.0),
            follow_redirects=False,
        )

    def task_count(self, request: GenerationRequest) -> int:
        """How many upstream tasks this request needs (one unless the provider fans out)."""
        return 1

    @abstractmethod
    def create_task(self, request: GenerationRequest, slot: int) -> CreatedTask:
        """Create upstream task number `slot` (0-based) of the request."""

    @abstractmethod
    def get_task(self, task_id: str) -> TaskState:
        """Current state of a task created by create_task."""

    # Shared plumbing: one place classifies HTTP failures, so every provider agrees on what
    # is worth a retry.
    def send(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            raise UpstreamTransientError(f"{self.name}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise UpstreamTransientError(f"{self.name}: connection failed ({type(exc).__name__})") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise UpstreamTransientError(
                f"{self.name}: HTTP {response.status_code}: {self.error_message(response)}",
                retry_after=retry_after_seconds(response),
            )
        if response.status_code >= 400:
            raise UpstreamTerminalError(f"{self.name}: {self.error_message(response)}")
        return response

    def error_message(self, response: httpx.Response) -> str:
        """The provider's own words for an error response; subclasses know their shapes."""
        return default_error_message(response)

    def close(self) -> None:
        self.http.close()


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


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date: rare for APIs; the backoff schedule applies instead
