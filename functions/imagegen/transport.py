"""One mapping from HTTP failures to upstream errors, for every call we make to somebody else's
server (a provider's API, an image download), and with it the one rule about failover.

A job may move to another provider only when the provider it is on certainly did not act on
its create call, because otherwise one job could end up with tasks (and charges) on two
providers. So:

- the connection was never made (connect error, connect or pool timeout), or the server
  answered 429 / 503: `UpstreamUnavailableError`, which permits failover;
- anything else transient (a read timeout, a dropped connection, 408, another 5xx) may have
  reached it: `UpstreamTransientError`, retried on the same provider only;
- a failure before the provider was called at all (fetching a user's input image) cannot have
  created anything upstream: the caller says so with `before_provider_call=True`;
- any other status (validation, auth, credits, content policy, a missing image) is terminal;
- an answer whose body cannot be read at all (cut off, an HTML page from a proxy, an empty
  body, a broken Content-Encoding, JSON nested past what we parse): the upstream received the
  request and may have acted on it, exactly as when its answer is lost to a read timeout, so
  `UpstreamTransientError` too (retried within the attempt budget, never failed over). What
  such bodies come from (a truncation, a proxy's error page) passes; a JSON answer we can
  read but that says something the protocol does not (a missing task id, an unknown status)
  is the upstream's own word, and each provider fails the job on it with that reason.

It also bounds every such call by the job's deadline: inside `deadline(seconds_left)`, each
wait of a request (connect, pool, write, every read) is at most the time left, and a request
made when none is left is never sent (a connect timeout: nothing reached the upstream).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError, UpstreamUnavailableError


def is_transient_status(code: int) -> bool:
    return code in (408, 429) or code >= 500


# What httpx raises when a call fails on the way: the transport's errors, and a body whose
# Content-Encoding does not decode (gzip cut off or not gzip at all), raised while reading it.
CALL_FAILURES = (httpx.TransportError, httpx.DecodingError)


def transport_failure(
    exc: httpx.TransportError | httpx.DecodingError, label: str, *, before_provider_call: bool = False
) -> UpstreamTransientError:
    """The error an httpx failure of the call named `label` (one of CALL_FAILURES) stands for."""
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if isinstance(exc, httpx.DecodingError):
        kind = "answered with a body that could not be decoded"
    elif isinstance(exc, httpx.TimeoutException):
        kind = "timed out"
    else:
        kind = "connection failed"
    message = f"{label}: {kind} ({type(exc).__name__})"
    if never_sent or before_provider_call:
        return UpstreamUnavailableError(message)
    return UpstreamTransientError(message)


def status_failure(
    code: int, message: str, retry_after: float | None = None, *, before_provider_call: bool = False
) -> UpstreamTransientError | UpstreamTerminalError:
    """The error an HTTP status (or a status code a provider puts in its body) stands for;
    `message` is the whole text the error carries."""
    if not is_transient_status(code):
        return UpstreamTerminalError(message)
    if code in (429, 503) or before_provider_call:
        return UpstreamUnavailableError(message, retry_after=retry_after)
    return UpstreamTransientError(message, retry_after=retry_after)


def json_or_none(response: httpx.Response) -> Any:
    """The body as JSON, or None when it is not (any bytes: cut, HTML, binary, too deep)."""
    try:
        return response.json()
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; deep nesting
        return None


def json_answer(response: httpx.Response, label: str) -> Any:
    """The JSON body of a successful answer of the call named `label`; a body that is not
    JSON is an UpstreamTransientError (see the module's rules), saying what came instead."""
    try:
        return response.json()
    except (ValueError, RecursionError) as exc:
        what = response.headers.get("content-type", "no content type").split(";")[0].strip()
        detail = f"{what}, {len(response.content)} bytes"
        if isinstance(exc, RecursionError):
            detail += ", nested too deeply"
        raise UpstreamTransientError(
            f"{label}: answered HTTP {response.status_code} with a body that is not JSON ({detail})"
        ) from None


# The monotonic time by which the upstream calls of the current step must be done, if any.
_deadline: ContextVar[float | None] = ContextVar("imagegen_upstream_deadline", default=None)
_TIMEOUTS = ("connect", "read", "write", "pool")


@contextmanager
def deadline(seconds_left: float) -> Iterator[None]:
    """Bound the upstream calls made inside by `seconds_left` from now (an enclosing deadline
    that comes sooner still holds)."""
    at = time.monotonic() + max(seconds_left, 0.0)
    enclosing = _deadline.get()
    token = _deadline.set(at if enclosing is None else min(at, enclosing))
    try:
        yield
    finally:
        _deadline.reset(token)


def within_deadline(request: httpx.Request) -> None:
    """An httpx request hook, on every client that calls an upstream: caps the request's waits
    at the time left before the current deadline (imagegen.transport.deadline)."""
    at = _deadline.get()
    if at is None:
        return
    left = at - time.monotonic()
    if left <= 0:
        raise httpx.ConnectTimeout("the job's deadline has passed: the call was not made", request=request)
    configured = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {
        name: left if configured.get(name) is None else min(configured[name], left) for name in _TIMEOUTS
    }


def bound_by_deadline(client: httpx.Client) -> httpx.Client:
    """`client` with the within_deadline hook (once, however often it is handed over)."""
    hooks = client.event_hooks
    if within_deadline not in hooks["request"]:
        client.event_hooks = {**hooks, "request": [*hooks["request"], within_deadline]}
    return client


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3). Read from the
    upstreams' answers (providers) and from our own API's (the SDK)."""
    value = response.headers.get("retry-after")
    if not value:
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
