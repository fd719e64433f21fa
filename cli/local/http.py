"""A small HTTP server that turns each request into an API Gateway HTTP API event for the real handler."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.apigw import decode_body, http_api_event

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]
MAX_REQUEST_BYTES = 8 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: ApiHttpServer
    protocol_version = "HTTP/1.1"
    # Keep-alive + Nagle + delayed ACK cost ~40 ms per request: send each response at once.
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024

    def _serve(self) -> None:
        try:
            length = int(self.headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if length < 0:  # a negative length would read until the client hangs up
            self.send_error(400, "bad content-length")
            return
        if length > MAX_REQUEST_BYTES:
            self.send_error(413, "request too large")
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        event = http_api_event(
            self.command, path, query, {k: v for k, v in self.headers.items()}, body, self.client_address[0]
        )
        result = self.server.invoke(event)
        status = int(result.get("statusCode", 500))
        payload = b"" if status in (204, 304) or status < 200 else decode_body(result)
        self.send_response(status)
        headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        headers.setdefault("content-type", "application/json")
        for key, value in headers.items():
            if key not in ("content-length", "connection"):
                self.send_header(key, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # every method reaches the API (which answers an undeclared one with a JSON 4xx), as behind API Gateway
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = do_QUERY = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return


API_CONCURRENCY = 4
"""Requests the handler serves at once by default (`ORCH_API_CONCURRENCY`, 1 to 64): as many Lambda
containers, each taking one at a time (the API's resolver keeps each request's state per thread). The
PostgreSQL pool keeps as many connections open (`functions.api.db.POOL_KEPT`); on SQLite, writers
queue on the database's lock (`BEGIN IMMEDIATE`) while readers go on."""
CONCURRENCY_ENV = "ORCH_API_CONCURRENCY"


def api_concurrency(environ: Mapping[str, str] = os.environ) -> int:
    """`ORCH_API_CONCURRENCY`, or the default; a value that is not a whole number from 1 to 64 is refused."""
    raw = environ.get(CONCURRENCY_ENV, "").strip()
    if not raw:
        return API_CONCURRENCY
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        raise ValueError(f"{CONCURRENCY_ENV} must be a whole number from 1 to 64, not {raw!r}")
    return int(raw)


class ApiHttpServer(ThreadingHTTPServer):
    """Bounds handler calls to `api_concurrency()` at once, as that many Lambda containers would.

    Connections are accepted concurrently (a thread each) and wait for a free slot. While one request waits
    on the database (a round trip, a lock), another runs. The listen backlog is sized for a burst of
    clients (the CLI, workers, the bot, a test harness): socketserver's default of 5 left a burst of 100
    connections timing out or reset while the accept queue overflowed.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # the kernel caps it at net.core.somaxconn

    def __init__(self, address: tuple[str, int], handler: LambdaHandler) -> None:
        super().__init__(address, _Handler)
        self.handler = handler
        self.concurrency = api_concurrency()
        self._slots = threading.BoundedSemaphore(self.concurrency)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._slots:
            try:
                return self.handler(event, None)
            except Exception:  # the handler maps errors itself; this is the last line of defence
                from shared.observability import get_logger

                get_logger().exception("API handler crashed")
                return {"statusCode": 500, "body": '{"code": "internal_error", "message": "internal error"}'}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"
