"""Gates through the real API handler, on SQLite and PostgreSQL: a graph parks its task (idempotently),
the owner or an admin answers once (approve, reject, resume), each answer wakes the graph with exactly
one outbox message under the id it waits for, nobody else can answer, a gate nobody answers expires into
a clear FAILED, and the approval policy decides when a graph must stop at all."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from functions.api.models import Gate, OutboxMessage, Task, UsageEntry, utcnow
from shared.work_signal import WorkKind
from tests.api_support import ApiHarness

# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def alice(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("alice")
    return api.as_key(key)


@pytest.fixture
def service(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("graphs", scopes=["service"])
    return api.as_key(key)


def _running_task(owner: ApiHarness, service: ApiHarness, project: str = "blog") -> str:
    """An engineering task of `owner`'s, claimed by its graph (RUNNING)."""
    if owner.get(f"/projects/{project}").status == 404:
        assert owner.post("/projects", {"name": project}).status == 201
    started = owner.post(f"/projects/{project}/engineering", {"spec": "a blog with comments"})
    assert started.status == 202, started
    task_id: str = started.body["id"]
    claimed = service.post(f"/internal/tasks/{task_id}/claim", {"worker": "graph"})
    assert claimed.status == 200, claimed
    return task_id


def _park(service: ApiHarness, task_id: str, kind: str = "plan", round_: int = 0, summary: str = "") -> Any:
    body = {"kind": kind, "round": round_, "summary": summary or f"the {kind}\nin detail"}
    return service.post(f"/internal/tasks/{task_id}/gates", body)


def _wakes(api: ApiHarness, task_id: str) -> list[str]:
    """The request ids of the task's engineering:queue messages after its first one (the wake-ups)."""
    with api.deps.db.session() as session:
        rows = session.execute(
            select(OutboxMessage.body)
            .where(OutboxMessage.task_id == task_id, OutboxMessage.queue == "engineering:queue")
            .order_by(OutboxMessage.id)
        ).scalars()
        bodies = [json.loads(b) if isinstance(b, str) else b for b in rows]
    return [b.get("request_id") for b in bodies[1:]]


def _status(api: ApiHarness, task_id: str) -> str:
    return str(api.get(f"/tasks/{task_id}").body["status"])


# -- parking ------------------------------------------------------------------------------------


