"""The Python SDK of an imagegen deployment: `Client` (sync) and `AsyncClient` (asyncio), on httpx.

    from imagegen.client import Client

    with Client("http://127.0.0.1:8787", "igk_...") as client:
        job = client.generate("a fox reading a book", quality="high", aspect_ratio="3:2")
        job = client.wait(job, timeout=300)
        paths = client.download(job, "out")

Results are typed with the server's own models (`JobStatus`, `GptImageParams`, the request is
validated by `GenerateRequest` before it is sent); `JobView` is `GET /v2/jobs/{id}` as
`api.views.job_view` writes it (a unit test holds the two together). Every error the API
answers is an `ApiError` carrying its `status`, `code`, `message` and `details`.

Nothing heavy is imported here (no boto3, no Powertools): the SDK runs outside AWS.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, field_serializer

from imagegen.errors import validation_details
from imagegen.models import MODEL_ID, GenerateRequest, GptImageParams, JobSource, JobStatus, iso
from imagegen.transport import retry_after_seconds

USER_AGENT = "imagegen-python/0.1"
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_WAIT_SECONDS = 600.0
# Statuses a wait rides out instead of failing: throttling and a gateway or function that is
# briefly unavailable. Anything else (401, 404...) will not get better by asking again.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
WEBHOOK_TOLERANCE_SECONDS = 300  # Standard Webhooks' default: older or newer is refused


# --- typed results ------------------------------------------------------------------------
class JobResult(BaseModel):
    images: list[str]


class JobView(BaseModel):
    """A job as the API shows it (`GET /v2/jobs/{id}`, list and cancel answers). The API's own
    field names; fields a newer server adds are kept (extra="allow"), not refused."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    status: JobStatus
    model: str = MODEL_ID
    progress: int = 0
    result: JobResult | None = None
    error: str | None = None
    creditCost: int = 0
    webhookStatus: str | None = None
    webhookAttempts: int = 0
    webhookError: str | None = None
    createdAt: datetime | None = None
    completedAt: datetime | None = None
    prompt: str | None = None
    gptImageParams: GptImageParams | None = None
    source: JobSource | None = None

    @field_serializer("createdAt", "completedAt")
    def _as_the_server_writes(self, ts: datetime | None) -> str | None:
        return iso(ts)  # dumped as read: `imagegen jobs show --json` prints what the API said

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def images(self) -> list[str]:
        """The result's (presigned, expiring) image URLs; empty until COMPLETED."""
        return list(self.result.images) if self.result else []


JobRef = JobView | str  # a job, or its id
# Aliases, because inside the clients `list` names their method, not the builtin.
_JobPage = tuple[list[JobView], str | None]
_Paths = list[Path]


# --- errors -------------------------------------------------------------------------------
class ImagegenClientError(Exception):
    """Base of every error the SDK raises."""


class ApiError(ImagegenClientError):
    """The API answered with an error: `{"error": {"code", "message", "details"}}`."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


class BadRequestError(ApiError):
    """400: the request is invalid (`details` lists the fields), or an unsafe URL."""


class AuthenticationError(ApiError):
    """401: no API key, or an unknown one."""


class PermissionDeniedError(ApiError):
    """403: the key is inactive."""


class NotFoundError(ApiError):
    """404: no such job (or not yours), or no such route."""


class ConflictError(ApiError):
    """409: e.g. `job_not_cancelable`, a job that has already ended."""


class RateLimitError(ApiError):
    """429: throttled."""


class ServerError(ApiError):
    """5xx: `service_unavailable` (retry), or an error of the service."""


ERROR_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


class ApiConnectionError(ImagegenClientError):
    """The API could not be reached (refused, timed out, DNS)."""


class WaitTimeout(ImagegenClientError, TimeoutError):
    """A job did not end within the wait's timeout; `job` is the last view seen (None if the
    API could not be read at all)."""

    def __init__(self, job_id: str, timeout: float, job: JobView | None) -> None:
        status = job.status.value if job else "unknown"
        super().__init__(f"job {job_id} did not finish within {timeout:g} s (last status {status})")
        self.job_id = job_id
        self.job = job


class JobFailedError(ImagegenClientError):
    """The job ended FAILED: there is nothing to download."""

    def __init__(self, job: JobView) -> None:
        super().__init__(f"job {job.id} failed: {job.error or 'no reason given'}")
        self.job = job


class JobNotFinishedError(ImagegenClientError):
    """Its images were asked for before the job ended: `wait` for it first."""

    def __init__(self, job: JobView) -> None:
        super().__init__(f"job {job.id} is {job.status.value}, not finished: wait for it first")
        self.job = job


class DownloadError(ImagegenClientError):
    """An image URL did not answer with the image."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"downloading {urlsplit(url).path} answered HTTP {status}")
        self.status = status


