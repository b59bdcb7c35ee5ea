"""A local stand-in for API Gateway (REST API, Lambda proxy integration).

Turns each HTTP request into the proxy event API Gateway sends, invokes the API function's
handler in-process, and turns its answer back into HTTP. Like API Gateway it refuses bodies
over 10 MB and answers in our JSON error shape when the integration itself fails.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from imagegen_local.lambda_runtime import FakeLambdaContext

log = logging.getLogger("imagegen.local.gateway")

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
STAGE = "v2"


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


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()


class LocalApiGateway:
    def __init__(
        self,
        handler: Callable[[dict[str, Any], Any], dict[str, Any]],
        function_name: str,
        host: str = "127.0.0.1",
        port: int = 8787,
    ) -> None:
        self.handler = handler
        self.function_name = function_name
        self.server = ThreadingHTTPServer((host, port), self._request_handler_class())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._reply(
                        413,
                        {"Content-Type": "application/json"},
                        _error_body("payload_too_large", "request body over 10 MB"),
                    )
                    return
                body = self.rfile.read(length) if length else b""
                event = proxy_event(
                    self.command, self.path, dict(self.headers.items()), body, self.client_address[0]
                )
                context = FakeLambdaContext(function_name=gateway.function_name, timeout_seconds=29)
                try:
                    answer = gateway.handler(event, context)
                except Exception:  # what API Gateway does when the integration fails
                    log.exception("API function raised")
                    self._reply(
                        502,
                        {"Content-Type": "application/json"},
                        _error_body("bad_gateway", "the API function failed"),
                    )
                    return
                headers = dict(answer.get("headers") or {})
                for name, values in (answer.get("multiValueHeaders") or {}).items():
                    headers[name] = ", ".join(values)
                payload = answer.get("body") or ""
                data = base64.b64decode(payload) if answer.get("isBase64Encoded") else payload.encode()
                self._reply(int(answer.get("statusCode", 200)), headers, data)

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.client_address[0], *args)

        return Handler
