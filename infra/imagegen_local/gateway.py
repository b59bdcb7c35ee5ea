"""A local stand-in for API Gateway (REST API, Lambda proxy integration), answering as the
deployed API does (imagegen_infra/constructs/api.py).

It serves the API's routes only: a request for one of them becomes the proxy event API Gateway
sends, the API function runs through the local Lambda runtime (one invocation per execution
environment, as in Lambda), and its answer goes back as HTTP. Everything else is answered by
the gateway itself, in our JSON error shape, never in HTML and never by dropping the
connection:

- another path, or another method on a route: 404 not_found (the REST API's "missing
  authentication token" answer, which the deployed API rewrites to 404);
- OPTIONS on a route when CORS is configured: the preflight answer API Gateway gives;
- a method API Gateway does not know (`FOO`, lowercase `get`): 405;
- a request line over 8192 bytes: 414; request line and headers over 10240 bytes (API
  Gateway's quota) or a header line too long: 431;
- a body over 10 MB: 413; a malformed request line (a space in the path), a Content-Length
  that is not a number or broken chunked framing: 400;
- the function failing (it raised, or answered something that is not a proxy response): 502,
  as API Gateway answers when the integration fails;
- more requests than the function may run at once (`max_concurrency`, as a function's
  reserved concurrency): a request waits for a free slot for a while (`slot_wait_seconds`,
  well inside the 29 s API Gateway gives an integration and the 30 s clients commonly wait),
  then is answered 503 service_unavailable with Retry-After, never 500 and never a dropped
  connection. The listen backlog holds a burst of
  connections (`LISTEN_BACKLOG`), where the standard library's 5 reset all but a few.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from imagegen_infra import blueprint as bp

log = logging.getLogger("imagegen.local.gateway")

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_REQUEST_LINE_BYTES = 8192  # API Gateway's URL length limit
MAX_REQUEST_HEAD_BYTES = 10240  # API Gateway: request line and header values together
STAGE = "v2"
# Connections the kernel holds for accept() (capped by net.core.somaxconn); a burst of 1,000
# clients overflowed socketserver's default of 5 and was answered with connection resets.
LISTEN_BACKLOG = 2048
# Invocations of the API function at once. Each busy one is an execution environment; more of
# them on a laptop's few cores only make every request slower (cold starts run one at a time):
# a 300-submit burst with 32 at once on 2 busy cores took 30 s an answer, past the clients'
# timeout. The rest wait their turn here, for at most SLOT_WAIT_SECONDS, then get a 503.
MAX_CONCURRENCY = 8
SLOT_WAIT_SECONDS = 10.0
RETRY_AFTER_SECONDS = 1
# The methods API Gateway accepts; any other is refused before routing.
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
ROUTES = bp.API_ROUTES  # the deployed API's resources and methods: explicit routes, no catch-all
# Headers of the connection, not of the answer: the gateway sets them, never the function.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
# What CDK's add_cors_preflight allows (constructs/api.py).
PREFLIGHT_HEADERS = "Content-Type,X-API-Key,Idempotency-Key"

ERROR_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    431: "headers_too_large",
    501: "not_implemented",
    502: "internal_error",  # API Gateway's DEFAULT_5XX, rewritten to our shape
    503: "service_unavailable",
    505: "http_version_not_supported",
}

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


class BadRequest(Exception):
    """A request the gateway answers itself, with this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def proxy_event(
    method: str, raw_path: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    parts = urlsplit(raw_path)
    query = parse_qs(parts.query, keep_blank_values=True)
    try:
        text_body: str | None = body.decode("utf-8") if body else None
        is_base64 = False
    except UnicodeDecodeError:
        text_body, is_base64 = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}",
        "path": parts.path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": parts.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{STAGE}{parts.path}",
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "protocol": "HTTP/1.1",
            "accountId": "123456789012",
            "apiId": "local",
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", "")},
        },
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


