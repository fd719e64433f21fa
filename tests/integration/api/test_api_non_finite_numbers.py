"""NaN and Infinity in a body get a 422 naming the field on SQLite and PostgreSQL alike, on every route.

Python's json reads the non-standard tokens `NaN`, `Infinity`, `-Infinity` (and `1e999` overflows to
infinity); PostgreSQL's json refuses them, so a worker's free-form `result` holding one was a 500 on
PostgreSQL only. The request guard refuses them before routing, whatever the route.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.api.handler import lambda_handler
from shared.apigw import http_api_event
from tests.api_support import ApiHarness, Reply

NON_FINITE_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"]


def _raw(api: ApiHarness, method: str, path: str, body: str) -> Reply:
    headers = {"authorization": f"Bearer {api.key}", "content-type": "application/json"}
    result = lambda_handler(http_api_event(method, path, None, headers, body), None, deps=api.deps)
    return Reply(int(result["statusCode"]), json.loads(result["body"]), result.get("headers") or {})


def _running_message(api: ApiHarness) -> int:
    api.new_project("blog")
    task = api.post("/projects/blog/engineering", {"spec": "x"}).body
    worker = {"id": "w-1", "agent": "command", "task_id": task["id"], "create_request_id": "c-1"}
    assert api.post("/internal/workers", worker).status == 201
    assert api.post("/internal/workers/w-1/messages", {"request_id": "m-1", "body": "go"}).status == 201
    taken = api.post("/internal/workers/w-1/messages/next")
    assert taken.status == 200, taken
    return int(taken.body["id"])


def _assert_refused(reply: Reply, field: str) -> None:
    assert reply.status == 422, reply
    assert reply.body["fields"] == [field], reply
    assert "finite" in reply.body["message"], reply


@pytest.mark.parametrize("token", NON_FINITE_TOKENS)
def test_a_worker_result_holding_a_non_finite_number_is_422_and_leaves_the_message_open(
    api: ApiHarness, token: str
) -> None:
    # given a message a worker is running
    message_id = _running_message(api)
    path = f"/internal/worker-messages/{message_id}/result"

    # when its answer's free-form result holds NaN / Infinity somewhere deep
    body = '{"success": true, "response": "done", "result": {"metrics": {"ratio": [1.5, TOKEN]}}}'
    body = body.replace("TOKEN", token)
    reply = _raw(api, "POST", path, body)

    # then it is refused naming the field, and nothing was recorded: a finite answer still lands once
    _assert_refused(reply, "result.metrics.ratio.1")
    done = api.post(path, {"success": True, "response": "done", "result": {"metrics": {"ratio": [1.5, 2.0]}}})
    assert done.status == 200 and done.body["status"] == "DONE", done
    shown = api.get("/workers/w-1/messages")
    assert shown.status == 200, shown


def test_a_non_finite_body_itself_is_named_body(api: ApiHarness) -> None:
    message_id = _running_message(api)
    reply = _raw(api, "POST", f"/internal/worker-messages/{message_id}/result", "NaN")
    _assert_refused(reply, "body")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/projects", '{"name": "blog", "description": Infinity}', "description"),
        ("PUT", "/budgets", '{"project": "blog", "usd": NaN, "per": "task"}', "usd"),
        (
            "POST",
            "/internal/workers",
            '{"id": "w-9", "agent": "command", "config": {"t": -Infinity}}',
            "config.t",
        ),
        ("PATCH", "/projects/blog", '{"modules": ["a"], "x": NaN}', "x"),
    ],
)
def test_every_route_refuses_non_finite_numbers_before_its_own_validation(
    api: ApiHarness, method: str, path: str, body: str, field: str
) -> None:
    api.new_project("blog")
    _assert_refused(_raw(api, method, path, body), field)


def test_finite_floats_in_free_form_json_still_round_trip(api: ApiHarness) -> None:
    message_id = _running_message(api)
    result: dict[str, Any] = {"big": 1.7976931348623157e308, "small": -5e-324, "zero": -0.0, "n": 3}
    done = api.post(f"/internal/worker-messages/{message_id}/result", {"success": True, "result": result})
    assert done.status == 200, done
    [message] = [m for m in api.get("/workers/w-1/messages").body if m["id"] == message_id]
    assert message["result"]["big"] == result["big"] and message["result"]["n"] == 3
