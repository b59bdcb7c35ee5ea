"""The one small interface every upstream provider implements.

A provider turns our request into one or more upstream tasks and reports their state in our
vocabulary. It raises UpstreamTransientError when trying again can help (timeouts, 429, 5xx)
and UpstreamTerminalError when it cannot (validation, content policy, unknown model); the
workflow decides about retries, deadlines, failover and storage, never the provider.

Adding a provider is one module (a Provider subclass) and one line in
imagegen.providers.PROVIDERS; docs/providers.md walks through it.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError, UpstreamUnavailableError
from imagegen.models import GptImageParams, JobStatus
from imagegen.transport import (
    CALL_FAILURES,
    bound_by_deadline,
    is_transient_status,
    json_answer,
    json_or_none,
    retry_after_seconds,
    status_failure,
    transport_failure,
)

MAX_INPUT_IMAGE_BYTES = 20 * 1024 * 1024  # per input image a provider fetches itself

# A child of the service's logger ("imagegen", Powertools' Logger in the handlers): its lines
# carry the invocation's keys (job_id, request id). Tracing these calls with X-Ray would cost
# more cold start than every handler's own imports (docs/decisions.md §11); one line per call
# with its duration and status answers "which upstream call was slow or failing".
log = logging.getLogger("imagegen.upstream")

__all__ = ["UpstreamUnavailableError"]  # re-exported: providers and their tests import it from here


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
        # Every request of this client (the provider's API, the input images it fetches) waits
        # at most the time left before the job's deadline (imagegen.transport.deadline).
        self.http = bound_by_deadline(
            client
            or httpx.Client(
                base_url=(config.base_url or self.default_base_url).rstrip("/"),
                timeout=httpx.Timeout(config.timeout_seconds, connect=5.0),
                follow_redirects=False,
            )
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

    # Shared plumbing: imagegen.transport classifies HTTP failures, so every provider agrees
    # on what is worth a retry and what may fail over.
    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = self.http.request(method, path, **kwargs)
        except CALL_FAILURES as exc:
            self._log_call(method, path, started, type(exc).__name__)
            raise transport_failure(exc, self.said_by) from exc
        self._log_call(method, path, started, response.status_code)
        if response.status_code >= 400:
            raise self.error_for(response)
        return response

    def json_of(self, response: httpx.Response) -> Any:
        """The JSON body of a successful answer; one that is not JSON (cut off, a proxy's HTML
        page) is an UpstreamTransientError (imagegen.transport.json_answer)."""
        return json_answer(response, self.said_by)

    def _log_call(self, method: str, path: str, started: float, outcome: int | str) -> None:
        # The path, never the query or headers: those may carry keys.
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        extra = {"provider": self.name, "method": method, "path": path, "outcome": outcome}
        log.info("upstream call", extra={**extra, "duration_ms": duration_ms})

    def error_for(self, response: httpx.Response) -> UpstreamTransientError | UpstreamTerminalError:
        """The error an HTTP error answer stands for; providers with special cases override."""
        return classify(
            self.said_by, response.status_code, self.error_message(response), retry_after_seconds(response)
        )

    def error_message(self, response: httpx.Response) -> str:
        """The provider's own words for an error response."""
        body = json_or_none(response)
        if body is None:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        return error_body_message(body) or f"HTTP {response.status_code}"

    def close(self) -> None:
        self.http.close()


def classify(
    provider: str, code: int, message: str, retry_after: float | None = None
) -> UpstreamTransientError | UpstreamTerminalError:
    """A provider's error status (HTTP, or a code in its body) as our error, in the words
    users read on the job: imagegen.transport decides transient, terminal or failover."""
    text = f"{provider}: HTTP {code}: {message}" if is_transient_status(code) else f"{provider}: {message}"
    return status_failure(code, text, retry_after)


def error_body_message(body: Any) -> str | None:
    """The message of the error shapes providers use: {"error": {"message", "code"|"type"}}
    (OpenAI, apiin.one), {"error": "text"}, or {"message": "text"} (apiin.one's envelope).
    The error's own code word, else its type, follows in brackets: it is what tells a content
    policy refusal from a validation error."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and error.get("message"):
        message = str(error["message"])
        code = error.get("code")
        qualifier = code if isinstance(code, str) and code else error.get("type")
        return f"{message} ({qualifier})" if qualifier and str(qualifier) not in message else message
    if isinstance(error, str) and error:
        return error
    if body.get("message"):
        return str(body["message"])
    return None


def progress_of(value: Any) -> int:
    """A progress figure from an answer as 0..99 (100 is ours to say, once stored): anything
    that is not a finite number (a string, true, NaN, 1e400) counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(0, min(int(value), 99))