def error_body(status: int, message: str) -> bytes:
    code = ERROR_CODES.get(status, "invalid_request" if status < 500 else "internal_error")
    return json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()


def proxy_answer(answer: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a Lambda proxy response; anything else raises (a 502)."""
    if not isinstance(answer, dict):
        raise TypeError(f"the function answered {type(answer).__name__}, not a proxy response")
    status = int(answer.get("statusCode", 200))
    if not 100 <= status <= 599:
        raise ValueError(f"the function answered status {status}")
    headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
    for name, values in (answer.get("multiValueHeaders") or {}).items():
        headers[str(name)] = ", ".join(str(v) for v in values)
    for name in [n for n in headers if n.lower() in HOP_BY_HOP]:  # the gateway's own
        del headers[name]
    payload = answer.get("body") or ""
    data = base64.b64decode(payload) if answer.get("isBase64Encoded") else str(payload).encode()
    return status, headers, data


def route_method(path: str) -> str | None:
    """The method the API serves at `path`, or None: no such resource."""
    segments = path.split("/")
    for method, template in ROUTES:
        expected = template.split("/")
        if len(expected) == len(segments) and all(
            want == got or (want.startswith("{") and got)
            for want, got in zip(expected, segments, strict=True)
        ):
            return method
    return None


class _Server(ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback to stderr for any error; a client that went away
        (it gave up waiting) is not one worth a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.info("client %s went away before its answer", client_address[0])
            return
        log.exception("local API gateway: request from %s failed", client_address[0])


class LocalApiGateway:
    """Binds its port when made (a busy port fails here, before anything else starts)."""

    def __init__(
        self,
        invoke: Invoke,
        host: str = "127.0.0.1",
        port: int = 8787,
        cors_allow_origins: Sequence[str] = (),
        max_concurrency: int = MAX_CONCURRENCY,
        slot_wait_seconds: float = SLOT_WAIT_SECONDS,
    ) -> None:
        self.invoke = invoke
        self.cors_allow_origins = list(cors_allow_origins)
        self.slots = threading.BoundedSemaphore(max_concurrency)
        self.slot_wait_seconds = slot_wait_seconds
        self.server = _Server((host, port), self._request_handler_class())
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread:
            self.server.shutdown()
            self._thread.join(timeout=5)
        self.server.server_close()

    def preflight_headers(self, origin: str | None, method: str) -> dict[str, str]:
        """CDK's preflight integration: the request's origin when allowed, else the first."""
        allowed = self.cors_allow_origins
        value = origin if origin in allowed else allowed[0]
        headers = {"Access-Control-Allow-Headers": PREFLIGHT_HEADERS, "Access-Control-Allow-Origin": value}
        if value != "*":
            headers["Vary"] = "Origin"
        headers["Access-Control-Allow-Methods"] = method
        return headers

    def error_headers(self) -> dict[str, str]:
        """Gateway responses carry the CORS header only when one origin is allowed."""
        headers = {"Content-Type": "application/json"}
        if len(self.cors_allow_origins) == 1:
            headers["Access-Control-Allow-Origin"] = self.cors_allow_origins[0]
        return headers

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                """BaseHTTPRequestHandler's, with API Gateway's limits, and every method
                routed here (the base class answers unknown ones with an HTML 501)."""
                try:
                    self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
                except TimeoutError:
                    self.close_connection = True
                    return
                if not self.raw_requestline:
                    self.close_connection = True
                    return
                if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
                    self.requestline, self.command, self.request_version = "", "", self.protocol_version
                    self.send_error(414, f"the request line is over {MAX_REQUEST_LINE_BYTES} bytes")
                    return
                if not self.parse_request():  # it answered, through send_error
                    return
                if self.request_version == "HTTP/0.9":  # a request line without a version
                    self.send_error(400, "the request line has no HTTP version")
                    return
                try:
                    self._serve()
                except BadRequest as refused:
                    self.send_error(refused.status, refused.message)
                self.wfile.flush()

            def _serve(self) -> None:
                head = len(self.raw_requestline) + sum(len(k) + len(v) for k, v in self.headers.items())
                if head > MAX_REQUEST_HEAD_BYTES:
                    raise BadRequest(431, f"request line and headers are over {MAX_REQUEST_HEAD_BYTES} bytes")
                if self.command not in HTTP_METHODS:
                    raise BadRequest(405, f"method {self.command!r} is not supported")
                body = self._read_body()
                path = urlsplit(self.path).path
                method = route_method(path)
                if method is not None and self.command == "OPTIONS" and gateway.cors_allow_origins:
                    self._reply(204, gateway.preflight_headers(self.headers.get("Origin"), method), b"")
                elif method is None or self.command != method:
                    self._reply(404, gateway.error_headers(), error_body(404, "no such route"))
                else:
                    self._integrate(body)

            def _read_body(self) -> bytes:
                if "Transfer-Encoding" in self.headers:
                    if self.headers["Transfer-Encoding"].strip().lower() != "chunked":
                        self.close_connection = True
                        raise BadRequest(501, "only the chunked transfer encoding is supported")
                    return self._read_chunked()
                lengths = set(self.headers.get_all("Content-Length") or [])
                if not lengths:
                    return b""
                if len(lengths) > 1 or not re.fullmatch(r"[0-9]{1,18}", next(iter(lengths)).strip()):
                    self.close_connection = True  # where this request's body ends is unknown
                    raise BadRequest(400, "the Content-Length header is not a number")
                length = int(next(iter(lengths)))
                if length > MAX_BODY_BYTES:
                    self.close_connection = True  # the body is not read
                    raise BadRequest(413, "request body over 10 MB")
                body = self.rfile.read(length)
                if len(body) < length:
                    self.close_connection = True
                    raise BadRequest(400, "the request body is shorter than its Content-Length")
                return body

            def _read_chunked(self) -> bytes:
                body = bytearray()
                while True:
                    size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                    if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size_line):
                        self.close_connection = True
                        raise BadRequest(400, "malformed chunked request body")
                    size = int(size_line, 16)
                    if size == 0:
                        break
                    if len(body) + size > MAX_BODY_BYTES:
                        self.close_connection = True
                        raise BadRequest(413, "request body over 10 MB")
                    body += self.rfile.read(size)
                    if self.rfile.read(2) != b"\r\n":
                        self.close_connection = True
                        raise BadRequest(400, "malformed chunked request body")
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return bytes(body)

            def _integrate(self, body: bytes) -> None:
                event = proxy_event(
                    self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
                )
                if not gateway.slots.acquire(timeout=gateway.slot_wait_seconds):
                    log.warning("every slot of the API function was busy for %ss", gateway.slot_wait_seconds)
                    headers = {**gateway.error_headers(), "Retry-After": str(RETRY_AFTER_SECONDS)}
                    message = "the service is busy; retry after a moment"
                    self._reply(503, headers, error_body(503, message))
                    return
                try:
                    status, headers, data = proxy_answer(gateway.invoke(event))
                except Exception:  # what API Gateway does when the integration fails
                    log.exception("API function failed")
                    self._reply(502, gateway.error_headers(), error_body(502, "Internal server error"))
                    return
                finally:
                    gateway.slots.release()
                self._reply(status, headers, data)

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                """Every error the base class answers (malformed request line, header lines
                too long, too many headers, unsupported HTTP version) in our JSON shape."""
                self.close_connection = True  # after a malformed request, the stream is unknown
                if self.request_version == "HTTP/0.9":  # not parsed that far: answer in HTTP/1.1
                    self.request_version = self.protocol_version
                text = message or HTTPStatus(code).phrase
                self._reply(code, {**gateway.error_headers(), "Connection": "close"}, error_body(code, text))

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if getattr(self, "command", None) != "HEAD":
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.client_address[0], *args)

        return Handler
