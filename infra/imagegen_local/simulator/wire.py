"""Transport-neutral request/response types and the validation helpers the protocols share."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from .config import FaultScript


class ApiError(Exception):
    """An error answer; each protocol renders it in its own JSON shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    @classmethod
    def injected(cls, status: int, retry_after_seconds: float = 1.0) -> ApiError:
        """The error a fault knob asks for; 429 always tells the client when to retry
        (delay-seconds: RFC 9110 allows whole seconds only)."""
        if status == 429:
            retry_after = str(max(0, round(retry_after_seconds)))
            return cls(429, "Rate limit exceeded, retry later", headers={"Retry-After": retry_after})
        return cls(status, f"Simulated upstream failure ({status})")


@dataclass
class Request:
    method: str
    path: str  # without the query string
    headers: Mapping[str, str]  # names lower-cased
    body: bytes = b""
    script: FaultScript | None = None  # the job's own faults, when a test scripted some

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.lower())
        return value.strip() if value and value.strip() else None

    def bearer_token(self) -> str | None:
        scheme, _, token = (self.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    def json_object(self) -> dict[str, Any]:
        try:
            payload = json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, f"Body is not valid JSON: {error}") from error
        if not isinstance(payload, dict):
            raise ApiError(400, "Body must be a JSON object")
        return payload


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Send only this many bytes of the body (Content-Length still announces all of it), then
    # drop the connection: a download that breaks off midway.
    cut_after: int | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def choice(params: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = params.get(key)
    if value is None:
        return default
    if value not in allowed:
        raise ApiError(400, f"{key} must be one of {', '.join(allowed)}", param=key)
    return value


def int_in_range(params: Mapping[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = params.get(key)
    if value is None:
        return default
    # bool is an int subclass; "true" is not a count.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ApiError(400, f"{key} must be an integer from {low} to {high}", param=key)
    return value


def text(params: Mapping[str, Any], key: str, max_length: int) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{key} is required", param=key)
    if len(value) > max_length:
        raise ApiError(400, f"{key} must be at most {max_length} characters", param=key)
    return value


def url_list(params: Mapping[str, Any], key: str, max_items: int = 16) -> list[str]:
    value = params.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > max_items:
        raise ApiError(400, f"{key} must be a list of at most {max_items} URLs", param=key)
    for url in value:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ApiError(400, f"{key} must contain http(s) URLs", param=key)
    return list(value)


Handler = Callable[..., Response]


@dataclass(frozen=True)
class Route:
    """One endpoint. `kind` picks which scripted failure list applies to it."""

    method: str
    pattern: re.Pattern[str]  # named groups become handler keyword arguments
    kind: Literal["create", "poll"]
    handler: Handler


def route(method: str, pattern: str, kind: Literal["create", "poll"], handler: Handler) -> Route:
    return Route(method, re.compile(pattern), kind, handler)
