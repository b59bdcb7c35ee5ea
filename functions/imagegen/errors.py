"""Domain errors. The API layer maps them to HTTP answers in one place (api/errors.py)."""

from __future__ import annotations

from typing import Any


class ImagegenError(Exception):
    """Base for every error we raise on purpose. `code` is stable and documented."""

    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidRequest(ImagegenError):
    code = "invalid_request"


class Unauthorized(ImagegenError):
    code = "unauthorized"


class Forbidden(ImagegenError):
    code = "forbidden"


class JobNotFound(ImagegenError):
    code = "not_found"


class UnsafeUrl(InvalidRequest):
    """A user-supplied URL points somewhere we must never fetch (SSRF guard)."""

    code = "unsafe_url"


class ServiceUnavailable(ImagegenError):
    """Our own dependency failed; the client may retry (never a bare 500)."""

    code = "service_unavailable"


class UpstreamError(ImagegenError):
    """Raised by providers. Subclasses say whether trying again can help."""

    code = "upstream_error"


class UpstreamTransientError(UpstreamError):
    """Timeouts, 429, 5xx: retried with backoff and jitter within the job's deadline."""

    code = "upstream_transient"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamTerminalError(UpstreamError):
    """Validation, content policy, unknown model: the job fails at once with this message."""

    code = "upstream_rejected"
