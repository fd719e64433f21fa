"""Per-task worker tokens (issue 20): a worker's token acts for its own worker, messages and task, and
is refused everywhere else (403), after rotation, expiry or its worker's end (401)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from functions.api import worker_tokens
from functions.api.errors import Unauthorized
from functions.api.models import Worker, utcnow
from tests.api_support import ApiHarness


@dataclass
class World:
    alice_key: str
    bob_key: str
    alice_user: str
    bob_user: str
    alice_task: str
    bob_task: str


def _record(api: ApiHarness, worker_id: str, task_id: str | None, config: dict | None = None) -> None:  # type: ignore[type-arg]
    reply = api.post(
        "/internal/workers",
        {"id": worker_id, "agent": "command", "task_id": task_id, "config": config or {"agent": "command"}},
    )
    assert reply.status == 201, reply


def _world(api: ApiHarness) -> World:
    alice, alice_key = api.new_user("alice", telegram_id=1)
    bob, bob_key = api.new_user("bob", telegram_id=2)
    tasks = []
    for key, name in ((alice_key, "alices"), (bob_key, "bobs")):
        person = api.as_key(key)
        person.new_project(name)
        tasks.append(person.post(f"/projects/{name}/engineering", {"spec": "x"}).body["id"])
    _record(api, "w-a", tasks[0])
    _record(api, "w-b", tasks[1])
    return World(alice_key, bob_key, alice["id"], bob["id"], tasks[0], tasks[1])


def _token(api: ApiHarness, worker_id: str = "w-a", ttl_s: int = 600) -> str:
    reply = api.post(f"/internal/workers/{worker_id}/token", {"ttl_s": ttl_s})
    assert reply.status == 201, reply
    assert reply.body["worker_id"] == worker_id and reply.body["token"].startswith("orchw_")
    return str(reply.body["token"])


def test_minting_rotates_and_only_the_service_may_mint(api: ApiHarness) -> None:
    world = _world(api)
    first = _token(api)
    assert api.as_key(first).get("/internal/workers/w-a").status == 200
    second = _token(api)
    assert second != first
    old = api.as_key(first).get("/internal/workers/w-a")
    assert old.status == 401 and "invalid worker token" in old.body["message"]
    assert api.as_key(second).get("/internal/workers/w-a").status == 200
    assert api.as_key(world.alice_key).post("/internal/workers/w-a/token", {}).status == 403
    assert api.as_key(second).post("/internal/workers/w-a/token", {}).status == 403, "a token mints no token"
    assert api.post("/internal/workers/w-a/token", {"ttl_s": 59}).body["fields"] == ["ttl_s"]
    assert api.post("/internal/workers/nope/token", {}).status == 404
    assert api.as_key("orchw_made-up").get("/internal/workers/w-a").status == 401


def test_a_mint_that_claims_the_start_is_the_one_compare_and_set_that_wins(api: ApiHarness) -> None:
    """Issue 24: the worker manager takes CREATED -> STARTING and the token in one request; a second
    delivery's claim is refused (409) and replaces nothing: the winner's token still works."""
    _world(api)
    won = api.post("/internal/workers/w-a/token", {"ttl_s": 600, "claim_start": True})
    assert won.status == 201, won
    lost = api.post("/internal/workers/w-a/token", {"ttl_s": 600, "claim_start": True})
    assert lost.status == 409 and "not CREATED" in lost.body["message"] and "token" not in lost.body
    token = str(won.body["token"])
    mine = api.as_key(token).get("/internal/workers/w-a")
    assert mine.status == 200 and mine.body["status"] == "STARTING"


def test_the_token_names_the_person_and_the_worker(api: ApiHarness) -> None:
    world = _world(api)
    token = _token(api)
    with api.deps.db.session() as session:
        caller = worker_tokens.authenticate(session, token)
    assert caller.scopes == frozenset({"worker"}) and caller.worker_id == "w-a"
    assert caller.user_id == world.alice_user and not caller.is_admin and caller.key_id == "worker:w-a"
    assert not caller.sees_all() and not caller.is_service


def test_an_expired_token_and_an_ended_worker_are_refused(api: ApiHarness) -> None:
    _world(api)
    token = _token(api)
    with api.deps.db.session() as session:
        with pytest.raises(Unauthorized, match="expired"):
            worker_tokens.authenticate(session, token, now=utcnow() + timedelta(seconds=601))
        row = session.get(Worker, "w-a")
        assert row is not None
        row.token_expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    expired = api.as_key(token).get("/internal/workers/w-a")
    assert expired.status == 401 and expired.body["message"] == "this worker token expired"

    token = _token(api)
    assert api.as_key(token).post("/internal/workers/w-a/stopped", {"reason": "done"}).status == 200
    ended = api.as_key(token).get("/internal/workers/w-a")
    assert ended.status == 401 and "its worker has ended" in ended.body["message"]
    assert api.post("/internal/workers/w-a/token", {}).status == 409, "an ended worker gets no new token"


def test_every_route_of_the_wrapper_works_with_the_token(api: ApiHarness) -> None:
    world = _world(api)
    _record(api, "w-act", world.alice_task, {"agent": "command", "activity_every_s": 30})
    worker = api.as_key(_token(api, "w-act"))
    assert worker.get("/internal/workers/w-act").body["config"]["activity_every_s"] == 30
    assert worker.patch("/internal/workers/w-act", {"status": "RUNNING"}).body["status"] == "RUNNING"
    assert worker.post("/internal/workers/w-act/messages/next").status == 204
    api.post("/internal/workers/w-act/messages", {"request_id": "m-1", "body": "do it"})
    taken = worker.post("/internal/workers/w-act/messages/next")
    assert taken.status == 200 and taken.body["request_id"] == "m-1"
    message_id = taken.body["id"]
    assert worker.post(f"/internal/worker-messages/{message_id}/activity").status == 202
    events = worker.post(
        f"/internal/tasks/{world.alice_task}/events", {"events": [{"type": "progress", "message": "half"}]}
    )
    assert events.status == 201, events
    done = worker.post(f"/internal/worker-messages/{message_id}/result", {"success": True, "response": "ok"})
    assert done.status == 200 and done.body["status"] == "DONE"
    assert worker.post("/internal/workers/w-act/stopped", {"reason": "finished"}).body["status"] == "STOPPED"


OTHER_ROUTES: list[tuple[str, str, object]] = [
    ("GET", "/me", None),
    ("GET", "/projects", None),
    ("POST", "/projects", {"name": "sneaky", "description": "x", "modules": ["backend"]}),
    ("GET", "/projects/alices", None),
    ("GET", "/projects/bobs", None),
    ("GET", "/projects/alices/secrets", None),
    ("PUT", "/projects/alices/secrets/TOKEN", {"value": "x"}),
    ("POST", "/projects/alices/engineering", {"spec": "more"}),
    ("GET", "/tasks", None),
    ("GET", "/tasks/{alice_task}", None),
    ("GET", "/tasks/{bob_task}", None),
    ("GET", "/tasks/{alice_task}/events", None),
    ("POST", "/tasks/{alice_task}/cancel", None),
    ("POST", "/internal/tasks/{alice_task}/complete", {"result": {}}),
    ("POST", "/internal/tasks/{bob_task}/events", {"events": [{"type": "progress", "message": "x"}]}),
    ("GET", "/workers", None),
    ("GET", "/workers/w-a/messages", None),
    ("POST", "/workers/w-b/stop", None),
    ("GET", "/internal/workers/w-b", None),
    ("PATCH", "/internal/workers/w-b", {"status": "RUNNING"}),
    ("POST", "/internal/workers/w-b/messages/next", None),
    ("POST", "/internal/workers/w-b/stopped", {"reason": "x"}),
    ("POST", "/internal/workers/w-a/messages", {"request_id": "m-x", "body": "x"}),
    ("POST", "/internal/workers", {"id": "w-new", "agent": "command"}),
    ("GET", "/users", None),
    ("POST", "/users/{alice_user}/api-keys", {"scopes": ["user"]}),
    ("GET", "/servers", None),
    ("GET", "/deployments", None),
    ("GET", "/incidents", None),
    ("POST", "/internal/outbox/sweep", None),
    ("POST", "/internal/maintenance/collect-orphan-workers", {}),
]


def test_a_worker_token_is_refused_everywhere_else(api: ApiHarness) -> None:
    world = _world(api)
    worker = api.as_key(_token(api))
    for method, template, body in OTHER_ROUTES:
        path = template.format(
            alice_task=world.alice_task, bob_task=world.bob_task, alice_user=world.alice_user
        )
        reply = worker.call(method, path, body)
        assert reply.status == 403, (method, path, reply)
        assert reply.body["message"] == "a worker token may only act for its own worker"


def test_messages_of_another_worker_are_refused_not_found(api: ApiHarness) -> None:
    _world(api)
    api.post("/internal/workers/w-b/messages", {"request_id": "m-b", "body": "x"})
    message_id = api.post("/internal/workers/w-b/messages/next").body["id"]
    worker = api.as_key(_token(api))
    for path in (f"/internal/worker-messages/{message_id}/result", "/internal/worker-messages/999/result"):
        assert worker.post(path, {"success": True}).status == 403, "never 404: nothing leaks"
    assert worker.post(f"/internal/worker-messages/{message_id}/activity").status == 403
    assert api.post(f"/internal/worker-messages/{message_id}/result", {"success": True}).status == 200
