"""An ApiTransport for the embedded stack's own URL calls the API without httpx's client (`DirectCall`): the
handler must see the same request as through httpx (method, path, query, body, the headers it reads), and
the client must map the answers the same way."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.api_transport import ApiError, ApiTransport, ApiUnreachable, NotFoundError
from shared.apigw import InProcessTransport, serve_in_process, stop_serving_in_process

URL = "http://127.0.0.1:59999"
READ = ("authorization", "content-type", "x-correlation-id", "idempotency-key", "user-agent", "host")


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.answer: dict[str, Any] = {"statusCode": 200, "body": '{"ok": true}', "headers": {}}

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.events.append(event)
        return self.answer


def _seen(event: dict[str, Any]) -> tuple[Any, ...]:
    headers = event["headers"]
    return (
        event["requestContext"]["http"]["method"],
        event["rawPath"],
        event["rawQueryString"],
        event.get("queryStringParameters"),
        json.loads(event["body"]) if event.get("body") else None,
        {name: headers.get(name) for name in READ},
    )


CALLS: list[tuple[str, str, Any, dict[str, Any] | None, bool]] = [
    ("GET", "/tasks", None, {"limit": 100, "project_id": "p", "latest": True, "off": False}, False),
    ("GET", "/tasks/abc/events", None, {"after": 0, "limit": 500, "latest": "true"}, False),
    ("DELETE", "/internal/tasks/t/lease", None, {"holder": "graph@h:1:ab cd/é"}, False),
    ("POST", "/projects", {"name": "x", "text": 'Grüße \u2028 "q"', "n": 2**60, "f": 0.1}, None, True),
    ("PATCH", "/internal/workers/w-1", {"status": "RUNNING", "nested": {"a": [1, None]}}, None, False),
]


@pytest.mark.parametrize(("method", "path", "body", "params", "idempotent"), CALLS)
def test_the_handler_sees_the_same_request_as_through_httpx(
    method: str, path: str, body: Any, params: dict[str, Any] | None, idempotent: bool
) -> None:
    recorder = Recorder()
    via_httpx = ApiTransport(
        URL, "key-1", transport=InProcessTransport(recorder), correlation_id="c-1", idempotency_key="i"
    )
    serve_in_process(URL, recorder)
    try:
        direct = ApiTransport(URL, "key-1", correlation_id="c-1", idempotency_key="i")
    finally:
        stop_serving_in_process(URL)
    assert direct._direct is not None, "not the direct path: the test would compare httpx with itself"
    direct._direct.transport.open = True  # the registration only chose the path

    via_httpx.request(method, path, json=body, params=params, idempotent=idempotent)
    direct.request(method, path, json=body, params=params, idempotent=idempotent)

    through_httpx, straight = recorder.events
    assert _seen(straight) == _seen(through_httpx)


def test_answers_are_mapped_as_through_httpx() -> None:
    recorder = Recorder()
    serve_in_process(URL, recorder)
    try:
        client = ApiTransport(URL, "key-1")
        assert client._direct is not None

        recorder.answer = {"statusCode": 204, "body": "null", "headers": {}}
        assert client.request("POST", "/internal/workers/w/messages/next") is None

        recorder.answer = {
            "statusCode": 404,
            "body": '{"code": "not_found", "message": "task t not found", "fields": []}',
            "headers": {"Content-Type": "application/json", "Content-Length": "999"},
        }
        with pytest.raises(NotFoundError, match="task t not found"):
            client.request("GET", "/tasks/t")

        recorder.answer = {"statusCode": 200, "body": "<html>", "headers": {"Content-Type": "text/html"}}
        with pytest.raises(ApiUnreachable, match=r"GET /tasks/t .*200"):
            client.request("GET", "/tasks/t")

        recorder.answer = {"statusCode": 502, "body": "bad gateway", "headers": {}}
        with pytest.raises(ApiError):
            client.request("GET", "/tasks/t")
    finally:
        stop_serving_in_process(URL)

    # a stopped stack: as a server that is gone
    with pytest.raises(ApiUnreachable):
        client.request("GET", "/me")
