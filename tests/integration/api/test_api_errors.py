"""Bad input gets a 4xx with a JSON body naming the field; never a 500 or a traceback."""

from __future__ import annotations

import json

import pytest

from tests.api_support import ApiHarness


def test_validation_errors_name_the_fields(api: ApiHarness) -> None:
    reply = api.post("/projects", {"name": "Bad Name!", "modules": "backend"})
    assert reply.status == 422
    assert reply.body["code"] == "validation_error"
    assert set(reply.body["fields"]) >= {"name", "modules"}
    assert "Traceback" not in json.dumps(reply.body)


def test_unknown_fields_are_refused(api: ApiHarness) -> None:
    reply = api.post("/projects", {"name": "blog", "colour": "red"})
    assert reply.status == 422 and "colour" in reply.body["fields"]


def test_invalid_json_is_422(api: ApiHarness) -> None:
    reply = api.call("POST", "/projects", raw_body="{not json")
    assert reply.status == 422 and reply.body["fields"] == ["body"]


def test_oversized_body_is_413(api: ApiHarness) -> None:
    reply = api.call("POST", "/projects", raw_body=json.dumps({"name": "x", "description": "y" * 2_000_000}))
    assert reply.status == 413 and reply.body["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "path",
    [
        "/projects/does-not-exist",
        "/tasks/3f2c4e1e-0000-4000-8000-000000000000",
        "/tasks/not-a-uuid",
        "/servers/nope",
        "/tasks/3f2c4e1e-0000-4000-8000-000000000000/events",
    ],
)
def test_unknown_ids_are_404(api: ApiHarness, path: str) -> None:
    reply = api.get(path)
    assert reply.status == 404 and reply.body["code"] == "not_found"


def test_unknown_route_is_404_json(api: ApiHarness) -> None:
    reply = api.get("/nothing/here")
    assert reply.status == 404 and reply.body["code"] == "no_route"


def test_wrong_method_is_a_4xx(api: ApiHarness) -> None:
    reply = api.call("PUT", "/projects", {"name": "x"})
    assert 400 <= reply.status < 500


def test_limit_out_of_range_is_422(api: ApiHarness) -> None:
    reply = api.get("/tasks", limit=100000)
    assert reply.status == 422 and reply.body["fields"] == ["limit"]


def test_every_protected_route_demands_a_key(api: ApiHarness) -> None:
    spec = api.as_key(None).get("/openapi.json").body
    anonymous = api.as_key(None)
    checked = 0
    for path, operations in spec["paths"].items():
        if path in ("/health", "/docs"):
            continue
        concrete = path.replace("{project_id}", "p").replace("{task_id}", "t").replace("{handle}", "h")
        concrete = concrete.replace("{name}", "N").replace("{user_id}", "u").replace("{key_id}", "k")
        concrete = concrete.replace("{worker_id}", "w")
        for method in operations:
            reply = anonymous.call(method.upper(), concrete, {})
            assert reply.status == 401, f"{method.upper()} {path} answered {reply.status} without a key"
            checked += 1
    assert checked > 25
