"""The HTTP server: one loopback port speaking apiframe v2, apiin.one and OpenAI Images."""

from __future__ import annotations

import logging
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .apiframe import MODEL as APIFRAME_MODEL
from .apiframe import ApiframeProtocol
from .apiinone import ApiinOneProtocol
from .config import CUT_BODY, HTML_PAGE, MALFORMED_KINDS, FaultScript, SimulatorConfig, TaskOutcome
from .faults import ApiFault, CallKind, FaultInjector
from .openai_images import OpenAIImagesProtocol
from .tasks import FileStore, Task, TaskRecord, TaskStore
from .webhooks import WebhookSender
from .wire import ApiError, Request, Response, Route

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024  # 16 input images for an OpenAI edit fit comfortably
CHUNK_SIZE = 64 * 1024
RECORDS_PATH = "/_simulator/tasks"  # what the simulator created, for benchmarks and chaos runs

# What a broken proxy or a half-deployed upstream answers with a 200: JSON cut off midway, an
# HTML page, and JSON of the wrong shape. The first is built from the real answer.
_HTML_PAGE = b"<html><head><title>Service</title></head><body>Please try again later.</body></html>"


class UpstreamProtocol(Protocol):
    name: str
    routes: list[Route]

    def credential(self, request: Request) -> str | None: ...
    def auth_error(self, missing: bool) -> ApiError: ...
    def error_response(self, error: ApiError) -> Response: ...


