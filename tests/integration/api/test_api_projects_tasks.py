"""Projects, tasks, the outbox and the internal transitions, through the real Lambda handler."""

from __future__ import annotations

import json

import pytest

from shared.contracts import EngineeringMessage, parse_message
from shared.queues.local import LocalQueue
from tests.api_support import ApiHarness
from tests.benchmarks.bench_api import count_statements


def _queue(api: ApiHarness) -> LocalQueue:
    queue = api.deps.queue
    assert isinstance(queue, LocalQueue)
    return queue


def test_health_needs_no_key_and_reports_the_schema(api: ApiHarness) -> None:
    reply = api.as_key(None).get("/health")
    assert reply.status == 200
    assert reply.body["database"] == "ok"
    assert reply.body["schema_revision"] == reply.body["expected_revision"]


def test_openapi_and_docs_are_served(api: ApiHarness) -> None:
    spec = api.as_key(None).get("/openapi.json")
    assert spec.status == 200
    assert "/projects/{project_id}/engineering" in spec.body["paths"]
    docs = api.as_key(None).call("GET", "/docs")
    assert docs.status == 200 and "swagger" in str(docs.body).lower()


def test_project_lifecycle(api: ApiHarness) -> None:
    project = api.new_project("blog")
    assert project["status"] == "draft" and project["modules"] == ["backend"]
    assert api.get(f"/projects/{project['id']}").body["name"] == "blog"
    assert api.get("/projects/blog").body["id"] == project["id"], "a name works wherever an id does"
    assert [p["name"] for p in api.get("/projects").body["items"]] == ["blog"]

    patched = api.patch("/projects/blog", {"description": "a better blog", "agent": "claude-code"})
    assert patched.status == 200 and patched.body["agent"] == "claude-code"

    dup = api.post("/projects", {"name": "blog"})
    assert dup.status == 409 and dup.body["code"] == "conflict" and dup.body["fields"] == ["name"]

    archived = api.delete("/projects/blog")
    assert archived.status == 200 and archived.body["status"] == "archived"
    refused = api.post("/projects/blog/engineering", {"spec": "more"})
    assert refused.status == 409


def test_engineering_start_commits_task_and_publishes_its_message(api: ApiHarness) -> None:
    api.new_project("blog")
    reply = api.post("/projects/blog/engineering", {"spec": "a blog with comments", "agent": "command"})
    assert reply.status == 202, reply
    task = reply.body
    assert (task["status"], task["type"], task["params"]["agent"]) == ("QUEUED", "engineering", "command")

    [message] = _queue(api).receive("engineering:queue", visibility_timeout=30)
    parsed = parse_message("engineering:queue", message.body)
    assert isinstance(parsed, EngineeringMessage)
    assert (parsed.task_id, parsed.project_id) == (task["id"], task["project_id"])
    assert parsed.correlation_id == task["correlation_id"] == message.correlation_id
    assert parsed.callback_stream == f"task_progress:{task['id']}"


def test_tasks_list_filters_and_cursor_pagination(api: ApiHarness) -> None:
    api.new_project("blog")
    api.new_project("shop")
    ids = [api.post("/projects/blog/engineering", {"spec": f"s{i}"}).body["id"] for i in range(5)]
    api.post("/projects/shop/engineering", {"spec": "other"})

    page1 = api.get("/tasks", project_id="blog", limit=2)
    assert page1.status == 200 and len(page1.body["items"]) == 2 and page1.body["next_cursor"]
    page2 = api.get("/tasks", project_id="blog", limit=2, cursor=page1.body["next_cursor"])
    page3 = api.get("/tasks", project_id="blog", limit=2, cursor=page2.body["next_cursor"])
    seen = [t["id"] for p in (page1, page2, page3) for t in p.body["items"]]
    assert sorted(seen) == sorted(ids) and len(set(seen)) == 5
    assert page3.body["next_cursor"] is None

    assert len(api.get("/tasks").body["items"]) == 6
    assert len(api.get("/tasks", status="QUEUED", type="engineering").body["items"]) == 6
    assert api.get("/tasks", status="RUNNING").body["items"] == []
    bad = api.get("/tasks", status="SLEEPING")
    assert bad.status == 422 and "status" in bad.body["fields"]
    assert api.get("/tasks", cursor="garbage!!").status == 422