class WebhookVerificationError(ImagegenClientError):
    """A webhook delivery is not signed by the secret, was altered, or is too old or too new."""


def error_from_response(response: httpx.Response) -> ApiError:
    """The API's error shape as an exception; anything else (an HTML page from a proxy) as
    `http_<status>` with the start of its body."""
    code, message = f"http_{response.status_code}", response.text[:200].strip()
    details: list[dict[str, Any]] = []
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        if isinstance(error.get("details"), list):
            details = error["details"]
    status = response.status_code
    cls = ERROR_BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, code, message or response.reason_phrase, details)


def _checked(response: httpx.Response) -> Any:
    if response.is_error:
        raise error_from_response(response)
    return response.json()


# --- requests -----------------------------------------------------------------------------
def generate_body(
    prompt: str,
    params: Mapping[str, Any],
    webhook_url: str | None = None,
    webhook_events: list[str] | None = None,
    model: str = MODEL_ID,
) -> dict[str, Any]:
    """The body of `POST /v2/images/generate`, validated by the server's own model first, so a
    typo (`aspectRatio=`) fails here with the message the API would give. Only what the caller
    set is sent: the server's defaults stay the server's."""
    body: dict[str, Any] = {"prompt": prompt, "model": model, "gptImageParams": dict(params)}
    if webhook_url is not None:
        body["webhookUrl"] = webhook_url
    if webhook_events is not None:
        body["webhookEvents"] = list(webhook_events)
    try:
        GenerateRequest.model_validate(body)
    except ValidationError as exc:
        raise BadRequestError(
            400, "invalid_request", "the request body is invalid", validation_details(exc)
        ) from None
    return body


def _job_path(job_id: str) -> str:
    return f"/v2/jobs/{quote(job_id, safe='')}"


def _job_id(job: JobRef) -> str:
    return job.id if isinstance(job, JobView) else str(job)


def _list_params(status: str | None, limit: int, cursor: str | None) -> dict[str, str]:
    params = {"limit": str(limit)}
    if status:
        params["status"] = str(status)
    if cursor:
        params["cursor"] = cursor
    return params


def _page(answer: Any) -> _JobPage:
    return [JobView.model_validate(j) for j in answer.get("jobs") or []], answer.get("nextCursor") or None


class _Backoff:
    """The wait's schedule: `interval` growing by half each poll up to `max_interval`, a
    `Retry-After` taking its place when the API gives one, never past the deadline."""

    def __init__(self, timeout: float, interval: float, max_interval: float, clock: Callable[[], float]):
        self.timeout = timeout
        self.deadline = clock() + timeout
        self.interval = interval
        self.max_interval = max(interval, max_interval)
        self.clock = clock

    def next_delay(self, retry_after: float | None) -> float | None:
        """Seconds to sleep before the next poll, or None when the time is up."""
        left = self.deadline - self.clock()
        if left <= 0:
            return None
        delay = retry_after if retry_after is not None else self.interval
        self.interval = min(self.interval * 1.5, self.max_interval)
        return min(delay, left)


def _image_name(job: JobView, index: int, url: str) -> str:
    suffix = Path(urlsplit(url).path).suffix
    if not suffix:
        suffix = "." + (job.gptImageParams.output_format if job.gptImageParams else "png")
    return f"{job.id}-{index}{suffix}"


def _finished(job: JobView) -> JobView:
    if job.status is JobStatus.FAILED:
        raise JobFailedError(job)
    if job.status is not JobStatus.COMPLETED:
        raise JobNotFinishedError(job)
    return job


