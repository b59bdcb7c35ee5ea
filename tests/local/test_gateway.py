"""The local API gateway answers every request as the deployed API Gateway does (#9.8): other
methods, unknown methods, over-long request lines and headers, malformed request lines and
framing all get our JSON error shape, never HTML, never a dropped connection.

Requests are written on a raw socket, byte for byte, as a misbehaving client would send them."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from imagegen_local.gateway import MAX_BODY_BYTES, LocalApiGateway


def exchange(url: str, *requests: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Send each request on one connection, in turn; the answers, parsed as HTTP/1.1. A dropped
    connection raises (http.client.RemoteDisconnected), failing the test."""
    parts = urlsplit(url)
    answers = []
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=30) as sock:
        for request in requests:
            sock.sendall(request)
            method = request.split(b" ", 1)[0].decode("latin-1")
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
            answers.append((response.status, dict(response.getheaders()), response.read()))
    return answers


def send(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    [answer] = exchange(url, request)
    return answer


def assert_json_error(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got_status, headers, body = answer
    assert got_status == status, body
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"}
    assert (error["code"], error["details"]) == (code, [])
    assert isinstance(error["message"], str) and error["message"]


def request(line: str, *headers: str, body: bytes = b"") -> bytes:
    head = "\r\n".join([line, "Host: localhost", *headers, "", ""])
    return head.encode("latin-1") + body


@pytest.fixture(scope="module")
def url(outputs: dict[str, str]) -> str:
    return outputs["ApiUrl"]


@pytest.mark.parametrize(
    "line",
    [
        "PUT /v2/images/generate HTTP/1.1",
        "DELETE /v2/jobs/some-job HTTP/1.1",
        "PATCH /v2/jobs/some-job HTTP/1.1",
        "GET /v2/images/generate HTTP/1.1",
        "POST /v2/jobs/some-job HTTP/1.1",
        "OPTIONS /v2/images/generate HTTP/1.1",  # no CORS configured: no preflight route
        "GET /v3/whatever HTTP/1.1",
        "GET /v2/jobs/ HTTP/1.1",
    ],
)
def test_a_method_or_path_the_api_has_no_route_for_is_404_as_in_the_cloud(url, line):
    assert_json_error(send(url, request(line, "Content-Length: 0")), 404, "not_found")


def test_head_is_answered_without_a_body(url):
    status, headers, body = send(url, request("HEAD /v2/jobs/some-job HTTP/1.1"))

    assert (status, headers["Content-Type"], body) == (404, "application/json", b"")
    assert int(headers["Content-Length"]) > 0  # what a GET of the same error would carry


@pytest.mark.parametrize("method", ["get", "post", "FOO", "PROPFIND"])
def test_a_method_api_gateway_does_not_know_is_405(url, method):
    assert_json_error(send(url, request(f"{method} /v2/jobs/some-job HTTP/1.1")), 405, "method_not_allowed")


def test_a_request_line_over_8192_bytes_is_414(url):
    line = f"GET /v2/jobs/{'a' * 9000} HTTP/1.1"
    assert_json_error(send(url, request(line)), 414, "uri_too_long")


@pytest.mark.parametrize(
    "headers",
    [
        [f"X-Big: {'a' * 11000}"],  # API Gateway: request line and headers over 10240 bytes
        [f"X-Huge: {'a' * 70000}"],  # one header line longer than the HTTP parser reads
        [f"X-Many-{i}: {i}" for i in range(120)],  # more headers than the HTTP parser takes
    ],
    ids=["over-10240-bytes", "line-over-64k", "too-many"],
)
def test_headers_over_the_limits_are_431(url, headers):
    assert_json_error(
        send(url, request("GET /v2/jobs/some-job HTTP/1.1", *headers)), 431, "headers_too_large"
    )


@pytest.mark.parametrize(
    "raw",
    [
        request("GET /v2/jobs/a b HTTP/1.1"),  # a space in the path
        request("POST /v2/images/generate HTTP/1.1", "Content-Length: abc"),
        request("POST /v2/images/generate HTTP/1.1", "Content-Length: -5"),
        request("POST /v2/images/generate HTTP/1.1", "Content-Length: 2", "Content-Length: 3", body=b"{}"),
        request(
            "POST /v2/images/generate HTTP/1.1", "Transfer-Encoding: chunked", body=b"zz\r\n{}\r\n0\r\n\r\n"
        ),
        b"HELLO\r\n\r\n",
        b"GET /v2/jobs/x\r\n\r\n",  # no version: HTTP/0.9, which API Gateway does not speak
    ],
    ids=[
        "space-in-path",
        "content-length-abc",
        "negative-length",
        "two-lengths",
        "bad-chunk",
        "garbage",
        "http-0.9",
    ],
)
def test_malformed_requests_are_400(url, raw):
    assert_json_error(send(url, raw), 400, "invalid_request")


def test_a_body_over_10_mb_is_413_without_reading_it(url):
    raw = request("POST /v2/images/generate HTTP/1.1", f"Content-Length: {MAX_BODY_BYTES + 1}")
    assert_json_error(send(url, raw), 413, "payload_too_large")


def test_a_client_that_sends_a_body_over_10_mb_reads_the_413(url):
    response = httpx.post(f"{url}/v2/images/generate", content=b"x" * (MAX_BODY_BYTES + 1), timeout=60)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_an_unsupported_http_version_is_505(url):
    assert_json_error(send(url, request("GET /v2/jobs/x HTTP/2.0")), 505, "http_version_not_supported")


def test_a_chunked_body_reaches_the_function(url, outputs):
    body = json.dumps({"prompt": "x", "model": "dall-e-2"}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    raw = request(
        "POST /v2/images/generate HTTP/1.1",
        f"X-API-Key: {outputs['ApiKey']}",
        "Transfer-Encoding: chunked",
        body=chunked,
    )

    status, _, answer = send(url, raw)

    # The function validated the body it was given: the model is refused, field by field.
    assert status == 400
    assert [d["field"] for d in json.loads(answer)["error"]["details"]] == ["model"]


def test_the_connection_stays_usable_after_an_answered_error(url):
    refused = request("PUT /v2/images/generate HTTP/1.1", "Content-Length: 2", body=b"{}")
    routed = request("GET /v2/nothing-here HTTP/1.1")

    first, second = exchange(url, refused, routed)

    assert_json_error(first, 404, "not_found")
    assert_json_error(second, 404, "not_found")


# --- a gateway of its own: CORS preflights and a failing integration ---------------------------
@pytest.fixture
def gateway() -> Iterator[Any]:
    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        if event["path"].endswith("/explode"):
            raise RuntimeError("the function failed")
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    made = LocalApiGateway(
        invoke, port=0, cors_allow_origins=["https://app.example.com", "https://admin.example.com"]
    )
    made.start()
    yield made
    made.stop()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://admin.example.com", "https://admin.example.com"),
        ("https://evil.example", "https://app.example.com"),
    ],
)
def test_a_preflight_is_answered_as_cdk_configures_it(gateway, origin, allowed):
    raw = request("OPTIONS /v2/jobs/some-job HTTP/1.1", f"Origin: {origin}")

    status, headers, body = send(gateway.url, raw)

    assert (status, body) == (204, b"")
    assert headers["Access-Control-Allow-Origin"] == allowed  # never the stranger's origin
    assert headers["Access-Control-Allow-Methods"] == "GET"
    assert headers["Access-Control-Allow-Headers"] == "Content-Type,X-API-Key,Idempotency-Key"


def test_a_failing_function_is_a_502_in_our_shape(gateway):
    assert_json_error(send(gateway.url, request("GET /v2/jobs/explode HTTP/1.1")), 502, "internal_error")