def test_a_graph_parks_its_task_once_however_often_it_asks(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    task_id = _running_task(alice, service)

    first = _park(service, task_id, "plan", summary="Plan: a blog\n- posts\n- comments")
    assert first.status == 201, first
    gate = first.body
    assert (gate["kind"], gate["round"], gate["status"]) == ("plan", 0, "pending")
    assert gate["expires_at"] is not None and gate["answered_at"] is None
    assert _status(api, task_id) == "WAITING_APPROVAL"
    shown = alice.get(f"/tasks/{task_id}").body["gate"]
    assert (shown["id"], shown["summary"]) == (gate["id"], "Plan: a blog\n- posts\n- comments"), shown
    assert WorkKind.GATES in api.deps.work_signal.marks(), "gate_expiry has something to look at"

    # a redelivered request: the same gate, 200, and no second transition or event
    again = _park(service, task_id, "plan", summary="something else")
    assert again.status == 200 and again.body["id"] == gate["id"] and again.body["summary"].startswith("Plan")
    events = [e["message"] for e in alice.get(f"/tasks/{task_id}/events").body]
    assert [m for m in events if m.startswith("waiting for")] == [
        "waiting for your approval of the plan: Plan: a blog"
    ]
    assert service.get(f"/internal/tasks/{task_id}/gates/plan/0").body["id"] == gate["id"]
    assert [g["id"] for g in alice.get(f"/tasks/{task_id}/gates").body] == [gate["id"]]


def test_a_gate_is_refused_for_a_task_that_is_not_running(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    queued = alice.post("/projects", {"name": "shop"}).status == 201 and alice.post(
        "/projects/shop/engineering", {"spec": "x"}
    )
    assert queued and queued.status == 202
    refused = _park(service, queued.body["id"], "deploy")
    assert refused.status == 409 and "QUEUED" in refused.body["message"], refused
    assert service.get(f"/internal/tasks/{queued.body['id']}/gates/deploy/0").status == 404


def test_bad_gate_input_is_a_4xx(api: ApiHarness, alice: ApiHarness, service: ApiHarness) -> None:
    task_id = _running_task(alice, service)
    assert _park(service, task_id, "coffee").status == 422
    assert _park(service, task_id, "plan", round_=1001).status == 422
    assert service.post(f"/internal/tasks/{task_id}/gates", {"kind": "plan", "summary": ""}).status == 422
    assert service.get(f"/internal/tasks/{task_id}/gates/coffee/0").status == 422
    assert service.get(f"/internal/tasks/{task_id}/gates/plan/-1").status == 422
    assert service.get(f"/internal/tasks/{task_id}/gate-needed", kind="review").status == 422
    assert _park(service, "not-a-task", "plan").status == 404
    assert alice.post(f"/tasks/{task_id}/resume", {"guidance": ""}).status == 422
    assert alice.post(f"/tasks/{task_id}/approve", {"comment": "x" * 4001}).status == 422
    # a person's key cannot park or expire anything
    assert _park(alice, task_id, "plan").status == 403
    assert alice.post("/internal/gates/expire").status == 403


# -- answering ----------------------------------------------------------------------------------


def test_approve_resumes_the_task_and_wakes_its_graph_once(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    task_id = _running_task(alice, service)
    assert _park(service, task_id, "plan").status == 201

    approved = alice.post(f"/tasks/{task_id}/approve", {"comment": "go ahead"})
    assert approved.status == 200, approved
    assert approved.body["status"] == "RUNNING"
    assert _wakes(api, task_id) == [f"{task_id}:gate:plan:0"]
    gate = service.get(f"/internal/tasks/{task_id}/gates/plan/0").body
    assert (gate["status"], gate["comment"]) == ("approved", "go ahead")
    assert gate["answered_by"] is not None and gate["answered_at"] is not None

    # a second answer: 409 saying what the task is doing, and no second wake-up
    second = alice.post(f"/tasks/{task_id}/approve", {})
    assert second.status == 409
    assert f"task {task_id} is RUNNING" in second.body["message"]
    assert "was approved by alice" in second.body["message"]
    assert alice.post(f"/tasks/{task_id}/reject", {}).status == 409
    assert _wakes(api, task_id) == [f"{task_id}:gate:plan:0"]


def test_reject_fails_the_task_with_reason_rejected(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    task_id = _running_task(alice, service)
    assert _park(service, task_id, "deploy").status == 201

    rejected = alice.post(f"/tasks/{task_id}/reject", {"comment": "not on Friday"})
    assert rejected.status == 200, rejected
    task = rejected.body
    assert (task["status"], task["failure_reason"]) == ("FAILED", "rejected")
    assert task["error"] == "the deploy was rejected by alice: not on Friday"
    assert _wakes(api, task_id) == [f"{task_id}:gate:deploy:0"]
    assert service.get(f"/internal/tasks/{task_id}/gates/deploy/0").body["status"] == "rejected"
    assert alice.post(f"/tasks/{task_id}/approve", {}).status == 409


def test_only_the_owner_or_an_admin_answers(api: ApiHarness, alice: ApiHarness, service: ApiHarness) -> None:
    task_id = _running_task(alice, service)
    assert _park(service, task_id, "plan").status == 201
    _, bob_key = api.new_user("bob")
    bob = api.as_key(bob_key)

    for path in ("approve", "reject"):
        assert bob.post(f"/tasks/{task_id}/{path}", {}).status == 404
    assert bob.get(f"/tasks/{task_id}/gates").status == 404
    assert _status(api, task_id) == "WAITING_APPROVAL"

    _, carol_key = api.new_user("carol", is_admin=True)
    approved = api.as_key(carol_key).post(f"/tasks/{task_id}/approve", {})
    assert approved.status == 200 and approved.body["status"] == "RUNNING"
    assert "approved by carol" in alice.get(f"/tasks/{task_id}/events").body[-1]["message"]


def test_a_service_key_answers_on_behalf_of_the_person_and_only_for_their_tasks(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    """The Telegram bot answers with its service key for the person who pressed: the API checks the task
    is theirs and records them; nobody else may speak for someone."""
    task_id = _running_task(alice, service)
    assert _park(service, task_id, "plan").status == 201
    alice_id = alice.get("/me").body["id"]
    bob, bob_key = api.new_user("bob")
    bob_id = bob["id"]

    for_bob = service.post(f"/tasks/{task_id}/approve", {"on_behalf_of": bob_id})
    assert for_bob.status == 404, for_bob
    nobody = service.post(f"/tasks/{task_id}/approve", {"on_behalf_of": "no-such-user"})
    assert nobody.status == 422 and "on_behalf_of" in nobody.body["fields"], nobody
    posing = api.as_key(bob_key).post(f"/tasks/{task_id}/approve", {"on_behalf_of": alice_id})
    assert posing.status == 403, posing
    assert _status(api, task_id) == "WAITING_APPROVAL"

    approved = service.post(f"/tasks/{task_id}/approve", {"on_behalf_of": alice_id})
    assert approved.status == 200 and approved.body["status"] == "RUNNING", approved
    gate = service.get(f"/internal/tasks/{task_id}/gates/plan/0").body
    assert gate["answered_by"] == alice_id
    assert "approved by alice" in alice.get(f"/tasks/{task_id}/events").body[-1]["message"]


def test_resume_ends_a_human_review_with_the_persons_guidance(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    task_id = _running_task(alice, service)
    assert _park(service, task_id, "review", round_=3, summary="FAILED test_login: 500").status == 201
    assert _status(api, task_id) == "WAITING_HUMAN_REVIEW"

    not_an_approval = alice.post(f"/tasks/{task_id}/approve", {})
    assert not_an_approval.status == 409 and "task resume" in not_an_approval.body["message"]

    resumed = alice.post(f"/tasks/{task_id}/resume", {"guidance": "use bcrypt, not md5"})
    assert resumed.status == 200 and resumed.body["status"] == "RUNNING", resumed
    gate = service.get(f"/internal/tasks/{task_id}/gates/review/3").body
    assert (gate["status"], gate["comment"]) == ("resumed", "use bcrypt, not md5")
    assert _wakes(api, task_id) == [f"{task_id}:gate:review:3"]
    assert alice.post(f"/tasks/{task_id}/resume", {"guidance": "again"}).status == 409


def test_cancel_closes_the_pending_gate(api: ApiHarness, alice: ApiHarness, service: ApiHarness) -> None:
    task_id = _running_task(alice, service)
    assert _park(service, task_id, "plan").status == 201
    assert alice.post(f"/tasks/{task_id}/cancel").body["status"] == "CANCELLED"
    assert service.get(f"/internal/tasks/{task_id}/gates/plan/0").body["status"] == "cancelled"
    assert alice.post(f"/tasks/{task_id}/approve", {}).status == 409


def test_a_retried_task_is_asked_again(api: ApiHarness, alice: ApiHarness, service: ApiHarness) -> None:
    task_id = _running_task(alice, service)
    first = _park(service, task_id, "plan").body
    assert alice.post(f"/tasks/{task_id}/reject", {}).status == 200
    assert alice.post(f"/tasks/{task_id}/retry").status == 202
    assert service.post(f"/internal/tasks/{task_id}/claim", {"worker": "graph"}).status == 200

    again = _park(service, task_id, "plan", summary="the plan, attempt 2")
    assert again.status == 201, again
    assert (again.body["id"], again.body["status"], again.body["answered_by"]) == (
        first["id"],
        "pending",
        None,
    )
    assert _status(api, task_id) == "WAITING_APPROVAL"
    assert alice.post(f"/tasks/{task_id}/approve", {}).body["status"] == "RUNNING"


# -- expiry -------------------------------------------------------------------------------------


def _age_gates(api: ApiHarness, task_id: str) -> None:
    with api.deps.db.session() as session:
        session.execute(
            update(Gate).where(Gate.task_id == task_id).values(expires_at=utcnow() - timedelta(seconds=1))
        )


def test_an_unanswered_gate_expires_into_a_clear_failure(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    approval = _running_task(alice, service)
    review = _running_task(alice, service)
    waiting = _running_task(alice, service)
    for task_id, kind in ((approval, "deploy"), (review, "review"), (waiting, "plan")):
        assert _park(service, task_id, kind).status == 201
    _age_gates(api, approval)
    _age_gates(api, review)

    counts = service.post("/internal/gates/expire")
    assert counts.status == 200 and counts.body == {"expired": 2, "pending": 1}, counts

    failed = api.get(f"/tasks/{approval}").body
    assert (failed["status"], failed["failure_reason"]) == ("FAILED", "approval_timeout")
    assert failed["error"].startswith("nobody answered the deploy approval in ")
    assert api.get(f"/tasks/{review}").body["failure_reason"] == "review_timeout"
    assert _wakes(api, approval) == [f"{approval}:gate:deploy:0"]
    assert _status(api, waiting) == "WAITING_APPROVAL"
    assert alice.post(f"/tasks/{approval}/approve", {}).status == 409
    assert service.post("/internal/gates/expire").body == {"expired": 0, "pending": 1}


# -- the policy ---------------------------------------------------------------------------------


def _need(service: ApiHarness, task_id: str, kind: str, server: str | None = None) -> dict[str, Any]:
    reply = service.get(f"/internal/tasks/{task_id}/gate-needed", kind=kind, server=server)
    assert reply.status == 200, reply
    # with the task's status as it was read: a graph asks both before its plan in one request
    assert reply.body["task_status"] == service.get(f"/tasks/{task_id}").body["status"]
    return reply.body  # type: ignore[no-any-return]


def _cost(api: ApiHarness, task_id: str, micros: int) -> None:
    """What the ledger (LEDGER's) would hold for a finished task, and the task COMPLETED."""
    with api.deps.db.session() as session:
        task = session.get(Task, task_id)
        assert task is not None
        session.add(
            UsageEntry(
                key=f"message:{task_id}", user_id=task.user_id, project_id=task.project_id, task_id=task_id,
                kind="agent", cost_micros=micros, created_at=utcnow(),
            )
        )  # fmt: skip
        task.status, task.finished_at = "COMPLETED", utcnow()


def test_the_approval_policy_decides_when_a_graph_stops(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    task_id = _running_task(alice, service)
    assert (
        api.post("/servers", {"handle": "local", "host": "127.0.0.1", "labels": {"builtin": "true"}}).status
        == 201
    )
    assert api.post("/servers", {"handle": "box", "host": "10.0.0.9"}).status == 201

    # the default ("deploy"): deploys to a non-builtin server wait, the built-in one never does
    assert _need(service, task_id, "deploy", "box")["required"] is True
    builtin = _need(service, task_id, "deploy", "local")
    assert builtin["required"] is False and "built-in" in builtin["reason"]
    plan = _need(service, task_id, "plan")
    assert (plan["required"], plan["estimate_usd"]) == (False, None)

    # "plan,deploy" is stored in one order; "plan" asks for the plan too
    patched = alice.patch("/projects/blog", {"approval": "plan,deploy"})
    assert patched.status == 200 and patched.body["approval"] == "deploy,plan"
    assert _need(service, task_id, "plan")["required"] is True
    assert _need(service, task_id, "deploy", "local")["required"] is False

    # "none": nothing waits
    assert alice.patch("/projects/blog", {"approval": "none"}).body["approval"] == "none"
    assert _need(service, task_id, "deploy", "box")["required"] is False
    assert _need(service, task_id, "plan")["required"] is False

    # "default" (or null) goes back to the default
    assert alice.patch("/projects/blog", {"approval": "default"}).body["approval"] is None
    assert _need(service, task_id, "deploy", "box")["required"] is True
    assert alice.patch("/projects/blog", {"approval": "plan"}).body["approval"] == "plan"
    assert _need(service, task_id, "deploy", "box")["required"] is False
    assert alice.patch("/projects/blog", {"approval": None}).body["approval"] is None
    assert alice.patch("/projects/blog", {"approval": "sometimes"}).status == 422

    # an unknown server is a 404 naming it, a deploy needs one
    missing = service.get(f"/internal/tasks/{task_id}/gate-needed", kind="deploy", server="nowhere")
    assert missing.status == 404 and missing.body["fields"] == ["server"]
    assert service.get(f"/internal/tasks/{task_id}/gate-needed", kind="deploy").status == 422


def test_a_plan_waits_when_its_estimate_is_above_the_threshold(
    api: ApiHarness, alice: ApiHarness, service: ApiHarness
) -> None:
    # given the project's last completed engineering tasks cost $1, $2 and $4.50 (and one cost nothing)
    for micros in (1_000_000, 2_000_000, 4_500_000, 0):
        _cost(api, _running_task(alice, service), micros)
    task_id = _running_task(alice, service)

    # the estimate is their average, $2.50: above the default threshold ($2)
    need = _need(service, task_id, "plan")
    assert (need["required"], need["estimate_usd"]) == (True, 2.5), need
    assert "$2.50" in need["reason"]
    # only the last five count: two cheap ones push the average under it
    for micros in (100_000, 100_000):
        _cost(api, _running_task(alice, service), micros)
    need = _need(service, task_id, "plan")
    assert (need["required"], need["estimate_usd"]) == (False, 1.54), need
    # and "none" means nothing waits, whatever the estimate
    for micros in (9_000_000,) * 5:
        _cost(api, _running_task(alice, service), micros)
    assert _need(service, task_id, "plan")["required"] is True
    alice.patch("/projects/blog", {"approval": "none"})
    assert _need(service, task_id, "plan")["required"] is False