class UpstreamSimulator:
    """A real HTTP server on a background thread; see the package docstring for usage."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.created_tasks: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, int]] = []
        self.faults = FaultInjector(self.config.seed)
        self.files = FileStore()
        self.tasks = TaskStore(self.files, self.file_url)
        self.scripts: list[FaultScript] = []
        self._webhooks: WebhookSender | None = None
        self._address = (host, port)
        self._protocols: list[UpstreamProtocol] = [
            ApiframeProtocol(self),
            ApiinOneProtocol(self),
            OpenAIImagesProtocol(self),
        ]
        self._stopping = threading.Event()  # wakes handlers that sleep (latency, hangs)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._record_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> UpstreamSimulator:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = _Server(self._address, _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="upstream-simulator",
            daemon=True,
        )
        self._thread.start()
        self._webhooks = WebhookSender(APIFRAME_MODEL, lambda: self.config.webhook_progress_interval)
        log.info("upstream simulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        if self._server is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._webhooks is not None:
            self._webhooks.stop()
        self.tasks.shutdown()

    def __enter__(self) -> UpstreamSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
            host = "127.0.0.1"  # bound to all interfaces: loopback is still the usable address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # -- scripted faults, records -----------------------------------------------------------

    def script(
        self,
        match: str,
        *,
        create_failures: list[int] | None = None,
        poll_failures: list[int] | None = None,
        download_failures: list[int] | None = None,
        task_outcome: TaskOutcome | None = None,
        fail_reason: str | None = None,
        hang_seconds: float | None = None,
    ) -> FaultScript:
        """Script faults for the one job whose prompt (or Idempotency-Key) contains `match`;
        see FaultScript. Returns the live script: its lists empty as the faults are used."""
        script = FaultScript(
            match=match,
            create_failures=list(create_failures or []),
            poll_failures=list(poll_failures or []),
            download_failures=list(download_failures or []),
            task_outcome=task_outcome,
            fail_reason=fail_reason,
            hang_seconds=hang_seconds,
        )
        with self._record_lock:
            self.scripts.append(script)
        return script

    def clear_scripts(self) -> None:
        with self._record_lock:
            self.scripts.clear()

    def remove_scripts(self, scripts: list[FaultScript]) -> None:
        with self._record_lock:
            self.scripts = [s for s in self.scripts if not any(s is gone for gone in scripts)]

    def task_records(self) -> list[TaskRecord]:
        """Every task created so far, in creation order, with when it finished."""
        return [task.record() for task in self.tasks.all()]

    @property
    def webhooks(self) -> WebhookSender:
        if self._webhooks is None:
            raise RuntimeError("simulator not started")
        return self._webhooks

    # -- helpers for the protocol modules --------------------------------------------------

    def file_url(self, name: str) -> str:
        return f"{self.base_url}/files/{name}"

    def record_created(self, protocol: str, task_id: str, request: Any, idempotency_key: str | None) -> None:
        entry = {
            "protocol": protocol,
            "task_id": task_id,
            "request": request,
            "idempotency_key": idempotency_key,
        }
        with self._record_lock:
            self.created_tasks.append(entry)

    def wait(self, seconds: float) -> bool:
        """Sleep, but wake early on stop(); True if the full time passed."""
        return not self._stopping.wait(seconds)

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/files/"):
            return self._serve_file(request)
        if request.path == RECORDS_PATH:
            return Response.json(200, {"tasks": [record.as_json() for record in self.task_records()]})
        for protocol in self._protocols:
            for route in protocol.routes:
                match = route.pattern.fullmatch(request.path)
                if match is None:
                    continue
                if request.method not in (route.method, "HEAD" if route.method == "GET" else ""):
                    return protocol.error_response(ApiError(405, f"{request.method} not allowed here"))
                params = {key: unquote(value) for key, value in match.groupdict().items()}
                return self._call(protocol, route, request, params)
        return _not_found(f"no route for {request.method} {request.path}")

    def _call(
        self, protocol: UpstreamProtocol, route: Route, request: Request, params: dict[str, str]
    ) -> Response:
        fault: ApiFault | None = None
        try:
            self._authenticate(protocol, request)
            request.script = self._script_for(route.kind, request, params)
            fault = self.faults.api_fault(self.config, route.kind, request.script)
            if fault is not None and fault.status is not None:
                raise ApiError.injected(fault.status, self.config.retry_after_seconds)
            response = route.handler(request, **params)
        except ApiError as error:
            response = protocol.error_response(error)
        if fault is not None and fault.malformed and response.status < 300:
            # The work is done (a create made its task), only the answer is garbled.
            response = self._malformed(response, fault.malformed_kind)
        if fault is not None and fault.hang_seconds:
            # Hang after the work is done: a create that "times out" has still created its
            # task, which is exactly the case where client retries duplicate work.
            self.wait(fault.hang_seconds)
        return response

    def _authenticate(self, protocol: UpstreamProtocol, request: Request) -> None:
        key = protocol.credential(request)
        if key is None:
            raise protocol.auth_error(missing=True)
        if self.config.api_key is not None and key != self.config.api_key:
            raise protocol.auth_error(missing=False)

    def _script_for(self, kind: CallKind, request: Request, params: dict[str, str]) -> FaultScript | None:
        """The script of the job a call is about: by the create call's body or Idempotency-Key,
        by the task a status call asks about."""
        if kind == "create":
            with self._record_lock:
                scripts = list(self.scripts)
            key = request.header("Idempotency-Key")
            return next((s for s in scripts if s.applies_to(request.body, key)), None)
        task = self.tasks.find(next(iter(params.values()), ""))
        return task.script if task is not None else None

    def _malformed(self, response: Response, kind: int | None) -> Response:
        if kind is None:
            kind = MALFORMED_KINDS[self.faults.pick(len(MALFORMED_KINDS))]
        if kind == CUT_BODY:
            return Response(200, response.body[: max(1, len(response.body) // 2)], response.content_type)
        if kind == HTML_PAGE:
            return Response(200, _HTML_PAGE, "text/html; charset=utf-8")
        return Response(200, b'{"ok": true}')

    def _serve_file(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return _not_found("files are read-only")
        name = unquote(request.path.removeprefix("/files/"))
        stored = self.files.get(name)
        if stored is None:
            return _not_found("no such file")
        task = self._task_of_file(name)
        fault = self.faults.api_fault(self.config, "download", task.script if task else None)
        if fault is not None and fault.status is not None:
            message = f"Simulated CDN failure ({fault.status})"
            return Response.json(fault.status, {"error": {"message": message}})
        if fault is not None and fault.hang_seconds:
            self.wait(fault.hang_seconds)
        cut_after = len(stored.data) // 2 if fault is not None and fault.broken else None
        return Response(200, stored.data, stored.content_type, cut_after=cut_after)

    def _task_of_file(self, name: str) -> Task | None:
        # Files are named {task_id}-{n}.{ext} (tasks.py).
        return self.tasks.find(name.rsplit("-", 1)[0])

    def record_request(self, method: str, path: str, status: int) -> None:
        with self._record_lock:
            self.requests.append((method, path, status))


def _not_found(message: str) -> Response:
    return Response.json(404, {"error": {"code": "not_found", "message": message}})


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must never block interpreter exit
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: UpstreamSimulator
    ) -> None:
        super().__init__(address, handler)
        self.simulator = sim

    def handle_error(self, request: Any, client_address: Any) -> None:
        """socketserver prints a traceback for any error; a client that hung up (its read
        timed out, a deadline passed) is an ordinary event under faults, not one worth it."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client %s hung up", client_address[0])
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real providers; needs Content-Length always
    timeout = 60  # idle keep-alive connections give their thread back eventually
    # Headers and body go out in separate writes; with Nagle on, keep-alive clients wait
    # ~40 ms for a delayed ACK on every answer.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _dispatch(self) -> None:
        sim = self.server.simulator
        path = urlsplit(self.path).path
        try:
            body = self._read_body()
        except ValueError as error:
            status = 413 if "large" in str(error) else 400
            response = Response.json(status, {"error": {"message": str(error)}})
            self.close_connection = True  # the unread body would corrupt the next request
        else:
            headers = {name.lower(): value for name, value in self.headers.items()}
            request = Request(self.command, path, headers, body)
            try:
                response = sim.handle(request)
            except Exception:
                log.exception("simulator failed on %s %s", self.command, path)
                response = Response.json(500, {"error": {"message": "simulator bug"}})
        sim.record_request(self.command, path, response.status)
        self._write(response)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("request body too large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # optional trailers
                return bytes(body)
            body += self.rfile.read(size)
            self.rfile.readline()  # CRLF after each chunk
            if len(body) > MAX_BODY_BYTES:
                raise ValueError("request body too large")

    def _write(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                # Chunked writes: large images stream instead of one giant send.
                view = memoryview(response.body)[: response.cut_after]
                for offset in range(0, len(view), CHUNK_SIZE):
                    self.wfile.write(view[offset : offset + CHUNK_SIZE])
                if response.cut_after is not None:
                    self.wfile.flush()
                    self.close_connection = True  # the rest never comes: the client sees a short body
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # client gave up (e.g. its read timeout fired)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)