def test_claim_is_compare_and_set_and_transitions_are_checked(api: ApiHarness) -> None:
    api.new_project("blog")
    task = api.post("/projects/blog/engineering", {"spec": "x"}).body
    tid = task["id"]

    first = api.post(f"/internal/tasks/{tid}/claim", {"worker": "engineering-1"})
    assert first.status == 200 and first.body["status"] == "RUNNING" and first.body["attempt"] == 1
    second = api.post(f"/internal/tasks/{tid}/claim", {"worker": "engineering-2"})
    assert second.status == 409 and second.body["code"] == "conflict"

    assert api.post(f"/internal/tasks/{tid}/heartbeat").status == 200
    events = api.post(
        f"/internal/tasks/{tid}/events",
        {
            "events": [
                {"type": "progress", "message": "developer", "current_step": "developer", "progress_pct": 40},
                {"type": "progress", "message": "tester", "current_step": "tester", "progress_pct": 70},
            ]
        },
    )
    assert events.status == 201 and [e["current_step"] for e in events.body] == ["developer", "tester"]
    bad_event = api.post(f"/internal/tasks/{tid}/events", {"events": [{"type": "exploded"}]})
    assert bad_event.status == 422 and bad_event.body["fields"][0].startswith("events.0")

    done = api.post(f"/internal/tasks/{tid}/complete", {"result": {"commit_sha": "abc", "status": "success"}})
    assert done.status == 200 and done.body["status"] == "COMPLETED" and done.body["finished_at"]
    assert api.post(f"/internal/tasks/{tid}/fail", {"error": "late"}).status == 409
    assert api.post(f"/tasks/{tid}/cancel").status == 409

    listed = api.get(f"/tasks/{tid}/events").body
    assert [e["type"] for e in listed] == ["started", "progress", "progress"]
    after = api.get(f"/tasks/{tid}/events", after=listed[0]["seq"]).body
    assert [e["current_step"] for e in after] == ["developer", "tester"]


def test_cancel_then_retry_requeues_with_a_new_message(api: ApiHarness) -> None:
    api.new_project("blog")
    tid = api.post("/projects/blog/engineering", {"spec": "x"}).body["id"]
    queue = _queue(api)
    [first] = queue.receive("engineering:queue", visibility_timeout=30)
    queue.delete("engineering:queue", first.receipt_handle)

    cancelled = api.post(f"/tasks/{tid}/cancel")
    assert cancelled.status == 200 and cancelled.body["status"] == "CANCELLED"
    assert api.post(f"/internal/tasks/{tid}/claim", {}).status == 409, "a cancelled task cannot be claimed"

    retried = api.post(f"/tasks/{tid}/retry")
    assert retried.status == 202 and retried.body["status"] == "QUEUED"
    [again] = queue.receive("engineering:queue", visibility_timeout=30)
    assert json.loads(again.body)["task_id"] == tid
    assert api.post(f"/tasks/{tid}/retry").status == 409, "only failed or cancelled tasks can be retried"


def test_wait_and_resume(api: ApiHarness) -> None:
    api.new_project("blog")
    api.post("/servers", {"handle": "localhost", "host": "127.0.0.1"})
    tid = api.post("/projects/blog/deploy", {"server": "localhost"}).body["id"]
    api.post(f"/internal/tasks/{tid}/claim", {})
    waiting = api.post(f"/internal/tasks/{tid}/wait", {"reason": "missing secrets: BOT_TOKEN"})
    assert waiting.body["status"] == "WAITING_INPUT"
    assert api.get(f"/tasks/{tid}/events").body[-1]["message"] == "missing secrets: BOT_TOKEN"
    assert api.post(f"/internal/tasks/{tid}/resume").body["status"] == "RUNNING"


