"""Worker records and messages: exactly one response per message, whatever happens."""

from __future__ import annotations

from shared.contracts import SendFileResponse, SendMessageResponse, parse_message
from tests.api_support import ApiHarness


def _responses(api: ApiHarness) -> list[object]:
    queue = api.deps.queue
    out: list[object] = []
    while batch := queue.receive("worker:responses", 10, visibility_timeout=30):
        for m in batch:
            out.append(parse_message("worker:responses", m.body))
            queue.delete("worker:responses", m.receipt_handle)
    return out


def _worker(api: ApiHarness, worker_id: str = "w-1", request_id: str = "create-1") -> dict:  # type: ignore[type-arg]
    api.new_project("blog")
    task = api.post("/projects/blog/engineering", {"spec": "x"}).body
    reply = api.post("/internal/workers", {"id": worker_id, "agent": "command", "task_id": task["id"],
                                          "create_request_id": request_id,
                                          "config": {"agent": "command", "context": {"repo_url": "/tmp/r"}}})  # fmt: skip
    assert reply.status == 201, reply
    return reply.body  # type: ignore[no-any-return]


def test_record_is_idempotent_by_create_request(api: ApiHarness) -> None:
    worker = _worker(api)
    again = api.post("/internal/workers", {"id": "w-other", "agent": "command", "task_id": worker["task_id"],
                                          "create_request_id": "create-1"})  # fmt: skip
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
    done = api.post(f"/internal/worker-messages/{taken.body['id']}/result",
                    {"success": True, "response": "done", "result": result})  # fmt: skip
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
