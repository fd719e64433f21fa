"""Issue 24: a `command` message (an engineering task's tests on the developer's worker) through the API:
it carries the budget left like an agent's prompt, its answer is one send_message response, a redelivered
send is kept once, and one worker serving both rounds is one `worker:<id>` row of the ledger."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from functions.api.models import UsageEntry
from shared.contracts import parse_message
from shared.contracts.workers import SendMessageResponse
from tests.api_support import ApiHarness
from tests.integration.api.spend_support import person, run, spent, task, worker


def _send(api: ApiHarness, request_id: str, **body: Any) -> Any:
    return api.post("/internal/workers/w-1/messages", {"request_id": request_id, **body})


def test_a_command_carries_the_budget_left_and_is_answered_like_a_prompt(api: ApiHarness) -> None:
    # given a task with a $1 budget whose developer round on w-1 spent $0.40
    alice = person(api)
    job = task(alice)
    assert alice.api.put("/budgets", {"project": "blog", "usd": 1, "per": "task"}).status == 200
    worker(api, "w-1", job["id"])
    run(api, "w-1", spent(0.4))

    # when the tests go to the same worker as a command, twice (a redelivered send)
    sent = _send(api, "t:tester:1:message", kind="command", body="make test", timeout_s=900)
    again = _send(api, "t:tester:1:message", kind="command", body="make test", timeout_s=900)

    # then one message, with what is left to spend
    assert sent.status == 201, sent
    assert again.body["id"] == sent.body["id"], "the same request id is one message"
    assert (sent.body["kind"], sent.body["body"], sent.body["budget_usd"]) == ("command", "make test", 0.6)
    taken = api.post("/internal/workers/w-1/messages/next")
    assert taken.body["id"] == sent.body["id"]
    result = {"status": "failed", "agent": "command", "output_tail": "1 failed", "cost_usd": 0.0}
    done = api.post(
        f"/internal/worker-messages/{sent.body['id']}/result", {"success": False, "result": result}
    )
    assert done.status == 200, done
    received = api.deps.queue.receive("worker:responses", 10, visibility_timeout=30)
    replies = [parse_message("worker:responses", m.body) for m in received]
    tests = [r for r in replies if getattr(r, "request_id", None) == "t:tester:1:message"]
    assert len(tests) == 1 and isinstance(tests[0], SendMessageResponse)
    assert tests[0].result is not None and tests[0].result["output_tail"] == "1 failed"


def test_one_worker_for_both_rounds_is_one_time_row_in_the_ledger(api: ApiHarness) -> None:
    # given one worker that ran the developer's prompt and the tests' command
    alice = person(api)
    job = task(alice)
    worker(api, "w-1", job["id"])
    run(api, "w-1", spent(0.2))
    sent = _send(api, "t:tester:1:message", kind="command", body="make test")
    api.post("/internal/workers/w-1/messages/next")
    api.post(f"/internal/worker-messages/{sent.body['id']}/result", {"success": True, "result": spent(0.0)})

    # when it stops (and the report comes again)
    api.post("/internal/workers/w-1/stopped", {"status": "STOPPED", "reason": "deleted"})
    api.post("/internal/workers/w-1/stopped", {"status": "STOPPED", "reason": "late report"})

    # then its running time is one row, beside the two runs
    with api.deps.db.session() as session:
        keys = sorted(session.execute(select(UsageEntry.key).where(UsageEntry.kind == "worker")).scalars())
    assert keys == ["worker:w-1"]


def test_an_unknown_kind_is_a_422_naming_the_field(api: ApiHarness) -> None:
    alice = person(api)
    worker(api, "w-1", task(alice)["id"])
    refused = _send(api, "r-x", kind="shell", body="rm -rf /")
    assert refused.status == 422, refused
    assert "kind" in str(refused.body)