def test_a_second_deploy_of_a_project_is_refused_while_one_runs(api: ApiHarness) -> None:
    api.new_project("blog")
    api.post("/servers", {"handle": "localhost", "host": "127.0.0.1"})
    first = api.post("/projects/blog/deploy", {"server": "localhost"})
    assert first.status == 202
    second = api.post("/projects/blog/deploy", {"server": "localhost"})
    assert second.status == 409 and first.body["id"] in second.body["message"]
    unknown_server = api.post("/projects/blog/deploy", {"server": "nowhere"})
    assert unknown_server.status == 404


def test_users_see_only_their_own_things(api: ApiHarness) -> None:
    _, alice_key = api.new_user("alice", telegram_id=1001)
    _, bob_key = api.new_user("bob", telegram_id=1002)
    alice, bob = api.as_key(alice_key), api.as_key(bob_key)

    project = alice.new_project("alices-blog")
    task = alice.post("/projects/alices-blog/engineering", {"spec": "x"}).body
    assert bob.get(f"/projects/{project['id']}").status == 404
    assert bob.get("/projects/alices-blog").status == 404
    assert bob.get(f"/tasks/{task['id']}").status == 404
    assert bob.post(f"/tasks/{task['id']}/cancel").status == 404
    assert bob.get("/tasks").body["items"] == []
    assert bob.get("/projects").body == {"items": [], "next_cursor": None}
    assert bob.put("/projects/alices-blog/secrets/TOKEN", {"value": "x"}).status == 404
    assert api.get(f"/tasks/{task['id']}").status == 200, "admins see everything"

    forbidden = alice.get("/users")
    assert forbidden.status == 403 and forbidden.body["code"] == "forbidden"
    assert alice.post(f"/internal/tasks/{task['id']}/claim", {}).status == 403

    message = json.loads(api.deps.queue.receive("engineering:queue", visibility_timeout=30)[0].body)
    assert message["user_id"] == 1001, "queue messages carry the Telegram id"


