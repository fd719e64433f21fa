"""API Gateway HTTP API (payload format 2.0) events, built from a plain HTTP request.

The embedded stack's HTTP server and the tests use this to call the real Lambda handler.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx


def http_api_event(
    method: str,
    path: str,
    query: str | Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    source_ip: str = "127.0.0.1",
    stage: str = "$default",
) -> dict[str, Any]:
    if isinstance(query, Mapping):
        raw_query = urlencode({k: v for k, v in query.items() if v is not None})
    else:
        raw_query = query or ""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    params: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    is_base64 = False
    text_body: str | None = None
    if isinstance(body, bytes):
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            text_body, is_base64 = base64.b64encode(body).decode(), True
    else:
        text_body = body
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": lowered,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": lowered.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method.upper(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if params:
        event["queryStringParameters"] = params
    if text_body is not None and text_body != "":
        event["body"] = text_body
    return event


def decode_body(result: Mapping[str, Any]) -> bytes:
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        return base64.b64decode(body)
    return str(body).encode("utf-8")


class InProcessTransport(httpx.BaseTransport):
    """The embedded stack's own API, called in the caller's thread through the HTTP front's `invoke` (the
    same bound on handler calls at once, the same last-line 500), without the socket, the HTTP parsing on
    both sides and a server thread per connection. Once the stack stops it answers as a stopped server
    would: `httpx.ConnectError`."""

    def __init__(self, invoke: Any) -> None:
        self.invoke = invoke
        self.open = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.open:
            raise httpx.ConnectError("the embedded API has stopped", request=request)
        query = request.url.query
        event = http_api_event(
            request.method,
            request.url.path,
            query.decode() if isinstance(query, bytes) else query,
            dict(request.headers),
            request.read(),
        )
        status, headers, content = _answer(self.invoke(event), request.method)
        return httpx.Response(status, headers=headers, content=content, request=request)


def _answer(result: Mapping[str, Any], method: str) -> tuple[int, dict[str, str], bytes]:
    """A handler's result as (status, headers, body) the way the HTTP front sends it: the body decides the
    length, and a 204, a 304 or a HEAD has none."""
    status = int(result.get("statusCode", 500))
    headers = {
        k: str(v)
        for k, v in (result.get("headers") or {}).items()
        if k.lower() not in ("content-length", "connection")
    }
    content = b"" if status in (204, 304) or method.upper() == "HEAD" else decode_body(result)
    return status, headers, content


def query_string(params: Mapping[str, Any]) -> str:
    """`params` as httpx writes them into a URL: True/False as true/false, None as empty, a list or tuple as
    the key repeated."""

    def text(value: Any) -> str:
        if value is True or value is False:
            return "true" if value else "false"
        return "" if value is None else str(value)

    pairs = [
        (key, text(item))
        for key, value in params.items()
        for item in (value if isinstance(value, list | tuple) else [value])
    ]
    return urlencode(pairs)


class DirectCall:
    """What `ApiTransport` does with an `InProcessTransport`, without httpx's client between: the request's
    event built straight from (method, path, params, JSON body, headers), `invoke` called, its result made an
    `httpx.Response` for the same error mapping. httpx's request and URL building, cookies and redirect
    handling were about a tenth of the embedded stack's CPU per engineering task once the socket was gone."""

    def __init__(self, transport: InProcessTransport, base_url: str, headers: Mapping[str, str]) -> None:
        url = httpx.URL(base_url)
        self.transport = transport
        self.base_url = base_url.rstrip("/")
        self.prefix = url.path.rstrip("/")
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.host = url.netloc.decode("ascii")

    def request(
        self, method: str, path: str, json: Any, params: Mapping[str, Any], headers: Mapping[str, str]
    ) -> httpx.Response:
        if not self.transport.open:
            raise httpx.ConnectError("the embedded API has stopped")
        sent = {"host": self.host, **self.headers, **{k.lower(): v for k, v in headers.items()}}
        body: bytes | None = None
        if json is not None:
            body = _json_bytes(json)
            sent["content-type"] = "application/json"
        event = http_api_event(method, self.prefix + path, query_string(params), sent, body)
        status, response_headers, content = _answer(self.transport.invoke(event), method)
        return _DirectResponse((method.upper(), self.base_url + path), status, response_headers, content)


class _DirectResponse(httpx.Response):
    """Its request is built only when something asks for it (an error message): building the URL is most of
    what an httpx request costs."""

    def __init__(self, asked: tuple[str, str], status: int, headers: dict[str, str], content: bytes) -> None:
        super().__init__(status, headers=headers, content=content)
        self.asked = asked

    @property
    def request(self) -> httpx.Request:
        if self._request is None:
            self._request = httpx.Request(*self.asked)
        return self._request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value


def _json_bytes(value: Any) -> bytes:
    """A JSON body as httpx writes one."""
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


class LambdaTransport(InProcessTransport):
    """An httpx transport that calls an API Gateway Lambda handler in-process (tests)."""

    def __init__(self, handler: Any) -> None:
        super().__init__(lambda event: handler(event, None))
        self.handler = handler


_in_process: dict[str, InProcessTransport] = {}
_in_process_lock = threading.Lock()


def serve_in_process(base_url: str, invoke: Any) -> InProcessTransport:
    """Clients of this process made for `base_url` from now on (`in_process_transport`) call `invoke`
    directly instead of connecting. For the embedded stack, whose consumers, jobs and graphs run in the
    process that serves the API; workers and the CLI are other processes and keep using HTTP."""
    transport = InProcessTransport(invoke)
    with _in_process_lock:
        _in_process[base_url.rstrip("/")] = transport
    return transport


def stop_serving_in_process(base_url: str) -> None:
    """New clients for `base_url` connect again, and those made before fail as on a stopped server."""
    with _in_process_lock:
        transport = _in_process.pop(base_url.rstrip("/"), None)
    if transport is not None:
        transport.open = False


def in_process_transport(base_url: str) -> InProcessTransport | None:
    """The transport to use for `base_url` in this process, or None (connect over HTTP)."""
    return _in_process.get(base_url.rstrip("/")) if _in_process else None
