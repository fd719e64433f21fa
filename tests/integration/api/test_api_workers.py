"""Worker records and messages: exactly one response per message, whatever happens."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from functions.api.models import OutboxMessage, Worker, utcnow
from functions.api.services.workers import SEEN_EVERY
from shared.contracts import SendFileResponse, SendMessageResponse, WorkerActivity, parse_message
from shared.workers.wake import WakeListener
from tests.api_support import ApiHarness
from tests.benchmarks.bench_api import count_statements


def _responses(api: ApiHarness, queue_name: str = "worker:responses") -> list[object]:
    queue = api.deps.queue
    out: list[object] = []
    while batch := queue.receive(queue_name, 10, visibility_timeout=30):
        for m in batch:
            out.append(parse_message(queue_name, m.body))
            queue.delete(queue_name, m.receipt_handle)
    return out


def _worker(api: ApiHarness, worker_id: str = "w-1", request_id: str = "create-1") -> dict:  # type: ignore[type-arg]
    api.new_project("blog")
    task = api.post("/projects/blog/engineering", {"spec": "x"}).body
    reply = api.post(
        "/internal/workers",
        {
            "id": worker_id,
            "agent": "command",
            "task_id": task["id"],
            "create_request_id": request_id,
            "config": {"agent": "command", "context": {"repo_url": "/tmp/r"}},
        },
    )
    assert reply.status == 201, reply
    return reply.body  # type: ignore[no-any-return]


def test_record_is_idempotent_by_create_request(api: ApiHarness) -> None:
    worker = _worker(api)
    again = api.post(
        "/internal/workers",
        {"id": "w-other", "agent": "command", "task_id": worker["task_id"], "create_request_id": "create-1"},
    )
    assert again.status == 200 and again.body["id"] == "w-1"
    detail = api.get("/internal/workers/w-1")
    assert detail.body["config"]["context"]["repo_url"] == "/tmp/r"
    cas = api.patch("/internal/workers/w-1", {"status": "STARTING", "expected_status": "CREATED"})
    assert cas.status == 200
    lost = api.patch("/internal/workers/w-1", {"status": "STARTING", "expected_status": "CREATED"})
    assert lost.status == 409


def test_message_lifecycle_gives_one_response(api: ApiHarness) -> None:
    _worker(api)
    sent = api.post(
        "/internal/workers/w-1/messages", {"request_id": "m-1", "body": "implement it", "timeout_s": 60}
    )
    assert sent.status == 201 and sent.body["status"] == "PENDING"
    assert (
        api.post("/internal/workers/w-1/messages", {"request_id": "m-1", "body": "implement it"}).status
        == 200
    )

    taken = api.post("/internal/workers/w-1/messages/next")
    assert taken.status == 200 and taken.body["request_id"] == "m-1" and taken.body["status"] == "RUNNING"
    assert api.post("/internal/workers/w-1/messages/next").body["id"] == taken.body["id"], (
        "until it is answered"
    )

    result = {"status": "success", "commit_sha": "abc", "files_changed": ["app.py"]}
    done = api.post(
        f"/internal/worker-messages/{taken.body['id']}/result",
        {"success": True, "response": "done", "result": result},
    )
    assert done.status == 200 and done.body["status"] == "DONE"
    assert api.post(f"/internal/worker-messages/{taken.body['id']}/result", {"success": False}).status == 409

    [response] = _responses(api)
    assert isinstance(response, SendMessageResponse)
    assert (response.request_id, response.success, response.response) == ("m-1", True, "done")
    assert response.result == result and response.worker_id == "w-1"


def test_a_dead_worker_fails_everything_it_owed_once(api: ApiHarness) -> None:
    _worker(api)
    for i in range(2):
        api.post("/internal/workers/w-1/messages", {"request_id": f"m-{i}", "body": "x"})
    api.post(
        "/internal/workers/w-1/messages", {"request_id": "f-1", "kind": "file", "path": "a.txt", "body": "x"}
    )
    api.post("/internal/workers/w-1/messages/next")  # m-0 RUNNING, the others PENDING

    stopped = api.post(
        "/internal/workers/w-1/stopped", {"status": "FAILED", "exit_code": 137, "reason": "OOM"}
    )
    assert stopped.status == 200 and stopped.body["status"] == "FAILED" and stopped.body["exit_code"] == 137
    again = api.post("/internal/workers/w-1/stopped", {"status": "STOPPED", "reason": "late report"})
    assert again.body["status"] == "FAILED", "the first report wins"

    responses = _responses(api)
    assert sorted(r.request_id for r in responses) == ["f-1", "m-0", "m-1"]  # type: ignore[attr-defined]
    assert all(not r.success and "OOM" in r.error and "137" in r.error for r in responses)  # type: ignore[attr-defined]
    assert any(isinstance(r, SendFileResponse) for r in responses)

    late = api.post("/internal/workers/w-1/messages", {"request_id": "m-late", "body": "x"})
    assert late.body["status"] == "FAILED"
    [late_response] = _responses(api)
    assert late_response.request_id == "m-late" and not late_response.success  # type: ignore[attr-defined]
    assert api.post("/internal/workers/w-1/messages/next").status == 410


def test_people_see_their_own_workers(api: ApiHarness) -> None:
    _, alice_key = api.new_user("alice", telegram_id=1)
    alice = api.as_key(alice_key)
    alice.new_project("alices")
    task = alice.post("/projects/alices/engineering", {"spec": "x"}).body
    api.post("/internal/workers", {"id": "w-a", "agent": "command", "task_id": task["id"]})
    _, bob_key = api.new_user("bob", telegram_id=2)
    assert [w["id"] for w in alice.get("/workers").body] == ["w-a"]
    assert api.as_key(bob_key).get("/workers").body == []
    assert api.as_key(bob_key).get("/workers/w-a/messages").status == 404
    assert alice.post("/internal/workers/w-a/messages/next").status == 403


def test_a_claim_whose_answer_was_lost_comes_back(api: ApiHarness) -> None:
    _worker(api)
    api.post("/internal/workers/w-1/messages", {"request_id": "m-1", "body": "x"})
    first = api.post("/internal/workers/w-1/messages/next")
    assert first.status == 200  # imagine this answer never reached the wrapper
    again = api.post("/internal/workers/w-1/messages/next")
    assert again.status == 200 and again.body["id"] == first.body["id"]
    empty = api.post("/internal/workers/w-1/messages/next")
    assert empty.status == 200, "still running: the wrapper gets it until it answers"
    api.post(f"/internal/worker-messages/{first.body['id']}/result", {"success": True})
    nothing = api.post("/internal/workers/w-1/messages/next")
    assert nothing.status == 204 and nothing.body is None


def test_an_idle_poll_only_reads_and_the_worker_is_still_seen_alive(api: ApiHarness) -> None:
    """An idle wrapper asks about once a second: those polls write nothing (on SQLite every write waits
    for the one writer) until `last_seen_at` is older than SEEN_EVERY; a message still comes at once."""
    _worker(api)
    assert api.post("/internal/workers/w-1/messages/next").status == 204  # the first poll marks it seen
    seen = api.get("/internal/workers/w-1").body["last_seen_at"]
    assert seen is not None

    with count_statements(api.deps.db.engine) as idle:
        assert api.post("/internal/workers/w-1/messages/next").status == 204
    assert not [sql for sql in idle.sql if sql.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]
    assert api.get("/internal/workers/w-1").body["last_seen_at"] == seen

    with api.deps.db.session() as session:  # SEEN_EVERY later
        session.get(Worker, "w-1").last_seen_at = utcnow() - SEEN_EVERY  # type: ignore[union-attr]
    assert api.post("/internal/workers/w-1/messages/next").status == 204
    assert api.get("/internal/workers/w-1").body["last_seen_at"] > seen, "seen again"

    api.post("/internal/workers/w-1/messages", {"request_id": "m-1", "body": "x"})
    taken = api.post("/internal/workers/w-1/messages/next")
    assert taken.status == 200 and taken.body["status"] == "RUNNING"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract unix sockets are Linux's")
def test_a_stored_message_wakes_its_idle_worker_once_committed(api: ApiHarness) -> None:
    """The embedded API (a local queue) wakes the worker's wrapper after the commit: it asks at once
    instead of at the end of its pause (shared.workers.wake). A repeat of the same request wakes nobody."""
    worker_id = f"w-wake-{uuid.uuid4().hex[:10]}"
    _worker(api, worker_id)
    listener = WakeListener(worker_id)
    try:
        assert not listener.wait(0.01)
        sent = api.post(f"/internal/workers/{worker_id}/messages", {"request_id": "m-1", "body": "x"})
        assert sent.status == 201
        assert listener.wait(10), "woken"
        listener.drain()
        again = api.post(f"/internal/workers/{worker_id}/messages", {"request_id": "m-1", "body": "x"})
        assert again.status == 200 and not listener.wait(0.05), "a repeat stores nothing: no wake-up"
        assert api.post(f"/internal/workers/{worker_id}/messages/next").body["request_id"] == "m-1"
    finally:
        listener.close()


# -- activity: "the agent is still working" -------------------------------------------------------


def _po_worker(api: ApiHarness, worker_id: str = "w-po", activity_every_s: int | None = 4) -> None:
    config: dict[str, Any] = {"name": "po-u1", "agent": "command", "reply_queue": "po:responses"}
    if activity_every_s is not None:
        config["activity_every_s"] = activity_every_s
    reply = api.post("/internal/workers", {"id": worker_id, "agent": "command", "config": config})
    assert reply.status == 201, reply


def _running(api: ApiHarness, worker_id: str, request_id: str, correlation_id: str | None = None) -> int:
    body = {"request_id": request_id, "body": "hello", "correlation_id": correlation_id}
    sent = api.post(f"/internal/workers/{worker_id}/messages", body)
    assert sent.status == 201, sent
    taken = api.post(f"/internal/workers/{worker_id}/messages/next")
    assert taken.status == 200 and taken.body["request_id"] == request_id, taken
    return int(taken.body["id"])


def _outbox_rows(api: ApiHarness, queue: str) -> int:
    with api.deps.db.session() as session:
        return int(session.execute(select(func.count()).where(OutboxMessage.queue == queue)).scalar_one())


def test_a_running_message_reports_activity_on_the_workers_reply_queue(api: ApiHarness) -> None:
    # given a PO worker (activity every 4 s, answers on po:responses) working on a message
    _po_worker(api)
    message_id = _running(api, "w-po", "po:m-1", correlation_id="corr-1")
    seen_before = api.get("/internal/workers/w-po").body["last_seen_at"]

    # when the wrapper reports activity
    reply = api.post(f"/internal/worker-messages/{message_id}/activity")

    # then one ephemeral activity response goes to po:responses, none to worker:responses
    assert reply.status == 202, reply
    assert reply.body == {"message_id": message_id, "worker_id": "w-po", "reply_queue": "po:responses"}
    assert _outbox_rows(api, "po:responses") == 1
    [activity] = _responses(api, "po:responses")
    assert isinstance(activity, WorkerActivity)
    assert (activity.request_id, activity.correlation_id, activity.worker_id, activity.success) == (
        "po:m-1",
        "corr-1",
        "w-po",
        True,
    )
    assert _responses(api) == []
    assert api.get("/internal/workers/w-po").body["last_seen_at"] > seen_before, "a sign of life"
    message = api.get("/workers/w-po/messages").body[0]
    assert message["status"] == "RUNNING", "activity never answers the message"


def test_activity_repeats_until_the_answer_then_is_refused(api: ApiHarness) -> None:
    _po_worker(api)
    message_id = _running(api, "w-po", "po:m-1")
    for _ in range(2):
        assert api.post(f"/internal/worker-messages/{message_id}/activity").status == 202
    api.post(f"/internal/worker-messages/{message_id}/result", {"success": True, "response": "hi"})

    late = api.post(f"/internal/worker-messages/{message_id}/activity")

    assert late.status == 409 and late.body["code"] == "conflict"
    assert "is DONE, not RUNNING" in late.body["message"]
    responses = _responses(api, "po:responses")
    assert [type(r) for r in responses] == [WorkerActivity, WorkerActivity, SendMessageResponse]


def test_activity_for_a_message_nobody_works_on_is_a_conflict(api: ApiHarness) -> None:
    _po_worker(api)
    _running(api, "w-po", "po:m-1")
    waiting = api.post("/internal/workers/w-po/messages", {"request_id": "po:m-2", "body": "x"}).body
    assert waiting["status"] == "PENDING"

    reply = api.post(f"/internal/worker-messages/{waiting['id']}/activity")

    assert reply.status == 409 and "is PENDING, not RUNNING" in reply.body["message"]
    assert _outbox_rows(api, "po:responses") == 0


def test_activity_from_a_worker_that_does_not_report_it_is_a_conflict(api: ApiHarness) -> None:
    _worker(api)  # an engineering worker: no activity_every_s, answers on worker:responses
    message_id = _running(api, "w-1", "m-1")

    reply = api.post(f"/internal/worker-messages/{message_id}/activity")

    assert reply.status == 409 and "does not report activity" in reply.body["message"]
    assert _outbox_rows(api, "worker:responses") == 0


def test_activity_needs_a_known_message_and_a_service_key(api: ApiHarness) -> None:
    _po_worker(api)
    message_id = _running(api, "w-po", "po:m-1")
    _, person_key = api.new_user("alice", telegram_id=1)
    _, service_key = api.new_user("wrapper", scopes=["service"])

    assert api.post("/internal/worker-messages/999/activity").status == 404
    assert api.post("/internal/worker-messages/0/activity").status == 422
    assert api.as_key(person_key).post(f"/internal/worker-messages/{message_id}/activity").status == 403
    assert api.as_key(service_key).post(f"/internal/worker-messages/{message_id}/activity").status == 202
    assert len(_responses(api, "po:responses")) == 1


# -- listing by name and status -------------------------------------------------------------------


def test_workers_are_listed_by_config_name_and_several_statuses(api: ApiHarness) -> None:
    odd_name = "po 'ü\"x"
    for worker_id, name, status in (
        ("w-a", "po-u1", "RUNNING"),
        ("w-b", "po-u1", "STOPPED"),
        ("w-c", "po-u2", "STARTING"),
        ("w-d", None, "CREATED"),
        ("w-e", odd_name, "CREATED"),
    ):
        config = {"name": name, "agent": "command"} if name else {}
        recorded = api.post(
            "/internal/workers", {"id": worker_id, "agent": "command", "status": status, "config": config}
        )
        assert recorded.status == 201, recorded

    def ids(**query: str) -> list[str]:
        reply = api.get("/workers", **query)
        assert reply.status == 200, reply
        return sorted(w["id"] for w in reply.body)

    assert ids(name="po-u1") == ["w-a", "w-b"]
    assert ids(name="po-u1", status="CREATED,STARTING,RUNNING") == ["w-a"]
    assert ids(status="STARTING, CREATED") == ["w-c", "w-d", "w-e"]
    assert ids(status="RUNNING") == ["w-a"]
    assert ids(name=odd_name) == ["w-e"]
    assert ids(name="nobody") == []
    assert ids() == ["w-a", "w-b", "w-c", "w-d", "w-e"]


def test_an_unknown_status_or_a_long_name_is_refused(api: ApiHarness) -> None:
    bad = api.get("/workers", status="RUNNING,BOGUS")
    assert bad.status == 422 and bad.body["fields"] == ["status"] and "'BOGUS'" in bad.body["message"]
    long_name = api.get("/workers", name="n" * 129)
    assert long_name.status == 422 and long_name.body["fields"] == ["name"]


def test_people_filter_only_their_own_workers_by_name(api: ApiHarness) -> None:
    _, alice_key = api.new_user("alice", telegram_id=1)
    alice = api.as_key(alice_key)
    alice.new_project("alices")
    task = alice.post("/projects/alices/engineering", {"spec": "x"}).body
    for worker_id, task_id in (("w-alice", task["id"]), ("w-service", None)):
        api.post(
            "/internal/workers",
            {
                "id": worker_id,
                "agent": "command",
                "task_id": task_id,
                "config": {"name": "dev", "agent": "command"},
            },
        )

    assert [w["id"] for w in alice.get("/workers", name="dev").body] == ["w-alice"]
    assert sorted(w["id"] for w in api.get("/workers", name="dev").body) == ["w-alice", "w-service"]
