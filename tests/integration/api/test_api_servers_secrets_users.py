"""Servers and ports, project secrets, users and API keys."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from tests.api_support import ADMIN_KEY, ApiHarness

SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END OPENSSH PRIVATE KEY-----\n"
)


def _dump_database(api: ApiHarness) -> str:
    with api.deps.db.engine.connect() as conn:
        tables = ["servers", "project_secrets", "api_keys", "outbox", "tasks", "task_events"]
        return json.dumps(
            {t: [list(map(str, r)) for r in conn.execute(text(f"SELECT * FROM {t}"))] for t in tables}
        )


def test_servers_store_the_ssh_key_by_reference_only(api: ApiHarness) -> None:
    reply = api.post(
        "/servers",
        {
            "handle": "prod-1",
            "host": "203.0.113.7",
            "ssh_user": "deploy",
            "ssh_private_key": SSH_KEY,
            "labels": {"region": "eu"},
        },
    )
    assert reply.status == 201, reply
    assert reply.body["ssh_key_ref"] == "secret://servers/prod-1/ssh_key"
    assert "ssh_private_key" not in reply.body
    assert api.deps.secrets.get("secret://servers/prod-1/ssh_key") == SSH_KEY
    assert "c2VjcmV0LWtleS1tYXRlcmlhbA" not in _dump_database(api)

    assert api.get("/servers/prod-1").body["labels"] == {"region": "eu"}
    assert [s["handle"] for s in api.get("/servers").body] == ["prod-1"]
    assert api.post("/servers", {"handle": "prod-1", "host": "h"}).status == 409
    both = api.post(
        "/servers", {"handle": "x", "host": "h", "ssh_private_key": "k", "ssh_key_ref": "secret://a"}
    )
    assert both.status == 422

    removed = api.delete("/servers/prod-1")
    assert removed.status == 200
    assert api.get("/servers/prod-1").status == 404
    assert not api.deps.secrets.exists("secret://servers/prod-1/ssh_key")


def test_port_allocation(api: ApiHarness) -> None:
    api.post("/servers", {"handle": "localhost", "host": "127.0.0.1"})
    blog, shop = api.new_project("blog"), api.new_project("shop")
    first = api.post("/servers/localhost/ports", {"project_id": blog["id"]})
    assert first.status == 201 and first.body["port"] == 8000
    again = api.post("/servers/localhost/ports", {"project_id": blog["id"]})
    assert again.status == 200 and again.body["port"] == 8000, "a project keeps its port"
    second = api.post("/servers/localhost/ports", {"project_id": shop["id"]})
    assert second.body["port"] == 8001
    taken = api.post("/servers/localhost/ports", {"project_id": shop["id"], "port": 8000})
    assert taken.status == 409 and taken.body["fields"] == ["port"]
    assert [p["port"] for p in api.get("/servers/localhost/ports").body] == [8000, 8001]
    low = api.post("/servers/localhost/ports", {"project_id": shop["id"], "port": 80})
    assert low.status == 422 and low.body["fields"] == ["port"]


def test_secrets_are_write_only(api: ApiHarness, tmp_path: Path) -> None:
    project = api.new_project("blog")
    canary = "canary-value-8c1f5e"
    put = api.put("/projects/blog/secrets/BOT_TOKEN", {"value": canary})
    assert put.status == 200, put
    assert put.body["reference"] == f"secret://projects/{project['id']}/BOT_TOKEN"
    assert canary not in json.dumps(put.body)
    listed = api.get("/projects/blog/secrets")
    assert [s["name"] for s in listed.body] == ["BOT_TOKEN"] and canary not in json.dumps(listed.body)
    assert api.deps.secrets.get(put.body["reference"]) == canary
    assert canary not in _dump_database(api)

    assert api.put("/projects/blog/secrets/BOT_TOKEN", {"value": "rotated"}).status == 200
    assert api.deps.secrets.get(put.body["reference"]) == "rotated"
    assert len(api.get("/projects/blog/secrets").body) == 1

    bad_name = api.put("/projects/blog/secrets/bot-token", {"value": "x"})
    assert bad_name.status == 422 and "name" in bad_name.body["fields"]
    assert api.put("/projects/blog/secrets/EMPTY", {"value": ""}).status == 422

    assert api.delete("/projects/blog/secrets/BOT_TOKEN").status == 200
    assert not api.deps.secrets.exists(put.body["reference"])
    assert api.delete("/projects/blog/secrets/BOT_TOKEN").status == 404


def test_api_keys_are_shown_once_stored_hashed_and_revocable(api: ApiHarness) -> None:
    user, key = api.new_user("carol", telegram_id=77)
    assert key.startswith("orch_")
    keys = api.get(f"/users/{user['id']}/api-keys").body
    assert len(keys) == 1 and "key" not in keys[0] and key.startswith(keys[0]["prefix"])
    assert key not in _dump_database(api)

    carol = api.as_key(key)
    assert carol.get("/me").body["name"] == "carol"
    revoked = api.delete(f"/api-keys/{keys[0]['id']}")
    assert revoked.status == 200 and revoked.body["revoked_at"]
    denied = carol.get("/projects")
    assert denied.status == 401 and "revoked" in denied.body["message"]

    dup = api.post("/users", {"name": "again", "telegram_id": 77})
    assert dup.status == 409 and dup.body["fields"] == ["telegram_id"]
    assert api.post("/users/nope/api-keys", {}).status == 404


def test_missing_wrong_and_malformed_keys_get_401(api: ApiHarness) -> None:
    for harness, expected in (
        (api.as_key(None), "missing Authorization"),
        (api.as_key("orch_wrong"), "invalid API key"),
    ):
        reply = harness.get("/projects")
        assert reply.status == 401 and expected in reply.body["message"]
    basic = api.as_key(None).call("GET", "/projects", headers={"authorization": "Basic abc"})
    assert basic.status == 401


def test_bootstrap_admin_holds_the_configured_key(api: ApiHarness) -> None:
    me = api.as_key(ADMIN_KEY).get("/me")
    assert me.status == 200 and me.body["is_admin"] is True
    assert len(api.get("/users").body) == 1
