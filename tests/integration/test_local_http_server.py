"""The embedded API server speaks correct HTTP/1.1 keep-alive, including for bodiless statuses."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from cli.local.http import API_CONCURRENCY, ApiHttpServer
from tests.factories import race


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event["rawPath"] == "/empty":
        return {"statusCode": 204, "body": "null", "headers": {"Content-Type": "application/json"}}
    return {"statusCode": 200, "body": json.dumps({"path": event["rawPath"]}), "headers": {}}


def test_a_204_with_a_stray_body_does_not_corrupt_the_next_response() -> None:
    server = ApiHttpServer(("127.0.0.1", 0), _handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with httpx.Client(base_url=server.url) as client:  # one keep-alive connection
            for _ in range(3):
                empty = client.post("/empty")
                assert empty.status_code == 204 and empty.content == b""
                full = client.get("/next")
                assert full.status_code == 200 and full.json() == {"path": "/next"}
    finally:
        server.shutdown()
        server.server_close()


def _serve(handler: Any) -> ApiHttpServer:
    server = ApiHttpServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _one_request(host: str, port: int, request: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(request)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0]


def test_a_burst_of_100_new_connections_is_served_without_resets_or_timeouts() -> None:
    # given a handler that takes a little time and tracks how many calls overlap
    inside = 0
    most_inside = 0
    count_lock = threading.Lock()

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        nonlocal inside, most_inside
        with count_lock:
            inside += 1
            most_inside = max(most_inside, inside)
        time.sleep(0.002)
        with count_lock:
            inside -= 1
        return {"statusCode": 200, "body": "{}", "headers": {}}

    server = _serve(slow)
    host, port = server.server_address[:2]
    request = b"GET /burst HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n"
    try:
        # when 100 clients connect at the same instant, each on its own connection
        outcomes = race(100, lambda _: _one_request(str(host), int(port), request))
    finally:
        server.shutdown()
        server.server_close()
    # then every one is answered, and the handler ran at most API_CONCURRENCY requests at once
    failures = [o for o in outcomes if o != b"HTTP/1.1 200 OK"]
    assert failures == []
    assert 1 < most_inside <= API_CONCURRENCY


def test_a_negative_or_garbage_content_length_is_a_400_not_a_hang() -> None:
    server = _serve(_handler)
    host, port = server.server_address[:2]
    try:
        for length in (b"-1", b"ten"):
            request = b"POST /x HTTP/1.1\r\nHost: local\r\nConnection: close\r\nContent-Length: " + length
            assert _one_request(str(host), int(port), request + b"\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    finally:
        server.shutdown()
        server.server_close()


def test_the_concurrency_is_four_by_default_and_settable_within_bounds() -> None:
    from cli.local.http import api_concurrency

    assert api_concurrency({}) == API_CONCURRENCY == 4
    assert api_concurrency({"ORCH_API_CONCURRENCY": " 1 "}) == 1
    assert api_concurrency({"ORCH_API_CONCURRENCY": "64"}) == 64
    for bad in ("0", "65", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="ORCH_API_CONCURRENCY must be a whole number from 1 to 64"):
            api_concurrency({"ORCH_API_CONCURRENCY": bad})
