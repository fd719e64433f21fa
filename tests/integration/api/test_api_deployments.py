"""The API of the DevOps department through the real handler, on SQLite and PostgreSQL: deployments and
their health compare-and-set, server checks, undeploy, freeing ports, the shared built-in server,
deploy fix tasks waking their parent deploy, secrets waking parked deploys, and what the service scope
may do with users.

The races call the route functions themselves, in threads, with the caller fixed: the Powertools resolver
is not thread-safe (one shared context per process; the embedded HTTP server serialises requests and a
Lambda container serves one at a time), so N overlapping checkers are N processes in production. On
PostgreSQL every racer is held after its read until all have read, so the overlap is certain; on SQLite
the transactions are serialised by BEGIN IMMEDIATE and the race is only a smoke test.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from functions.api.auth import Principal
from functions.api.models import Task, utcnow
from functions.api.routers import deployments as deployments_router
from functions.api.routers import servers as servers_router
from functions.api.services import deployments as deployments_service
from functions.api.services import servers as servers_service
from shared.contracts import DEPLOY_QUEUE, ENGINEERING_QUEUE, DeployMessage
from shared.contracts.api import HealthReport, ServerCheck
from tests.api_support import ApiHarness
from tests.factories import drain
from tests.factories import race as _race

SERVICE = Principal(
    user_id="deployer", telegram_id=None, is_admin=False, scopes=frozenset({"service"}), key_id="k"
)
URL = "http://127.0.0.1:8000"


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
def service(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("deployer", scopes=["service"])
    return api.as_key(key)


def _server(api: ApiHarness, handle: str = "local", **labels: str) -> dict[str, Any]:
    reply = api.post("/servers", {"handle": handle, "host": "127.0.0.1", "labels": labels})
    assert reply.status == 201, reply
    return reply.body  # type: ignore[no-any-return]


def _record(
    caller: ApiHarness, project: str, status: str = "deployed", port: int = 8000, server: str = "local"
) -> Any:
    url = f"http://127.0.0.1:{port}"
    return caller.put(
        f"/internal/deployments/{project}",
        {
            "server_handle": server,
            "port": port,
            "url": url,
            "health_url": url + "/health",
            "ref": "abc123",
            "status": status,
        },
    )


def _deployed(api: ApiHarness, service: ApiHarness, project: str = "blog") -> dict[str, Any]:
    project_row = api.new_project(project)
    _server(api)
    reply = _record(service, project)
    assert reply.status == 200, reply
    return project_row


def _deploy_task(api: ApiHarness, project: str = "blog", server: str = "local") -> str:
    reply = api.post(f"/projects/{project}/deploy", {"server": server})
    assert reply.status == 202, reply
    return str(reply.body["id"])


def _claim(api: ApiHarness, task_id: str) -> None:
    reply = api.post(f"/internal/tasks/{task_id}/claim", {"worker": "test"})
    assert reply.status == 200, reply


def _deploys(api: ApiHarness) -> list[DeployMessage]:
    """Every message now on deploy:queue (drained)."""
    messages = drain(api.deps.queue, DEPLOY_QUEUE)
    assert all(isinstance(m, DeployMessage) for m in messages)
    return messages


def _progress(api: ApiHarness, task_id: str) -> list[str]:
    return [e["message"] for e in api.get(f"/tasks/{task_id}/events").body if e["type"] == "progress"]


def _in_step(monkeypatch: pytest.MonkeyPatch, module: Any, n: int, database_url: str) -> None:
    """PostgreSQL: hold each racing thread at its first `utcnow()` (after it read the current state)
    until all N have read it. SQLite serialises whole transactions, so there is nothing to hold (it would
    deadlock). Calls from the main thread (the test's own requests) pass freely."""
    if database_url.startswith("sqlite"):
        return
    barrier = threading.Barrier(n)
    local = threading.local()
    original = module.utcnow

    def gated() -> Any:
        if threading.current_thread() is not threading.main_thread() and not getattr(local, "waited", False):
            local.waited = True
            barrier.wait(timeout=30)
        return original()

    monkeypatch.setattr(module, "utcnow", gated)


def _as_service(monkeypatch: pytest.MonkeyPatch, router_module: Any) -> None:
    monkeypatch.setattr(router_module, "principal", lambda _router: SERVICE)


# -- deployments ---------------------------------------------------------------------------


def test_recording_a_deployment_needs_the_service_scope(api: ApiHarness, service: ApiHarness) -> None:
    api.new_project("blog")
    _server(api)
    _, user_key = api.new_user("alice")
    assert _record(api.as_key(user_key), "blog").status == 403
    assert api.get("/projects/blog/deployment").status == 404, "never deployed yet"

    reply = _record(service, "blog")

    assert reply.status == 200, reply
    body = reply.body
    assert (body["project_name"], body["server_handle"], body["port"]) == ("blog", "local", 8000)
    assert (body["status"], body["health"], body["url"], body["ref"]) == ("deployed", "up", URL, "abc123")
    assert body["health_changed_at"] and body["checked_at"]
    assert api.get("/projects/blog/deployment").body == body
    health = api.as_key(user_key).post("/internal/deployments/blog/health", {"health": "down"})
    assert health.status == 403


def test_a_project_shows_its_url_while_deployed_and_none_once_stopped(
    api: ApiHarness, service: ApiHarness
) -> None:
    project = _deployed(api, service)
    assert api.get("/projects/blog").body["deployed_url"] == URL
    assert [p["deployed_url"] for p in api.get("/projects").body["items"]] == [URL]

    stopped = _record(service, "blog", status="stopped")

    assert stopped.status == 200 and stopped.body["status"] == "stopped"
    assert api.get("/projects/blog").body["deployed_url"] is None
    assert api.get(f"/projects/{project['id']}/deployment").body["status"] == "stopped"

    moved = _record(service, "blog", port=8005)
    assert moved.body["port"] == 8005 and moved.body["health"] == "up"
    assert api.get("/projects/blog").body["deployed_url"] == "http://127.0.0.1:8005"


def test_users_list_only_their_own_deployments_and_filter_by_status(
    api: ApiHarness, service: ApiHarness
) -> None:
    _server(api, "shared", builtin="true")
    alice = api.as_key(api.new_user("alice")[1])
    bob = api.as_key(api.new_user("bob")[1])
    alice.new_project("alice-app")
    alice.new_project("alice-old")
    bob.new_project("bob-app")
    for name, port in (("alice-app", 8000), ("alice-old", 8001), ("bob-app", 8002)):
        assert _record(service, name, port=port, server="shared").status == 200
    assert _record(service, "alice-old", port=8001, server="shared", status="stopped").status == 200

    assert [d["project_name"] for d in alice.get("/deployments").body] == ["alice-app", "alice-old"]
    assert [d["project_name"] for d in bob.get("/deployments").body] == ["bob-app"]
    assert [d["project_name"] for d in alice.get("/deployments", status="stopped").body] == ["alice-old"]
    assert [d["project_name"] for d in alice.get("/deployments", status="deployed").body] == ["alice-app"]
    assert [d["project_name"] for d in api.get("/deployments", status="deployed").body] == [
        "alice-app",
        "bob-app",
    ]
    assert alice.get("/deployments", status="running").status == 422
    assert bob.get("/projects/alice-app/deployment").status == 404, "another user's project is not found"


# -- health compare-and-set ----------------------------------------------------------------


def test_a_health_flip_is_reported_as_changed_to_exactly_one_of_four_checkers(
    api: ApiHarness, service: ApiHarness, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    project = _deployed(api, service)
    assert service.post("/internal/deployments/blog/health", {"health": "up"}).body["changed"] is False
    _as_service(monkeypatch, deployments_router)
    _in_step(monkeypatch, deployments_service, 4, database_url)

    def report(health: str) -> list[Any]:
        body = HealthReport(health=health)
        return _race(4, lambda _i: deployments_router.report_health(project["id"], body))

    down = report("down")

    assert not [r for r in down if isinstance(r, Exception)], down
    assert sorted(r.changed for r in down) == [False, False, False, True]
    assert {r.previous for r in down if r.changed} == {"up"}
    assert {r.deployment.health for r in down} == {"down"}, "every caller sees the state as it is now"
    again = service.post("/internal/deployments/blog/health", {"health": "down", "detail": "503"})
    assert again.status == 200 and (again.body["changed"], again.body["previous"]) == (False, "down")

    up = report("up")

    assert sorted(r.changed for r in up) == [False, False, False, True]
    assert {r.previous for r in up if r.changed} == {"down"}
    stored = api.get("/projects/blog/deployment").body
    assert stored["health"] == "up" and stored["checked_at"] and stored["health_changed_at"]


def test_health_of_a_project_never_deployed_is_404(api: ApiHarness, service: ApiHarness) -> None:
    api.new_project("blog")
    assert service.post("/internal/deployments/blog/health", {"health": "up"}).status == 404
    assert service.post("/internal/deployments/nothing/health", {"health": "up"}).status == 404


# -- server checks -------------------------------------------------------------------------


def test_a_server_check_stores_facts_and_one_of_four_checkers_sees_the_flip(
    api: ApiHarness, service: ApiHarness, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    _server(api)
    _, user_key = api.new_user("alice")
    assert api.as_key(user_key).post("/internal/servers/local/check", {"status": "up"}).status == 403
    assert api.get("/servers/local").body["checked_at"] is None

    first = service.post("/internal/servers/local/check", {"status": "up", "facts": {"os": "Debian 12"}})

    assert first.status == 200, first
    assert (first.body["changed"], first.body["previous_status"]) == (True, "unknown")
    stored = api.get("/servers/local").body
    assert (stored["status"], stored["facts"]) == ("up", {"os": "Debian 12"}) and stored["checked_at"]

    _as_service(monkeypatch, servers_router)
    _in_step(monkeypatch, servers_service, 4, database_url)

    def check(status: str) -> list[Any]:
        body = ServerCheck(status=status)
        return _race(4, lambda _i: servers_router.record_check("local", body))

    down = check("unreachable")

    assert not [r for r in down if isinstance(r, Exception)], down
    assert sorted(r.changed for r in down) == [False, False, False, True]
    assert {r.previous_status for r in down if r.changed} == {"up"}
    again = service.post("/internal/servers/local/check", {"status": "unreachable"})
    assert (again.body["changed"], again.body["previous_status"]) == (False, "unreachable")
    assert again.body["server"]["facts"] == {"os": "Debian 12"}, "a check without facts keeps the last ones"

    up = check("up")

    assert sorted(r.changed for r in up) == [False, False, False, True]
    assert api.get("/servers/local").body["status"] == "up"
    assert service.post("/internal/servers/nowhere/check", {"status": "up"}).status == 404


# -- undeploy ------------------------------------------------------------------------------


def test_undeploy_needs_a_deployment_and_no_other_deploy_or_undeploy(
    api: ApiHarness, service: ApiHarness
) -> None:
    api.new_project("blog")
    _server(api)
    never = api.post("/projects/blog/undeploy")
    assert never.status == 404 and "never been deployed" in never.body["message"]

    deploy_id = _deploy_task(api)
    assert _record(service, "blog").status == 200
    busy = api.post("/projects/blog/undeploy")
    assert busy.status == 409 and deploy_id in busy.body["message"], "a deploy is still active"
    _claim(api, deploy_id)
    assert api.post(f"/internal/tasks/{deploy_id}/complete", {"result": {"status": "success"}}).status == 200
    _deploys(api)

    reply = api.post("/projects/blog/undeploy")

    assert reply.status == 202, reply
    undeploy = reply.body
    assert (undeploy["type"], undeploy["status"], undeploy["params"]) == (
        "undeploy",
        "QUEUED",
        {"server": "local"},
    )
    [message] = _deploys(api)
    assert message.task_id == undeploy["id"]
    again = api.post("/projects/blog/undeploy")
    assert again.status == 409 and undeploy["id"] in again.body["message"]
    deploy = api.post("/projects/blog/deploy", {"server": "local"})
    assert deploy.status == 409 and "undeploy" in deploy.body["message"]

    _claim(api, undeploy["id"])
    assert api.post("/projects/blog/deploy", {"server": "local"}).status == 409, "while it runs too"
    api.post(f"/internal/tasks/{undeploy['id']}/complete", {"result": {"status": "success"}})
    assert api.post("/projects/blog/deploy", {"server": "local"}).status == 202


# -- ports ---------------------------------------------------------------------------------


def test_freeing_a_port_gives_it_back_and_only_its_owner_may(api: ApiHarness) -> None:
    _server(api, "shared", builtin="true")
    alice = api.as_key(api.new_user("alice")[1])
    bob = api.as_key(api.new_user("bob")[1])
    blog = alice.new_project("blog")
    shop = bob.new_project("shop")
    assert alice.post("/servers/shared/ports", {"project_id": blog["id"]}).body["port"] == 8000
    assert bob.post("/servers/shared/ports", {"project_id": shop["id"]}).body["port"] == 8001

    stranger = bob.delete("/servers/shared/ports/8000")
    assert stranger.status == 404, "another user's project port is not found"
    assert bob.delete("/servers/shared/ports/8123").status == 404
    assert alice.delete("/servers/shared/ports/0").status == 422

    freed = alice.delete("/servers/shared/ports/8000")

    assert freed.status == 200 and (freed.body["port"], freed.body["project_id"]) == (8000, blog["id"])
    assert [p["port"] for p in api.get("/servers/shared/ports").body] == [8001]
    assert alice.delete("/servers/shared/ports/8000").status == 404, "already free"
    again = alice.post("/servers/shared/ports", {"project_id": blog["id"]})
    assert again.status == 201 and again.body["port"] == 8000


# -- the built-in server -------------------------------------------------------------------


def test_a_builtin_server_is_shared_with_every_user(api: ApiHarness) -> None:
    _server(api, "localhost", builtin="true", connection="local")
    _server(api, "private")
    alice = api.as_key(api.new_user("alice")[1])
    blog = alice.new_project("blog")

    assert [s["handle"] for s in alice.get("/servers").body] == ["localhost"]
    assert alice.get("/servers/localhost").body["labels"] == {"builtin": "true", "connection": "local"}
    assert alice.get("/servers/private").status == 404
    port = alice.post("/servers/localhost/ports", {"project_id": blog["id"]})
    assert port.status == 201 and port.body["port"] == 8000
    deploy = alice.post("/projects/blog/deploy", {"server": "localhost"})
    assert deploy.status == 202 and deploy.body["params"]["server"] == "localhost"

    refused = alice.post("/servers", {"handle": "mine", "host": "10.0.0.1", "labels": {"builtin": "true"}})
    assert refused.status == 422 and refused.body["fields"] == ["labels"]
    refused = alice.post("/servers", {"handle": "mine", "host": "10.0.0.1", "labels": {"builtin": "false"}})
    assert refused.status == 422 and refused.body["fields"] == ["labels"]
    assert alice.post("/servers", {"handle": "mine", "host": "10.0.0.1"}).status == 201


def test_a_user_cannot_remove_the_shared_builtin_server(api: ApiHarness) -> None:
    _server(api, "localhost", builtin="true")
    alice = api.as_key(api.new_user("alice")[1])
    bob = api.as_key(api.new_user("bob")[1])
    blog = alice.new_project("blog")
    assert alice.post("/servers/localhost/ports", {"project_id": blog["id"]}).status == 201

    removed = bob.delete("/servers/localhost")

    assert removed.status in (403, 404), removed
    assert api.get("/servers/localhost").status == 200
    assert [p["port"] for p in api.get("/servers/localhost/ports").body] == [8000]


# -- fix tasks wake their deploy -----------------------------------------------------------


def _deploy_waiting_for_a_fix(api: ApiHarness, attempt: int = 1) -> tuple[str, str]:
    """A RUNNING deploy that started an engineering fix task (its child); deploy:queue drained."""
    api.new_project("blog")
    _server(api)
    deploy_id = _deploy_task(api)
    _claim(api, deploy_id)
    body = {
        "spec": "the smoke test fails: fix it",
        "parent_task_id": deploy_id,
        "deploy_fix_attempt": attempt,
    }
    child = api.post("/projects/blog/engineering", body)
    assert child.status == 202, child
    assert (child.body["params"]["parent_task_id"], child.body["params"]["deploy_fix_attempt"]) == (
        deploy_id,
        attempt,
    )
    _deploys(api)
    return deploy_id, str(child.body["id"])


@pytest.mark.parametrize("ending", ["complete", "fail", "cancel"])
def test_a_fix_task_that_ends_wakes_its_deploy_once(api: ApiHarness, ending: str) -> None:
    deploy_id, child_id = _deploy_waiting_for_a_fix(api, attempt=2)
    assert api.post(f"/internal/tasks/{deploy_id}/wait", {"reason": "waiting for the fix"}).status == 200
    _claim(api, child_id)
    assert _deploys(api) == [], "nothing while the fix runs"

    def end() -> int:
        if ending == "cancel":
            return api.post(f"/tasks/{child_id}/cancel").status
        body = {"result": {"status": "success"}} if ending == "complete" else {"error": "tests still fail"}
        return api.post(f"/internal/tasks/{child_id}/{ending}", body).status

    assert end() == 200

    [message] = _deploys(api)
    assert message.request_id == f"{deploy_id}:fix:2"
    assert (message.task_id, message.project_id) == (deploy_id, api.get("/projects/blog").body["id"])
    assert end() == 409, "a task ends once"
    assert _deploys(api) == [], "and wakes its deploy once"


def test_a_fix_task_of_a_deploy_that_already_ended_wakes_nothing(api: ApiHarness) -> None:
    deploy_id, child_id = _deploy_waiting_for_a_fix(api)
    api.post(f"/internal/tasks/{deploy_id}/fail", {"error": "gave up"})
    _claim(api, child_id)

    assert api.post(f"/internal/tasks/{child_id}/complete", {"result": {}}).status == 200

    assert _deploys(api) == []


def test_a_fix_task_parent_must_be_a_deploy_of_the_same_project(api: ApiHarness) -> None:
    api.new_project("blog")
    api.new_project("shop")
    _server(api)
    shop_deploy = _deploy_task(api, "shop")
    blog_engineering = api.post("/projects/blog/engineering", {"spec": "x"}).body["id"]

    for parent in (shop_deploy, blog_engineering):
        reply = api.post("/projects/blog/engineering", {"spec": "fix", "parent_task_id": parent})
        assert reply.status == 422 and reply.body["fields"] == ["parent_task_id"], reply
    too_many = api.post(
        "/projects/blog/engineering", {"spec": "fix", "parent_task_id": shop_deploy, "deploy_fix_attempt": 3}
    )
    assert too_many.status == 422 and too_many.body["fields"] == ["deploy_fix_attempt"]
    assert len(drain(api.deps.queue, ENGINEERING_QUEUE)) == 1, "only the plain engineering task was queued"


def _ago(api: ApiHarness, task_id: str, **minutes: float) -> None:
    values = {column: utcnow() - timedelta(minutes=m) for column, m in minutes.items()}
    with api.deps.db.session() as session:
        session.execute(update(Task).where(Task.id == task_id).values(**values))


def test_a_reaped_fix_task_wakes_its_deploy(api: ApiHarness, service: ApiHarness) -> None:
    deploy_id, child_id = _deploy_waiting_for_a_fix(api, attempt=1)
    _claim(api, child_id)
    _ago(api, child_id, heartbeat_at=20, started_at=20)

    report = service.post("/internal/maintenance/reap-stuck-tasks", {"limit_s": 900})

    assert report.status == 200 and report.body["failed"] == 1, report
    assert [t["task_id"] for t in report.body["tasks"]] == [child_id]
    [message] = _deploys(api)
    assert (message.request_id, message.task_id) == (f"{deploy_id}:fix:1", deploy_id)
    assert api.get(f"/tasks/{deploy_id}").body["status"] == "RUNNING"


def test_a_deploy_waiting_on_a_live_fix_task_is_not_reaped(api: ApiHarness, service: ApiHarness) -> None:
    deploy_id, child_id = _deploy_waiting_for_a_fix(api)
    _ago(api, deploy_id, heartbeat_at=60, started_at=60)

    queued = service.post("/internal/maintenance/reap-stuck-tasks", {"limit_s": 900})
    _claim(api, child_id)
    running = service.post("/internal/maintenance/reap-stuck-tasks", {"limit_s": 900})

    assert (queued.body["examined"], running.body["examined"]) == (0, 0)
    assert api.get(f"/tasks/{deploy_id}").body["status"] == "RUNNING"

    api.post(f"/internal/tasks/{child_id}/complete", {"result": {}})
    _deploys(api)
    ended = service.post("/internal/maintenance/reap-stuck-tasks", {"limit_s": 900})
    assert ended.body["failed"] == 1, "once its child ended, a silent deploy is stuck like any task"
    assert api.get(f"/tasks/{deploy_id}").body["status"] == "FAILED"


# -- secrets wake parked deploys -----------------------------------------------------------


def test_setting_a_secret_wakes_a_deploy_waiting_for_input(api: ApiHarness) -> None:
    api.new_project("blog")
    _server(api)
    deploy_id = _deploy_task(api)
    _claim(api, deploy_id)
    assert api.post(f"/internal/tasks/{deploy_id}/wait", {"reason": "needs API_TOKEN"}).status == 200
    _deploys(api)

    put = api.put("/projects/blog/secrets/API_TOKEN", {"value": "canary-1f2e3d"})

    assert put.status == 200, put
    [message] = _deploys(api)
    assert message.task_id == deploy_id and message.request_id.startswith(f"{deploy_id}:secrets:")
    assert "canary-1f2e3d" not in message.model_dump_json()
    assert "secret API_TOKEN set" in _progress(api, deploy_id)

    api.put("/projects/blog/secrets/OTHER", {"value": "x"})
    [second] = _deploys(api)
    assert second.request_id.startswith(f"{deploy_id}:secrets:") and second.request_id != message.request_id


def test_setting_a_secret_wakes_nothing_without_a_waiting_deploy(api: ApiHarness) -> None:
    api.new_project("blog")
    api.new_project("shop")
    _server(api)
    assert api.put("/projects/blog/secrets/API_TOKEN", {"value": "x"}).status == 200
    running = _deploy_task(api)
    _claim(api, running)
    shop_deploy = _deploy_task(api, "shop")
    _claim(api, shop_deploy)
    api.post(f"/internal/tasks/{shop_deploy}/wait", {"reason": "needs a secret"})
    _deploys(api)

    assert api.put("/projects/blog/secrets/API_TOKEN", {"value": "y"}).status == 200

    assert _deploys(api) == [], "the running deploy is not waiting; shop's waiting one is another project"
    assert not [m for m in _progress(api, running) if m.startswith("secret ")]
    assert not [m for m in _progress(api, shop_deploy) if m.startswith("secret ")]


# -- users, for the service scope ----------------------------------------------------------


def test_the_service_scope_may_add_plain_users_and_user_keys_only(
    api: ApiHarness, service: ApiHarness
) -> None:
    listed = service.get("/users")
    assert listed.status == 200 and {u["name"] for u in listed.body} == {"admin", "deployer"}

    added = service.post("/users", {"name": "carol", "telegram_id": 4242})

    assert added.status == 201 and added.body["is_admin"] is False
    key = service.post(f"/users/{added.body['id']}/api-keys", {"scopes": ["user"]})
    assert key.status == 201 and key.body["scopes"] == ["user"]
    assert api.as_key(key.body["key"]).get("/me").body["name"] == "carol"

    assert service.post("/users", {"name": "eve", "is_admin": True}).status == 403
    for scopes in (["service"], ["admin"], ["user", "service"]):
        refused = service.post(f"/users/{added.body['id']}/api-keys", {"scopes": scopes})
        assert refused.status == 403, (scopes, refused)
    assert service.get(f"/users/{added.body['id']}/api-keys").status == 403, "listing keys stays admin-only"
    assert {u["name"] for u in service.get("/users").body} == {"admin", "deployer", "carol"}

    _, user_key = api.new_user("alice")
    assert api.as_key(user_key).get("/users").status == 403
    assert api.as_key(user_key).post("/users", {"name": "mallory"}).status == 403


def test_the_service_scope_cannot_mint_a_key_with_admin_powers(api: ApiHarness, service: ApiHarness) -> None:
    [admin] = [u for u in service.get("/users").body if u["is_admin"]]

    minted = service.post(f"/users/{admin['id']}/api-keys", {"scopes": ["user"]})

    if minted.status == 201:
        escalated = api.as_key(minted.body["key"]).post("/users", {"name": "eve", "is_admin": True})
        assert escalated.status == 403, f"a key the service minted created an admin user: {escalated}"
    assert minted.status == 403, minted
