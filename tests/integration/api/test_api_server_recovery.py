"""Servers come back whole, through the real API handler on SQLite and PostgreSQL: the flip
unreachable -> up queues one recovery provisioning (however many checkers see it), and the recovery
redeploys every project whose current release lives on the server, once per recovery id.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.api.models import Release, new_id, utcnow
from functions.api.routers import servers as servers_router
from functions.api.services import servers as servers_service
from shared.contracts import (
    DEPLOY_QUEUE,
    PROGRESS_EVENTS,
    PROVISIONER_QUEUE,
    DeployMessage,
    ProgressEvent,
    ProvisionerMessage,
)
from shared.contracts.api import ServerCheck
from shared.contracts.recovery import ServerRecoveryStart
from tests.api_support import ApiHarness
from tests.factories import drain
from tests.factories import race as _race
from tests.integration.api.test_api_deployments import _as_service, _in_step, _record, _server

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def service(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("deployer", scopes=["service"])
    return api.as_key(key)


def _check(service: ApiHarness, status: str, handle: str = "local") -> dict[str, Any]:
    reply = service.post(f"/internal/servers/{handle}/check", {"status": status})
    assert reply.status == 200, reply
    return reply.body  # type: ignore[no-any-return]


def _recoveries(api: ApiHarness) -> list[ProvisionerMessage]:
    return [m for m in drain(api.deps.queue, PROVISIONER_QUEUE) if m.is_recovery]


def _serving_release(api: ApiHarness, project_id: str, server_id: str, number: int = 2) -> None:
    with api.deps.db.session() as session:
        session.add(
            Release(
                id=new_id(),
                project_id=project_id,
                number=number,
                task_id=new_id(),
                commit_sha=SHA,
                ref="main",
                server_id=server_id,
                slot="a",
                port=8001,
                status="serving",
                created_at=utcnow(),
            )
        )


def test_only_a_flip_from_unreachable_to_up_queues_a_recovery(
    api: ApiHarness, service: ApiHarness, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    _server(api)
    api.new_project("blog")
    assert api.post("/servers/local/ports", {"project_id": "blog", "port": 8100}).status == 201
    _check(service, "up")  # unknown -> up: a first check, nothing was lost
    _check(service, "unreachable")
    assert _recoveries(api) == []

    _as_service(monkeypatch, servers_router)
    _in_step(monkeypatch, servers_service, 4, database_url)
    back = _race(4, lambda _i: servers_router.record_check("local", ServerCheck(status="up")))

    assert not [r for r in back if isinstance(r, Exception)], back
    [message] = _recoveries(api)
    incidents = api.get("/incidents").body
    flip = next(i for i in incidents if i["kind"] == "server_up")
    assert message.request_id == f"recovery:local:{flip['id']}"
    assert (message.server_handle, message.job_type, message.open_ports) == ("local", "provision", [8100])
    _check(service, "up")
    assert _recoveries(api) == [], "up -> up is no flip"


def test_recovery_redeploys_each_project_serving_there_once_per_recovery(
    api: ApiHarness, service: ApiHarness
) -> None:
    server = _server(api)
    owner, owner_key = api.new_user("alice", telegram_id=4242)
    mine = api.as_key(owner_key)
    blog = mine.new_project("blog")
    mine.new_project("shop")
    mine.new_project("gone")
    for name, port in (("blog", 8000), ("shop", 8010), ("gone", 8020)):
        assert _record(service, name, port=port).status == 200
    assert _record(service, "gone", status="stopped", port=8020).status == 200
    _serving_release(api, blog["id"], server["id"])
    drain(api.deps.queue, DEPLOY_QUEUE)

    first = service.post("/internal/servers/local/recover", {"recovery_id": "recovery:local:f1"})

    assert first.status == 200, first
    projects = {p["project_name"]: p for p in first.body["projects"]}
    assert sorted(projects) == ["blog", "shop"], "a stopped project is not brought back"
    assert (projects["blog"]["ref"], projects["blog"]["release"]) == (SHA, 2), "from its release record"
    assert (projects["shop"]["ref"], projects["shop"]["release"]) == ("abc123", None), "before releases"
    assert all(p["created"] and p["skipped"] is None for p in projects.values())
    messages: list[DeployMessage] = drain(api.deps.queue, DEPLOY_QUEUE)
    assert sorted(m.task_id for m in messages) == sorted(p["task_id"] for p in projects.values())
    task = mine.get(f"/tasks/{projects['blog']['task_id']}").body
    assert (task["type"], task["status"], task["params"]) == (
        "deploy",
        "QUEUED",
        {"server": "local", "ref": SHA, "recovery": True},
    )
    assert task["user_id"] == owner["id"], "the owner's task: they hear of it"
    told = [i for i in mine.get("/incidents").body if i["kind"] == "service_redeployed"]
    assert sorted(i["project_id"] for i in told) == sorted(p["project_id"] for p in projects.values())
    assert any("is back: blog is redeployed from release 2" in i["message"] for i in told), told
    why = [e["message"] for e in mine.get(f"/tasks/{task['id']}/events").body]
    assert why == ["server local (127.0.0.1) is back: blog is redeployed from release 2"], why
    # the incidents' push notices share the queue (issue 21): the tasks' progress events are these
    telegram = [m for m in drain(api.deps.queue, PROGRESS_EVENTS) if isinstance(m, ProgressEvent)]
    assert {e.task_id for e in telegram} == {p["task_id"] for p in projects.values()}, (
        "the owner uses Telegram"
    )

    # a redelivered recovery: the first call's tasks, nothing new, nobody told twice
    again = service.post("/internal/servers/local/recover", {"recovery_id": "recovery:local:f1"})
    assert again.status == 200, again
    assert {p["project_name"]: p["task_id"] for p in again.body["projects"]} == {
        n: p["task_id"] for n, p in projects.items()
    }
    assert not any(p["created"] for p in again.body["projects"])
    assert drain(api.deps.queue, DEPLOY_QUEUE) == []
    assert drain(api.deps.queue, PROGRESS_EVENTS) == []
    assert len([i for i in mine.get("/incidents").body if i["kind"] == "service_redeployed"]) == 2

    # another flip while those redeploys still run: they will serve it, nothing is started beside them
    later = service.post("/internal/servers/local/recover", {"recovery_id": "recovery:local:f2"})
    assert all("already runs" in (p["skipped"] or "") for p in later.body["projects"]), later
    assert drain(api.deps.queue, DEPLOY_QUEUE) == []


def test_concurrent_recoveries_with_one_id_start_one_redeploy(
    api: ApiHarness, service: ApiHarness, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    _server(api)
    api.new_project("blog")
    assert _record(service, "blog").status == 200
    drain(api.deps.queue, DEPLOY_QUEUE)
    _as_service(monkeypatch, servers_router)
    body = ServerRecoveryStart(recovery_id="recovery:local:race")

    answers = _race(4, lambda _i: servers_router.recover_server("local", body))

    assert not [a for a in answers if isinstance(a, Exception)], answers
    assert sorted(a.projects[0].created for a in answers) == [False, False, False, True]
    assert len({a.projects[0].task_id for a in answers}) == 1
    assert len(drain(api.deps.queue, DEPLOY_QUEUE)) == 1


def test_recover_is_for_the_service_and_names_a_bad_field(api: ApiHarness, service: ApiHarness) -> None:
    _server(api)
    _, user_key = api.new_user("alice")
    refused = api.as_key(user_key).post("/internal/servers/local/recover", {"recovery_id": "r-1"})
    assert refused.status == 403
    missing = service.post("/internal/servers/nowhere/recover", {"recovery_id": "r-1"})
    assert missing.status == 404
    bad = service.post("/internal/servers/local/recover", {"recovery_id": "has spaces"})
    assert bad.status == 422 and bad.body["fields"] == ["recovery_id"], bad
    nothing = service.post("/internal/servers/local/recover", {"recovery_id": "r-1"})
    assert nothing.status == 200 and nothing.body["projects"] == []


# -- a replaced server ---------------------------------------------------------------------


def test_a_new_host_is_a_replaced_server_recovered_once(api: ApiHarness, service: ApiHarness) -> None:
    _, owner_key = api.new_user("alice")
    mine = api.as_key(owner_key)
    assert mine.post("/servers", {"handle": "web-1", "host": "203.0.113.7"}).status == 201
    _check(service, "up", "web-1")
    key = {"Idempotency-Key": "cli-update-1"}

    moved = mine.call("PATCH", "/servers/web-1", {"host": "203.0.113.8"}, headers=key)

    assert moved.status == 200, moved
    assert (moved.body["replaced"], moved.body["server"]["host"]) == (True, "203.0.113.8")
    assert moved.body["server"]["status"] == "unknown", "a new machine: not checked yet"
    [message] = _recoveries(api)
    assert message.request_id == moved.body["recovery_id"] and message.server_handle == "web-1"
    replay = mine.call("PATCH", "/servers/web-1", {"host": "203.0.113.8"}, headers=key)
    assert replay.status == 200 and replay.body["recovery_id"] == moved.body["recovery_id"]
    assert _recoveries(api) == [], "a repeated request queues no second recovery"

    same = mine.patch("/servers/web-1", {"host": "203.0.113.8", "ssh_user": "deploy"})
    assert same.status == 200 and same.body["replaced"] is False and same.body["recovery_id"] is None
    assert same.body["server"]["ssh_user"] == "deploy"
    assert _recoveries(api) == []


def test_updating_a_server_names_the_bad_field_and_keeps_to_its_owner(
    api: ApiHarness, service: ApiHarness
) -> None:
    _server(api, "shared-1", builtin="true")
    _, owner_key = api.new_user("alice")
    _, other_key = api.new_user("bob")
    mine = api.as_key(owner_key)
    assert mine.post("/servers", {"handle": "web-1", "host": "203.0.113.7"}).status == 201

    empty = mine.patch("/servers/web-1", {})
    assert empty.status == 422 and empty.body["fields"] == ["host", "ssh_user"], empty
    bad = mine.patch("/servers/web-1", {"host": "not a host!"})
    assert bad.status == 422 and bad.body["fields"] == ["host"], bad
    assert api.as_key(other_key).patch("/servers/web-1", {"host": "198.51.100.1"}).status == 404
    assert mine.patch("/servers/shared-1", {"host": "198.51.100.1"}).status == 403
    assert api.patch("/servers/shared-1", {"host": "198.51.100.1"}).body["replaced"] is True
    assert mine.get("/servers/web-1").body["host"] == "203.0.113.7"
