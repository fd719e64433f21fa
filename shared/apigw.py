"""API Gateway HTTP API (payload format 2.0) events, built from a plain HTTP request.

The embedded stack's HTTP server and the tests use this to call the real Lambda handler.
"""

from __future__ import annotations

import base64
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


class LambdaTransport(httpx.BaseTransport):
    """An httpx transport that calls an API Gateway Lambda handler in-process (tests, the embedded stack)."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        event = http_api_event(
            request.method,
            request.url.path,
            request.url.query.decode() if isinstance(request.url.query, bytes) else request.url.query,
            dict(request.headers),
            request.read(),
        )
        result = self.handler(event, None)
        headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
        return httpx.Response(int(result["statusCode"]), headers=headers, content=decode_body(result))
