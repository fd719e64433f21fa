"""The embedded API server speaks correct HTTP/1.1 keep-alive, including for bodiless statuses."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from cli.local.http import ApiHttpServer


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
