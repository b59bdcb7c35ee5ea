"""CORS on every answer of the API function, errors included (a browser reads an error body
only if it carries the header). Preflight OPTIONS requests are answered by API Gateway."""

from __future__ import annotations

from typing import Any


def with_cors(answer: dict[str, Any], event: dict[str, Any], allowed_origins: list[str]) -> dict[str, Any]:
    if not allowed_origins:
        return answer
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    origin = headers.get("origin")
    if "*" in allowed_origins:
        value = "*"
    elif origin in allowed_origins:
        value = origin
    else:
        return answer  # not an allowed origin: no header, the browser refuses to share the answer
    extra = {"Access-Control-Allow-Origin": value, "Vary": "Origin"}
    if "multiValueHeaders" in answer:
        answer["multiValueHeaders"] = {**answer["multiValueHeaders"], **{k: [v] for k, v in extra.items()}}
    else:
        answer["headers"] = {**(answer.get("headers") or {}), **extra}
    return answer
