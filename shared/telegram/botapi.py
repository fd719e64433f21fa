"""The Bot API transport: one kept-alive stdlib `http.client` connection, one call, no retries
(`shared.telegram.client.TelegramClient` adds those).

Why not aiogram: importing it costs seconds of cold start, and the poller must be stoppable in
the middle of a 25-second long poll. Owning the socket lets `interrupt()` shut it down from
another thread, so `stop()` returns at once. The token is part of every URL
(`/bot<token>/<method>`), so no error message, log line or exception chain from this module
contains a URL.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from typing import Any
from urllib.parse import SplitResult, urlsplit

from shared.retry import once_more_on_disconnect


class BotApiError(Exception):
    """Telegram answered `ok: false` (or not with JSON)."""

    def __init__(
        self, method: str, error_code: int, description: str, retry_after: int | None = None
    ) -> None:
        super().__init__(f"Telegram refused {method}: {description} (error {error_code})")
        self.method, self.error_code, self.description, self.retry_after = (
            method,
            error_code,
            description,
            retry_after,
        )


class BotApiUnreachable(Exception):
    """No answer from the Bot API server (connection refused, timeout, reset)."""

    def __init__(self, method: str, base_url: str, reason: str) -> None:
        super().__init__(f"cannot reach the Telegram Bot API at {base_url} ({method}): {reason}")
        self.method, self.base_url = method, base_url


class BotApiClosed(Exception):
    """`interrupt()` or `close()` was called; no more requests."""


def _split_base(base_url: str) -> tuple[SplitResult, str]:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the Bot API base must be an http(s) URL")
    return parts, parts.hostname


def check_base_url(base_url: str) -> str:
    """`base_url` if it is an http(s) URL with a host, else `ValueError`."""
    _split_base(base_url)
    return base_url


class BotApi:
    """One connection, reused (keep-alive); use one instance per thread."""

    def __init__(self, token: str, base_url: str = "https://api.telegram.org", timeout: float = 30.0) -> None:
        parts, host = _split_base(base_url)
        self.base_url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._scheme, self._host, self._port = parts.scheme, host, parts.port
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """POST `params` as JSON to `method`; the `result`, or `BotApiError` / `BotApiUnreachable`."""
        body = json.dumps({k: v for k, v in (params or {}).items() if v is not None}).encode("utf-8")
        path = f"{self._prefix}/bot{self._token}/{method}"
        wait = self.timeout if timeout is None else timeout
        try:  # a kept-alive connection the server closed meanwhile: reconnect once
            status, raw = once_more_on_disconnect()(self._exchange, method, path, body, wait)
        except (OSError, http.client.HTTPException) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise BotApiUnreachable(method, self.base_url, reason) from None
        return _result(method, status, raw)

    def _exchange(self, method: str, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        conn: http.client.HTTPConnection | None = None
        try:
            conn = self._connection(timeout)
            conn.request("POST", path, body=body, headers={"content-type": "application/json"})
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            if conn is not None:
                self._drop(conn)
            if self._closed:
                raise BotApiClosed(method) from None
            raise

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            if self._closed:
                raise BotApiClosed("closed")
            if self._conn is None:
                self._conn = self._new_connection(timeout)
            conn = self._conn
        conn.timeout = timeout
        if conn.sock is None:
            conn.connect()
            with self._lock:
                if self._closed:  # interrupted while connecting
                    _shutdown(conn)
                    raise BotApiClosed("closed")
        else:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.close()

    def interrupt(self) -> None:
        """From any thread: end a request in flight now and refuse further ones."""
        with self._lock:
            self._closed = True
            conn = self._conn
        if conn is not None:
            _shutdown(conn)

    def close(self) -> None:
        self.interrupt()
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _shutdown(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)


def _result(method: str, status: int, raw: bytes) -> Any:
    try:
        data = json.loads(raw)
    except ValueError:
        raise BotApiError(method, status, f"HTTP {status} without a JSON body") from None
    if not isinstance(data, dict):
        raise BotApiError(method, status, f"HTTP {status} with an unexpected body")
    if data.get("ok") is True and 200 <= status < 300:
        return data.get("result")
    parameters = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
    retry_after = parameters.get("retry_after") if parameters else None
    raise BotApiError(
        method,
        int(data.get("error_code") or status),
        str(data.get("description") or f"HTTP {status}"),
        retry_after if isinstance(retry_after, int) else None,
    )
