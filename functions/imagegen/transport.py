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
- any other status (validation, auth, credits, content policy, a missing image) is terminal.
"""

from __future__ import annotations

import httpx

from imagegen.errors import UpstreamTerminalError, UpstreamTransientError, UpstreamUnavailableError


def is_transient_status(code: int) -> bool:
    return code in (408, 429) or code >= 500


def transport_failure(
    exc: httpx.TransportError, label: str, *, before_provider_call: bool = False
) -> UpstreamTransientError:
    """The error an httpx transport failure of the call named `label` stands for."""
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
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
