"""Issue 16 items 6, 9, 13: hostile input gets a 4xx with a JSON body naming the field, never a 500.

Each case was a 500 (or a leak) before; they run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.api.handler import lambda_handler
from shared.apigw import http_api_event
from tests.api_support import ADMIN_KEY, ApiHarness, Reply

SERVICE_ROUTES_BODY = {"id": "w-1", "agent": "claude", "config": {}}


def _raw(api: ApiHarness, method: str, path: str, body: bytes | str, content_type: str | None) -> Reply:
    headers = {"authorization": f"Bearer {api.key}"}
    if content_type is not None:
        headers["content-type"] = content_type
    result = lambda_handler(http_api_event(method, path, None, headers, body), None, deps=api.deps)
    return Reply(int(result["statusCode"]), json.loads(result["body"]), result.get("headers") or {})


def _service(api: ApiHarness) -> ApiHarness:
    _user, key = api.new_user("svc", scopes=["service"])
    return api.as_key(key)


# -- the body: encoding, content type, depth ------------------------------------------------


def test_invalid_utf8_body_is_400(api: ApiHarness) -> None:
    reply = _raw(api, "POST", "/projects", b'{"name": "blog\xff\xfe"}', "application/json")
    assert reply.status == 400, reply
    assert reply.body["code"] == "bad_request" and reply.body["fields"] == ["body"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded"]
)
def test_non_json_content_type_on_a_json_route_is_415(api: ApiHarness, content_type: str) -> None:
    reply = _raw(api, "POST", "/projects", '{"name": "blog"}', content_type)
    assert reply.status == 415, reply
    assert reply.body["code"] == "unsupported_media_type" and reply.body["fields"] == ["content-type"]


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=x"])
def test_multipart_is_415_with_or_without_boundary(api: ApiHarness, content_type: str) -> None:
    reply = _raw(api, "POST", "/projects", "--x\r\n\r\nname=blog\r\n--x--", content_type)
    assert reply.status == 415, reply


def test_json_with_a_charset_and_a_missing_content_type_are_accepted(api: ApiHarness) -> None:
    assert _raw(api, "POST", "/projects", '{"name": "blog"}', "application/json; charset=utf-8").status == 201
    assert _raw(api, "POST", "/projects", '{"name": "news"}', None).status == 201


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_is_400(api: ApiHarness, depth: int) -> None:
    body = '{"name": "blog", "x": ' + "[" * depth + "]" * depth + "}"
    reply = _raw(api, "POST", "/projects", body, "application/json")
    assert reply.status == 400, reply
    assert reply.body["fields"] == ["body"] and "deep" in reply.body["message"]


def test_moderate_nesting_still_reaches_validation(api: ApiHarness) -> None:
    service = _service(api)
    config = {"a": [[[[{"b": 1}]]]]}
    reply = service.post("/internal/workers", {**SERVICE_ROUTES_BODY, "config": config})
    assert reply.status in (201, 422), reply


# -- nullable fields, integer ranges, NUL -----------------------------------------------------


@pytest.mark.parametrize("field", ["status", "modules"])
def test_patch_project_with_null_for_a_non_nullable_field_is_422(api: ApiHarness, field: str) -> None:
    project = api.new_project()
    reply = api.patch(f"/projects/{project['id']}", {field: None})
    assert reply.status == 422, reply
    assert reply.body["fields"] == [field]


def test_patch_project_may_still_clear_the_nullable_fields(api: ApiHarness) -> None:
    project = api.new_project()
    reply = api.patch(f"/projects/{project['id']}", {"agent": None, "repo_url": None, "description": "x"})
    assert reply.status == 200, reply


@pytest.mark.parametrize("after", [2**31, 2**63, 10**30])
def test_events_after_beyond_the_integer_range_is_422_or_empty(api: ApiHarness, after: int) -> None:
    project = api.new_project()
    task = api.post(f"/projects/{project['id']}/engineering", {"spec": "x"}).body
    reply = api.get(f"/tasks/{task['id']}/events", after=after)
    assert reply.status == 422, reply
    assert reply.body["fields"] == ["after"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/projects", {"name": "blog", "description": "a\x00b"}, "description"),
        ("/users", {"name": "eve\x00"}, "name"),
    ],
)
def test_nul_in_a_text_field_is_422(api: ApiHarness, path: str, body: dict[str, Any], field: str) -> None:
    reply = api.post(path, body)
    assert reply.status == 422, reply
    assert field in reply.body["fields"]


def test_nul_inside_free_form_json_is_422(api: ApiHarness) -> None:
    service = _service(api)
    reply = service.post("/internal/workers", {**SERVICE_ROUTES_BODY, "config": {"k": "\x00"}})
    assert reply.status == 422, reply
    assert reply.body["fields"] == ["config.k"]


def test_nul_in_a_path_or_query_is_4xx(api: ApiHarness) -> None:
    assert api.get("/projects/a%00b").status == 422
    assert api.get("/workers", name="a\x00b").status == 422


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/internal/workers", {**SERVICE_ROUTES_BODY, "create_request_id": ""}, "create_request_id"),
        ("/internal/workers", {**SERVICE_ROUTES_BODY, "task_id": "t" * 65}, "task_id"),
        ("/internal/workers", {**SERVICE_ROUTES_BODY, "id": ""}, "id"),
    ],
)
def test_internal_routes_validate_like_public_ones(
    api: ApiHarness, path: str, body: dict[str, Any], field: str
) -> None:
    reply = _service(api).post(path, body)
    assert reply.status == 422, reply
    assert field in reply.body["fields"]


def test_internal_out_of_range_integers_are_422(api: ApiHarness) -> None:
    service = _service(api)
    assert service.post("/internal/workers", SERVICE_ROUTES_BODY).status == 201
    reply = service.post("/internal/workers/w-1/stopped", {"exit_code": 2**40})
    assert reply.status == 422 and reply.body["fields"] == ["exit_code"], reply
    reply = service.post(f"/internal/worker-messages/{2**63}/result", {"success": True})
    assert reply.status == 422 and reply.body["fields"] == ["message_id"], reply
    reply = service.call("PUT", "/internal/tasks/x/notification", {"holder": "h", "message_id": 2**70})
    assert reply.status == 422 and reply.body["fields"] == ["message_id"], reply
    reply = api.post("/users", {"name": "big", "telegram_id": 2**63})
    assert reply.status == 422 and reply.body["fields"] == ["telegram_id"], reply


def test_deployment_record_with_an_over_long_task_id_is_422(api: ApiHarness) -> None:
    project = api.new_project()
    body = {"server_handle": "localhost", "port": 1, "url": "", "health_url": "", "task_id": "0" * 63}
    reply = _service(api).put(f"/internal/deployments/{project['id']}", body)
    assert reply.status == 422 and reply.body["fields"] == ["task_id"], reply


def test_port_request_for_an_over_long_project_id_is_422(api: ApiHarness) -> None:
    reply = api.post("/servers/localhost/ports", {"project_id": "p" * 5000})
    assert reply.status == 422 and reply.body["fields"] == ["project_id"], reply


# -- item 9: names you cannot see ----------------------------------------------------------


def test_creating_a_project_named_like_another_users_does_not_reveal_it(api: ApiHarness) -> None:
    _alice, alice_key = api.new_user("alice")
    _bob, bob_key = api.new_user("bob")
    alice, bob = api.as_key(alice_key), api.as_key(bob_key)
    alice.new_project("secret-plan")
    assert bob.get("/projects/secret-plan").status == 404
    taken = bob.post("/projects", {"name": "secret-plan"})
    own = alice.post("/projects", {"name": "secret-plan"})
    # the answer for someone else's name is the one for a name that is reserved: it names no owner
    assert taken.status == own.status == 409
    assert taken.body["message"] == own.body["message"] == "the name 'secret-plan' is not available"


def test_adding_a_server_with_another_users_handle_does_not_reveal_it(api: ApiHarness) -> None:
    _alice, alice_key = api.new_user("alice")
    _bob, bob_key = api.new_user("bob")
    alice, bob = api.as_key(alice_key), api.as_key(bob_key)
    assert alice.post("/servers", {"handle": "box", "host": "10.0.0.1"}).status == 201
    assert bob.get("/servers/box").status == 404
    taken = bob.post("/servers", {"handle": "box", "host": "10.0.0.2"})
    assert taken.status == 409 and taken.body["message"] == "the handle 'box' is not available"


# -- item 13: admin scope only for admins ------------------------------------------------------


def test_admin_scope_key_for_a_non_admin_user_is_refused(api: ApiHarness) -> None:
    user, _key = api.new_user("alice")
    reply = api.as_key(ADMIN_KEY).post(f"/users/{user['id']}/api-keys", {"scopes": ["admin"]})
    assert reply.status == 422, reply
    assert reply.body["fields"] == ["scopes"] and "not an admin" in reply.body["message"]
    assert api.get(f"/users/{user['id']}/api-keys").body == [] or all(
        "admin" not in k["scopes"] for k in api.get(f"/users/{user['id']}/api-keys").body
    )


def test_admin_scope_key_for_an_admin_user_is_issued(api: ApiHarness) -> None:
    user, _key = api.new_user("root2", is_admin=True)
    reply = api.as_key(ADMIN_KEY).post(f"/users/{user['id']}/api-keys", {"scopes": ["admin"]})
    assert reply.status == 201, reply


@pytest.mark.parametrize(
    ("key", "value"),
    [("current_step", "s" * 201), ("error_type", "e" * 201), ("request_id", "r" * 65)],
)
def test_progress_events_with_over_long_columns_are_422(api: ApiHarness, key: str, value: str) -> None:
    project = api.new_project()
    task = api.post(f"/projects/{project['id']}/engineering", {"spec": "x"}).body
    event = {"type": "progress", "message": "m", key: value}
    reply = _service(api).post(f"/internal/tasks/{task['id']}/events", {"events": [event]})
    assert reply.status == 422 and reply.body["fields"] == [f"events.0.{key}"], reply


def test_freeing_another_users_port_on_a_shared_server_answers_as_for_a_free_port(api: ApiHarness) -> None:
    _alice, alice_key = api.new_user("alice")
    _bob, bob_key = api.new_user("bob")
    alice, bob = api.as_key(alice_key), api.as_key(bob_key)
    shared = {"handle": "shared", "host": "127.0.0.1", "labels": {"builtin": "true"}}
    assert api.post("/servers", shared).status == 201
    project = alice.new_project("alices")
    port = alice.post("/servers/shared/ports", {"project_id": project["id"]})
    assert port.status == 201, port
    taken = bob.delete(f"/servers/shared/ports/{port.body['port']}")
    free = bob.delete(f"/servers/shared/ports/{port.body['port'] + 1}")
    assert taken.status == free.status == 404
    assert project["id"] not in taken.body["message"]
    assert taken.body["message"] == free.body["message"].replace(
        str(port.body["port"] + 1), str(port.body["port"])
    )