# --- webhooks -----------------------------------------------------------------------------
def verify_webhook(
    headers: Mapping[str, str],
    body: bytes | str,
    secret: str,
    tolerance_seconds: int = WEBHOOK_TOLERANCE_SECONDS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check a webhook delivery the Standard Webhooks way and return its JSON payload.

    `headers` as received (any case), `body` the raw bytes exactly as received, `secret` the
    key's `whsec_...` secret (`Client.webhook_secret()`). Raises WebhookVerificationError when
    a header is missing, the timestamp is more than `tolerance_seconds` away from now (a
    replay), or no `v1` signature matches (forged or altered). During a rotation the sender
    signs with both secrets: either one verifies."""
    # The signer's own algorithm (the one the webhooks function signs with), not a copy.
    from imagegen.webhooks import standard_signature

    lower = {k.lower(): v for k, v in headers.items()}
    message_id = lower.get("webhook-id")
    timestamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (message_id and timestamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    now_ts = (now or datetime.now(UTC)).timestamp()
    if abs(now_ts - sent_at) > tolerance_seconds:
        raise WebhookVerificationError("the webhook's timestamp is too old or too new")
    raw = body.encode() if isinstance(body, str) else bytes(body)
    try:
        expected = standard_signature([secret], message_id, sent_at, raw)
    except ValueError:
        raise WebhookVerificationError("the secret is not a whsec_ (base64) secret") from None
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split()):
        raise WebhookVerificationError("no signature matches: forged, altered, or another secret")
    payload: dict[str, Any] = json.loads(raw)
    return payload


# --- the clients --------------------------------------------------------------------------
class _Base:
    def __init__(self, api_url: str, api_key: str) -> None:
        if not api_url:
            raise ValueError("api_url is required")
        if not api_key:
            raise ValueError("api_key is required")
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.api_url!r})"

    def _headers(self) -> dict[str, str]:
        # Per request, not on the HTTP client: image downloads go to presigned S3 URLs, which
        # must never see the API key.
        return {"X-API-Key": self._api_key}

    verify_webhook = staticmethod(verify_webhook)


class Client(_Base):
    """Synchronous client. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(api_url, api_key)
        self._http = httpx.Client(
            base_url=self.api_url, timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )
        self._sleep = sleep
        self._clock = clock

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, headers=self._headers(), **kwargs)
        except httpx.TransportError as exc:
            raise ApiConnectionError(f"cannot reach {self.api_url}: {type(exc).__name__}") from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _checked(self._send(method, path, **kwargs))

    def generate(
        self,
        prompt: str,
        *,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        **params: Any,
    ) -> JobView:
        """Submit a job; `params` are `gptImageParams` (quality, aspect_ratio, output_format,
        background, input_images, input_fidelity, number_of_images). Returns the stored job."""
        body = generate_body(prompt, params, webhook_url, webhook_events)
        submitted = self._call("POST", "/v2/images/generate", json=body)
        return self.get(str(submitted["jobId"]))

    def edit(self, image_urls: list[str], prompt: str, **params: Any) -> JobView:
        """A job that edits (or takes as reference) the images at these http(s) URLs."""
        return self.generate(prompt, input_images=list(image_urls), **params)

    def get(self, job_id: str) -> JobView:
        return JobView.model_validate(self._call("GET", _job_path(job_id)))

    def list_page(self, status: str | None = None, limit: int = 20, cursor: str | None = None) -> _JobPage:
        """One page of the caller's jobs (newest first) and the cursor of the next, if any."""
        return _page(self._call("GET", "/v2/jobs", params=_list_params(status, limit, cursor)))

    def list(self, status: str | None = None, limit: int = 20) -> Iterator[JobView]:
        """Every job of the caller (optionally of one status), fetching pages of `limit` as
        the iteration goes."""
        cursor: str | None = None
        while True:
            jobs, cursor = self.list_page(status, limit, cursor)
            yield from jobs
            if not cursor:
                return

    def cancel(self, job: JobRef) -> JobView:
        """Cancel a job that has not ended; ConflictError (`job_not_cancelable`) if it has."""
        return JobView.model_validate(self._call("POST", _job_path(_job_id(job)) + "/cancel"))

    def wait(
        self,
        job: JobRef,
        timeout: float = DEFAULT_WAIT_SECONDS,
        *,
        interval: float = 0.5,
        max_interval: float = 5.0,
        on_update: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Poll until the job ends (COMPLETED or FAILED) and return it. Polls back off from
        `interval` to `max_interval`; a `Retry-After` sets the next delay; throttling, 5xx
        gateways and connection errors are ridden out. `on_update` sees every change of
        status or progress. WaitTimeout (with the last view) after `timeout` seconds."""
        job_id, last = _job_id(job), job if isinstance(job, JobView) else None
        if last is not None and last.is_terminal:
            return last
        backoff = _Backoff(timeout, interval, max_interval, self._clock)
        while True:
            retry_after = None
            try:
                response = self._send("GET", _job_path(job_id))
                retry_after = retry_after_seconds(response)
                if response.status_code not in TRANSIENT_STATUSES:
                    current = JobView.model_validate(_checked(response))
                    if on_update and (last is None or _moved(last, current)):
                        on_update(current)
                    last = current
                    if current.is_terminal:
                        return current
            except ApiConnectionError:
                pass
            delay = backoff.next_delay(retry_after)
            if delay is None:
                raise WaitTimeout(job_id, timeout, last)
            self._sleep(delay)

    def download(self, job: JobRef, directory: str | Path) -> _Paths:
        """Save a COMPLETED job's images into `directory` (created if need be) as
        `<job id>-<n>.<format>`; returns their paths. A job id or a view whose URLs have
        expired is read again for fresh URLs."""
        view = _finished(job if isinstance(job, JobView) else self.get(job))
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for index in range(len(view.images)):
            url = view.images[index]
            path = target / _image_name(view, index, url)
            status = self._fetch(url, path)
            if status == 403:  # a presigned URL past its lifetime: sign again, once
                view = _finished(self.get(view.id))
                url = view.images[index]
                status = self._fetch(url, path)
            if status != 200:
                raise DownloadError(url, status)
            paths.append(path)
        return paths

    def _fetch(self, url: str, path: Path) -> int:
        partial = path.with_name(path.name + ".part")
        try:
            with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    return response.status_code
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise ApiConnectionError(f"cannot download {urlsplit(url).path}: {type(exc).__name__}") from exc
        partial.replace(path)
        return 200

    def webhook_secret(self) -> str:
        """The API key's `whsec_` webhook signing secret (made on first use)."""
        return str(self._call("GET", "/v2/webhooks/secret")["secret"])

    def rotate_webhook_secret(self) -> str:
        """A new secret signs from now on; the previous one keeps signing for 24 hours."""
        return str(self._call("POST", "/v2/webhooks/secret/rotate")["secret"])


class AsyncClient(_Base):
    """The same, for asyncio: every method a coroutine, `list` an async iterator."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(api_url, api_key)
        self._http = httpx.AsyncClient(
            base_url=self.api_url, timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )
        self._sleep = sleep
        self._clock = clock

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, headers=self._headers(), **kwargs)
        except httpx.TransportError as exc:
            raise ApiConnectionError(f"cannot reach {self.api_url}: {type(exc).__name__}") from exc

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return _checked(await self._send(method, path, **kwargs))

    async def generate(
        self,
        prompt: str,
        *,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        **params: Any,
    ) -> JobView:
        body = generate_body(prompt, params, webhook_url, webhook_events)
        submitted = await self._call("POST", "/v2/images/generate", json=body)
        return await self.get(str(submitted["jobId"]))

    async def edit(self, image_urls: list[str], prompt: str, **params: Any) -> JobView:
        return await self.generate(prompt, input_images=list(image_urls), **params)

    async def get(self, job_id: str) -> JobView:
        return JobView.model_validate(await self._call("GET", _job_path(job_id)))

    async def list_page(
        self, status: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> _JobPage:
        return _page(await self._call("GET", "/v2/jobs", params=_list_params(status, limit, cursor)))

    async def list(self, status: str | None = None, limit: int = 20) -> AsyncIterator[JobView]:
        cursor: str | None = None
        while True:
            jobs, cursor = await self.list_page(status, limit, cursor)
            for job in jobs:
                yield job
            if not cursor:
                return

    async def cancel(self, job: JobRef) -> JobView:
        return JobView.model_validate(await self._call("POST", _job_path(_job_id(job)) + "/cancel"))

    async def wait(
        self,
        job: JobRef,
        timeout: float = DEFAULT_WAIT_SECONDS,
        *,
        interval: float = 0.5,
        max_interval: float = 5.0,
        on_update: Callable[[JobView], None] | None = None,
    ) -> JobView:
        job_id, last = _job_id(job), job if isinstance(job, JobView) else None
        if last is not None and last.is_terminal:
            return last
        backoff = _Backoff(timeout, interval, max_interval, self._clock)
        while True:
            retry_after = None
            try:
                response = await self._send("GET", _job_path(job_id))
                retry_after = retry_after_seconds(response)
                if response.status_code not in TRANSIENT_STATUSES:
                    current = JobView.model_validate(_checked(response))
                    if on_update and (last is None or _moved(last, current)):
                        on_update(current)
                    last = current
                    if current.is_terminal:
                        return current
            except ApiConnectionError:
                pass
            delay = backoff.next_delay(retry_after)
            if delay is None:
                raise WaitTimeout(job_id, timeout, last)
            await self._sleep(delay)

    async def download(self, job: JobRef, directory: str | Path) -> _Paths:
        view = _finished(job if isinstance(job, JobView) else await self.get(job))
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for index in range(len(view.images)):
            url = view.images[index]
            path = target / _image_name(view, index, url)
            status = await self._fetch(url, path)
            if status == 403:
                view = _finished(await self.get(view.id))
                url = view.images[index]
                status = await self._fetch(url, path)
            if status != 200:
                raise DownloadError(url, status)
            paths.append(path)
        return paths

    async def _fetch(self, url: str, path: Path) -> int:
        partial = path.with_name(path.name + ".part")
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    return response.status_code
                with partial.open("wb") as out:
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
        except httpx.TransportError as exc:
            partial.unlink(missing_ok=True)
            raise ApiConnectionError(f"cannot download {urlsplit(url).path}: {type(exc).__name__}") from exc
        partial.replace(path)
        return 200

    async def webhook_secret(self) -> str:
        return str((await self._call("GET", "/v2/webhooks/secret"))["secret"])

    async def rotate_webhook_secret(self) -> str:
        return str((await self._call("POST", "/v2/webhooks/secret/rotate"))["secret"])


def _moved(before: JobView, after: JobView) -> bool:
    return (before.status, before.progress) != (after.status, after.progress)
