"""Releases through the real handler, on SQLite and PostgreSQL: one release per deploy task, numbered per
project (also under concurrent starts), finish as a compare-and-set that supersedes the previous serving
release, who may read them, rollback tasks and their refusals, project domains, slot ports and freeing
all of a project's ports.

The races call the service functions in threads, each with its own session (the Powertools resolver is
not thread-safe); on SQLite the transactions are serialised by BEGIN IMMEDIATE, on PostgreSQL the
project row lock is what keeps the numbers apart."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from functions.api.auth import Principal
from functions.api.models import Release, Task, new_id, utcnow
from functions.api.services import releases
from shared.contracts import DEPLOY_QUEUE
from shared.contracts.api import ReleaseFinish, ReleaseStart
from tests.api_support import ApiHarness
from tests.factories import drain
from tests.factories import race as _race

SERVICE = Principal(
    user_id="deployer", telegram_id=None, is_admin=False, scopes=frozenset({"service"}), key_id="k"
)
SHA1, SHA2, SHA3 = "1" * 40, "2" * 40, "3" * 40


@pytest.fixture
def service(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("deployer", scopes=["service"])
    return api.as_key(key)


def _server(api: ApiHarness, handle: str = "local", **labels: str) -> None:
    reply = api.post("/servers", {"handle": handle, "host": "127.0.0.1", "labels": labels})
    assert reply.status == 201, reply


def _deploy_task(api: ApiHarness, project_id: str, user_id: str, **params: Any) -> str:
    """A finished deploy task row (made directly: quicker than running the deploy graph)."""
    with api.deps.db.session() as session:
        task = Task(
            id=new_id(),
            project_id=project_id,
            user_id=user_id,
            type="deploy",
            status="COMPLETED",
            params={"server": "local", **params},
            created_at=utcnow(),
        )
        session.add(task)
        session.flush()
        return task.id


def _admin_id(api: ApiHarness) -> str:
    return str(api.get("/me").body["id"])


def _start(service: ApiHarness, project_id: str, task_id: str, sha: str = SHA1, **extra: Any) -> Any:
    body: dict[str, Any] = {
        "project_id": project_id,
        "task_id": task_id,
        "commit_sha": sha,
        "ref": "main",
        "server_handle": "local",
        "slot": "a",
        "port": 8100,
    } | extra
    return service.post("/internal/releases", body)


def _served(api: ApiHarness, service: ApiHarness, project_id: str, shas: list[str]) -> list[dict[str, Any]]:
    """One release per sha, each served in turn (the earlier ones end superseded)."""
    out = []
    for i, sha in enumerate(shas):
        task = _deploy_task(api, project_id, _admin_id(api))
        started = _start(service, project_id, task, sha, slot="ab"[i % 2], port=8100 + i % 2)
        assert started.status == 201, started
        url = "http://127.0.0.1:8000"
        done = service.post(
            f"/internal/releases/{started.body['id']}/finish", {"status": "serving", "url": url}
        )
        assert done.status == 200, done
        out.append(done.body)
    return out


# -- start / finish ------------------------------------------------------------------------------


def test_a_deploy_task_has_one_release_numbered_per_project(api: ApiHarness, service: ApiHarness) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    shop = api.new_project("shop")["id"]
    task = _deploy_task(api, blog, _admin_id(api))

    first = _start(service, blog, task)
    assert first.status == 201, first
    body = first.body
    assert (body["number"], body["status"], body["commit_sha"], body["slot"], body["port"]) == (
        1,
        "deploying",
        SHA1,
        "a",
        8100,
    )
    assert body["server_handle"] == "local" and body["requested_by"] == _admin_id(api)

    again = _start(service, blog, task, SHA2, slot="b", port=8101)
    assert again.status == 200 and again.body["id"] == body["id"], again
    assert (again.body["number"], again.body["commit_sha"], again.body["slot"]) == (1, SHA2, "b")

    assert _start(service, blog, _deploy_task(api, blog, _admin_id(api))).body["number"] == 2
    assert _start(service, shop, _deploy_task(api, shop, _admin_id(api))).body["number"] == 1, "per project"


def test_start_refuses_bad_input_naming_the_field(api: ApiHarness, service: ApiHarness) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    shop = api.new_project("shop")["id"]
    task = _deploy_task(api, blog, _admin_id(api))
    _, user_key = api.new_user("alice")

    assert _start(api.as_key(user_key), blog, task).status == 403
    bad: list[tuple[str, Any]] = [("commit_sha", "abc"), ("slot", "c"), ("port", 70000), ("ref", "a b")]
    for field, value in bad:
        reply = _start(service, blog, task, SHA1, **{field: value})
        assert reply.status == 422 and field in reply.body["fields"], (field, reply)
    wrong = _start(service, shop, task)
    assert wrong.status == 422 and wrong.body["fields"] == ["task_id"], wrong
    assert _start(service, blog, task, server_handle="nowhere").status == 404


def test_finish_is_a_compare_and_set_and_serving_supersedes(api: ApiHarness, service: ApiHarness) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    one, two = _served(api, service, blog, [SHA1, SHA2])
    listed = api.get("/projects/blog/releases").body["items"]
    assert [(r["number"], r["status"]) for r in listed] == [(2, "serving"), (1, "superseded")]
    assert two["finished_at"] and two["url"] == "http://127.0.0.1:8000"

    repeat = service.post(f"/internal/releases/{two['id']}/finish", {"status": "serving"})
    assert repeat.status == 200 and repeat.body["finished_at"] == two["finished_at"], "a no-op"
    flip = service.post(f"/internal/releases/{two['id']}/finish", {"status": "failed", "error": "x"})
    assert flip.status == 409 and flip.body["fields"] == ["status"], flip
    late = service.post(f"/internal/releases/{one['id']}/finish", {"status": "serving"})
    assert late.status == 409, "a superseded release does not serve again"
    assert service.post(f"/internal/releases/{new_id()}/finish", {"status": "failed"}).status == 404
    bad = service.post(f"/internal/releases/{two['id']}/finish", {"status": "superseded"})
    assert bad.status == 422 and bad.body["fields"] == ["status"]

    task = _deploy_task(api, blog, _admin_id(api))
    three = _start(service, blog, task, SHA3).body
    failed = service.post(
        f"/internal/releases/{three['id']}/finish", {"status": "failed", "error": "Traceback: boom"}
    )
    assert failed.status == 200 and (failed.body["status"], failed.body["error"]) == (
        "failed",
        "Traceback: boom",
    )
    assert api.get("/projects/blog/releases", status="serving").body["items"][0]["number"] == 2, (
        "old serves on"
    )
    retried = _start(service, blog, task, SHA3)
    assert retried.status == 200 and retried.body["status"] == "deploying" and retried.body["error"] is None
    served = _start(service, blog, _deploy_task(api, blog, _admin_id(api))).body
    assert _start(service, blog, served["task_id"]).body["number"] == served["number"]


def test_concurrent_starts_take_distinct_numbers_and_one_release_per_task(
    api: ApiHarness, service: ApiHarness
) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    tasks = [_deploy_task(api, blog, _admin_id(api)) for _ in range(6)]
    db = api.deps.db

    def start(task_id: str) -> int:
        body = ReleaseStart(
            project_id=blog, task_id=task_id, commit_sha=SHA1, server_handle="local", slot="a", port=8100
        )
        with db.session() as session:
            return releases.start(session, SERVICE, body)[0].number

    numbers = _race(6, lambda i: start(tasks[i]))
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6], numbers
    same = _race(4, lambda _i: start(tasks[0]))
    assert same == [numbers[0]] * 4, same
    with db.session() as session:
        assert len(session.execute(select(Release.id)).all()) == 6


def test_two_releases_finishing_serving_at_once_leave_one_serving(
    api: ApiHarness, service: ApiHarness
) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    ids = [_start(service, blog, _deploy_task(api, blog, _admin_id(api))).body["id"] for _ in range(2)]
    db = api.deps.db

    def finish(i: int) -> str:
        with db.session() as session:
            return releases.finish(session, SERVICE, ids[i], ReleaseFinish(status="serving")).status

    assert _race(2, finish) == ["serving", "serving"]
    statuses = sorted(r["status"] for r in api.get("/projects/blog/releases").body["items"])
    assert statuses == ["serving", "superseded"], statuses


# -- reading -------------------------------------------------------------------------------------


def test_owners_read_their_releases_newest_first_a_page_at_a_time(
    api: ApiHarness, service: ApiHarness
) -> None:
    _server(api, "shared", builtin="true")
    alice_user, alice_key = api.new_user("alice")
    alice = api.as_key(alice_key)
    bob = api.as_key(api.new_user("bob")[1])
    blog = alice.new_project("blog")["id"]
    for sha in (SHA1, SHA2, SHA3):
        task = _deploy_task(api, blog, alice_user["id"])
        assert _start(service, blog, task, sha, server_handle="shared").status == 201

    first = alice.get("/projects/blog/releases", limit=2)
    assert [r["number"] for r in first.body["items"]] == [3, 2] and first.body["next_cursor"]
    rest = alice.get("/projects/blog/releases", limit=2, cursor=first.body["next_cursor"])
    assert [r["number"] for r in rest.body["items"]] == [1] and rest.body["next_cursor"] is None
    assert rest.body["items"][0]["requested_by"] == alice_user["id"]
    one = alice.get(f"/projects/{blog}/releases/2")
    assert one.status == 200 and one.body["commit_sha"] == SHA2
    assert alice.get("/projects/blog/releases/9").body["fields"] == ["number"]
    assert alice.get("/projects/blog/releases", cursor="zz").body["fields"] == ["cursor"]
    assert alice.get("/projects/blog/releases", status="gone").status == 422
    assert bob.get("/projects/blog/releases").status == 404, "someone else's project is not found"
    assert bob.get("/projects/blog/releases/1").status == 404
    assert api.get("/projects/blog/releases").status == 200, "an admin reads every project's"


# -- rollback ------------------------------------------------------------------------------------


def test_rollback_queues_a_deploy_of_the_earlier_release(api: ApiHarness, service: ApiHarness) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    _served(api, service, blog, [SHA1, SHA2, SHA3])
    drain(api.deps.queue, DEPLOY_QUEUE)

    default = api.post("/projects/blog/rollback", {})
    assert default.status == 202, default
    assert (default.body["type"], default.body["status"]) == ("deploy", "QUEUED")
    assert default.body["params"] == {"server": "local", "ref": SHA2, "rollback_of": 2}
    [message] = drain(api.deps.queue, DEPLOY_QUEUE)
    assert message.task_id == default.body["id"]

    busy = api.post("/projects/blog/rollback", {"to": 1})
    assert busy.status == 409, "one deploy at a time, as for deploy start"
    with api.deps.db.session() as session:
        session.get(Task, default.body["id"]).status = "CANCELLED"  # type: ignore[union-attr]
    explicit = api.post("/projects/blog/rollback", {"to": 1})
    assert explicit.status == 202 and explicit.body["params"]["ref"] == SHA1, explicit
    assert explicit.body["params"]["rollback_of"] == 1


@pytest.mark.parametrize(
    ("to", "status", "says"),
    [(3, 409, "serving now"), (4, 409, "never served"), (9, 404, "no release 9")],
)
def test_rollback_refuses_a_release_it_cannot_go_back_to(
    api: ApiHarness, service: ApiHarness, to: int, status: int, says: str
) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    _served(api, service, blog, [SHA1, SHA2, SHA3])
    failed = _start(service, blog, _deploy_task(api, blog, _admin_id(api))).body
    service.post(f"/internal/releases/{failed['id']}/finish", {"status": "failed", "error": "boom"})

    reply = api.post("/projects/blog/rollback", {"to": to})

    assert reply.status == status and reply.body["fields"] == ["to"], reply
    assert says in reply.body["message"]


def test_rollback_with_nothing_to_go_back_to_says_so(api: ApiHarness, service: ApiHarness) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    none = api.post("/projects/blog/rollback", {})
    assert none.status == 409 and none.body["fields"] == ["to"], none
    _served(api, service, blog, [SHA1])
    first = api.post("/projects/blog/rollback", {})
    assert first.status == 404 and first.body["fields"] == ["to"], first
    assert api.post("/projects/blog/rollback", {"to": 0}).body["fields"] == ["to"]
    bob = api.as_key(api.new_user("bob")[1])
    assert bob.post("/projects/blog/rollback", {}).status == 404
    assert all(
        t["status"] == "COMPLETED" for t in api.get("/tasks", project_id="blog", type="deploy").body["items"]
    )


# -- domains, slots, ports -----------------------------------------------------------------------


def test_a_project_domain_is_validated_unique_and_clearable(api: ApiHarness) -> None:
    api.new_project("blog")
    api.new_project("shop")
    set_ = api.patch("/projects/blog", {"domain": "Blog.Example.com"})
    assert set_.status == 200 and set_.body["domain"] == "blog.example.com", set_
    shown = api.get("/projects/blog").body
    assert shown["domain"] == "blog.example.com" and "repo_url" in shown
    for bad in ("localhost", "http://x.com", "a..com", "-a.com", "x" * 64 + ".com"):
        reply = api.patch("/projects/blog", {"domain": bad})
        assert reply.status == 422 and reply.body["fields"] == ["domain"], (bad, reply)
    taken = api.patch("/projects/shop", {"domain": "blog.example.com"})
    assert taken.status == 409 and taken.body["fields"] == ["domain"], taken
    assert api.patch("/projects/blog", {"domain": "blog.example.com"}).status == 200, "its own again"
    cleared = api.patch("/projects/blog", {"domain": None})
    assert cleared.status == 200 and cleared.body["domain"] is None
    assert api.patch("/projects/shop", {"domain": "blog.example.com"}).status == 200


def test_slot_ports_are_separate_and_count_once_against_the_limit(api: ApiHarness) -> None:
    api.deps.settings.limit_shared_ports_per_user = 1
    _server(api, "shared", builtin="true")
    alice = api.as_key(api.new_user("alice")[1])
    blog = alice.new_project("blog")["id"]
    shop = alice.new_project("shop")["id"]

    ports = {}
    for slot in ("", "a", "b"):
        reply = alice.post("/servers/shared/ports", {"project_id": blog, "slot": slot})
        assert reply.status == 201 and reply.body["slot"] == slot, reply
        ports[slot] = reply.body["port"]
    assert len(set(ports.values())) == 3
    again = alice.post("/servers/shared/ports", {"project_id": blog, "slot": "a"})
    assert again.status == 200 and again.body["port"] == ports["a"]
    assert alice.post("/servers/shared/ports", {"project_id": blog, "slot": "c"}).body["fields"] == ["slot"]
    refused = alice.post("/servers/shared/ports", {"project_id": shop})
    assert refused.status == 429, "a second project is over the limit; the first one's slots were not"

    freed = alice.call("DELETE", "/servers/shared/ports", query={"project_id": "blog"})
    assert freed.status == 200 and sorted(p["slot"] for p in freed.body) == ["", "a", "b"], freed
    assert alice.call("DELETE", "/servers/shared/ports", query={"project_id": "blog"}).body == []
    assert alice.get("/servers/shared/ports").body == []
    assert alice.post("/servers/shared/ports", {"project_id": shop}).status == 201, "freed for the next"
    bob = api.as_key(api.new_user("bob")[1])
    assert bob.call("DELETE", "/servers/shared/ports", query={"project_id": "shop"}).status == 404


def test_a_deployment_records_its_slot(api: ApiHarness, service: ApiHarness) -> None:
    _server(api)
    api.new_project("blog")
    url = "http://127.0.0.1:8000"
    body = {"server_handle": "local", "port": 8000, "url": url, "health_url": url + "/health", "slot": "b"}
    reply = service.put("/internal/deployments/blog", body)
    assert reply.status == 200 and reply.body["slot"] == "b", reply
    assert api.get("/projects/blog/deployment").body["slot"] == "b"
    assert service.put("/internal/deployments/blog", body | {"slot": "x"}).body["fields"] == ["slot"]


def test_deleting_a_project_deletes_its_releases(api: ApiHarness, service: ApiHarness) -> None:
    _server(api)
    blog = api.new_project("blog")["id"]
    task = _deploy_task(api, blog, _admin_id(api))
    release = _start(service, blog, task).body
    service.post(f"/internal/releases/{release['id']}/finish", {"status": "failed", "error": "x"})
    with api.deps.db.session() as session:
        session.get(Task, task).status = "FAILED"  # type: ignore[union-attr]
    assert api.post("/projects/blog/delete").status == 200
    with api.deps.db.session() as session:
        assert session.execute(select(Release.id)).first() is None