@pytest.mark.parametrize("returning", [True, False], ids=["update-returning", "no-returning"])
def test_task_lease_has_one_holder_at_a_time(
    api: ApiHarness, returning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same answers whether the database returns what an UPDATE changed (PostgreSQL, SQLite 3.35+:
    a taken lease is one statement, a release by its holder one) or not (an older SQLite)."""
    monkeypatch.setattr(api.deps.db.engine.dialect, "update_returning", returning)
    api.new_project("blog")
    tid = api.post("/projects/blog/engineering", {"spec": "x"}).body["id"]
    with count_statements(api.deps.db.engine) as take:
        first = api.post(f"/internal/tasks/{tid}/lease", {"holder": "a", "seconds": 60})
    assert first.status == 200 and first.body["holder"] == "a" and first.body["status"] == "QUEUED"
    assert first.body["acquired"] is True and first.body["until"]
    writes = [sql for sql in take.sql if not sql.startswith("BEGIN")]
    assert len(writes) == (1 if returning else 2), writes
    refused = api.post(f"/internal/tasks/{tid}/lease", {"holder": "b", "seconds": 60})
    assert refused.status == 409 and "leased by a" in refused.body["message"]
    assert api.post(f"/internal/tasks/{tid}/lease", {"holder": "a", "seconds": 60}).status == 200, "renewable"
    not_mine = api.call("DELETE", f"/internal/tasks/{tid}/lease", query={"holder": "b"})
    assert not_mine.status == 200 and not_mine.body["holder"] == "a", "only its holder gives it back"
    with count_statements(api.deps.db.engine) as give_back:
        released = api.call("DELETE", f"/internal/tasks/{tid}/lease", query={"holder": "a"})
    assert released.status == 200 and released.body["holder"] is None and released.body["until"] is None
    assert len([sql for sql in give_back.sql if not sql.startswith("BEGIN")]) == 1
    assert api.post(f"/internal/tasks/{tid}/lease", {"holder": "b", "seconds": 60}).status == 200
    missing = "00000000-0000-4000-8000-000000000000"
    assert api.post(f"/internal/tasks/{missing}/lease", {"holder": "a", "seconds": 60}).status == 404
    assert api.call("DELETE", f"/internal/tasks/{missing}/lease", query={"holder": "a"}).status == 404


def test_cancel_queues_a_delete_for_each_live_worker(api: ApiHarness) -> None:
    api.new_project("blog")
    tid = api.post("/projects/blog/engineering", {"spec": "x"}).body["id"]
    api.post(f"/internal/tasks/{tid}/claim", {})
    api.post("/internal/workers", {"id": "w-live", "agent": "command", "task_id": tid, "status": "RUNNING"})
    api.post("/internal/workers", {"id": "w-dead", "agent": "command", "task_id": tid, "status": "STOPPED"})
    assert api.post(f"/tasks/{tid}/cancel").status == 200
    [command] = api.deps.queue.receive("worker:commands", visibility_timeout=30)
    assert (
        json.loads(command.body)["command"] == "delete" and json.loads(command.body)["worker_id"] == "w-live"
    )


def test_task_transitions_publish_emf_metrics(api: ApiHarness, capsys) -> None:  # type: ignore[no-untyped-def]
    api.new_project("blog")
    tid = api.post("/projects/blog/engineering", {"spec": "x"}).body["id"]
    api.post(f"/internal/tasks/{tid}/claim", {})
    api.post(f"/internal/tasks/{tid}/complete", {"result": {}})
    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')
    ]
    names = {m["Name"] for line in emitted for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"TasksStarted", "TasksCompleted", "TaskDuration"} <= names
    assert all(line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CodegenOrchestrator" for line in emitted)


def test_appended_progress_never_goes_back_within_a_batch_or_across_and_reaches_a_telegram_owner(
    api: ApiHarness,
) -> None:
    """The events route reads the task, its owner's Telegram id and the progress reached in one query, then
    keeps them for the batch: each event is still clamped to the highest progress before it, and each one
    goes to progress:events for an owner who uses Telegram."""
    from shared.contracts import PROGRESS_EVENTS

    # given a task of a person who uses Telegram, at 50 %
    _, key = api.new_user("tg-person", telegram_id=4242)
    person = api.as_key(key)
    assert person.post("/projects", {"name": "tg-blog"}).status == 201
    tid = person.post("/projects/tg-blog/engineering", {"spec": "x"}).body["id"]
    step = {"type": "progress", "message": "m", "current_step": "s"}
    assert api.post(f"/internal/tasks/{tid}/events", {"events": [{**step, "progress_pct": 50}]}).status == 201
    queue = _queue(api)
    for message in queue.receive(PROGRESS_EVENTS, max_messages=10, visibility_timeout=30):
        queue.delete(PROGRESS_EVENTS, message.receipt_handle)

    # when a batch goes lower, higher, then lower again, and a later request lower still
    batch = [{**step, "progress_pct": p} for p in (30, 80, 60)] + [{**step, "message": "no pct"}]
    stored = api.post(f"/internal/tasks/{tid}/events", {"events": batch})
    later = api.post(f"/internal/tasks/{tid}/events", {"events": [{**step, "progress_pct": 10}]})

    # then no stored event is below what came before it
    assert stored.status == 201 and later.status == 201
    assert [e["progress_pct"] for e in stored.body] == [50, 80, 80, None]
    assert [e["progress_pct"] for e in later.body] == [80]
    # and the owner's notifier got each of them
    published = queue.receive(PROGRESS_EVENTS, max_messages=10, visibility_timeout=30)
    assert sorted(json.loads(m.body).get("progress_pct") or 0 for m in published) == [0, 50, 80, 80, 80]
