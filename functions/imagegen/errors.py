"""Domain errors. The API layer maps them to HTTP answers in one place (api/errors.py)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


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


class InsufficientCredits(InvalidRequest):
    """The owner's balance does not cover the job's cost (402): nothing was written. A kind of
    InvalidRequest, so every entry refuses it as it refuses any request it cannot take (an S3
    upload gets its `.error.json`, an event request its `job.rejected`)."""

    code = "insufficient_credits"

    def __init__(self, balance: int, cost: int) -> None:
        super().__init__(
            f"the job costs {cost} credits and the balance is {balance}",
            details=[{"balance": balance, "cost": cost}],
        )
        self.balance = balance
        self.cost = cost


class IdempotencyKeyReused(ImagegenError):
    """An Idempotency-Key seen with another request body (422)."""

    code = "idempotency_key_reused"


class JobNotCancelable(ImagegenError):
    """Only a QUEUED or PROCESSING job can be canceled (409)."""

    code = "job_not_cancelable"


class UnsafeUrl(InvalidRequest):
    """A user-supplied URL points somewhere we must never fetch (SSRF guard)."""

    code = "unsafe_url"


class JobRecordRefused(ImagegenError):
    """A change the job's record cannot hold (over the store's budget, or refused by DynamoDB):
    nothing was written. The workflow fails the job instead, through its failure step."""

    code = "job_record_refused"

    def __init__(self, problem: str) -> None:
        super().__init__(f"the job could not be recorded: {problem}")
        self.problem = problem


class JobRecordUnwritable(ImagegenError):
    """The store could neither write a change to a job nor fail the job in its place (a record
    written before the size budgets, at DynamoDB's limit): an operator has to look at it."""

    code = "job_record_unwritable"


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


class UpstreamUnavailableError(UpstreamTransientError):
    """Transient, and the upstream certainly did not act on the request: the connection was
    never made, it answered 429 / 503, or it was never called. Only after failures of this kind
    may a job move to another provider (failover): a timeout or a 500 may have created a task
    we never heard of. imagegen.transport decides which failure is which."""

    code = "upstream_unavailable"


class UpstreamTerminalError(UpstreamError):
    """Validation, content policy, unknown model: the job fails at once with this message."""

    code = "upstream_rejected"


def transient_error_names() -> list[str]:
    """The class names of every transient upstream error. A Lambda error's type is its class
    name, and Step Functions' Retry matches names exactly: a step that retries on transient
    errors must list them all (the workflow definition does), not just the base class."""
    names, pending = [], [UpstreamTransientError]
    while pending:
        cls = pending.pop(0)
        names.append(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as {field, message}: readable by people and by programs, the same for
    every entry (the API's 400s, an S3 edit's `.error.json`)."""
    return [
        {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
