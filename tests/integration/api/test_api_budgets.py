"""Budgets: who may set which, what applies to a task, the tightest one named, retries never reset it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.api_client import AuthError, NotFoundError
from shared.contracts.spend import BudgetSet
from tests.api_support import ApiHarness
from tests.integration.api.spend_support import client, person, run, spent, task, worker


def _check(api: ApiHarness, task_id: str) -> dict[str, Any]:
    reply = api.get(f"/internal/tasks/{task_id}/budget")
    assert reply.status == 200, reply
    return reply.body  # type: ignore[no-any-return]


def _set(who: ApiHarness, **body: Any) -> Any:
    return who.put("/budgets", body)


def test_the_tightest_budget_binds_and_is_named(api: ApiHarness) -> None:
    # given alice's task that spent $0.60, the defaults ($10 a task, $100 a month for her)
    alice = person(api)
    job = task(alice)
    worker(api, "w-1", job["id"])
    run(api, "w-1", spent(0.6))
    first = _check(api, job["id"])
    assert first["binding"]["period"] == "task" and first["binding"]["source"] == "default"
    assert first["remaining_usd"] == 9.4 and first["note"] == "the task budget $10.00 (spent $0.60)"
    assert first["task_spent_usd"] == 0.6 and not first["exhausted"]

    # when the project gets a $5 month, then a $0.50 task budget
    assert _set(alice.api, project="blog", usd=5, per="month").status == 200
    month = _check(api, job["id"])
    assert month["remaining_usd"] == 4.4 and month["binding"]["scope"] == "project"
    assert month["note"] == "the monthly budget of project blog $5.00 (spent $0.60)"
    assert _set(alice.api, project="blog", usd=0.5, per="task").status == 200
    spent_out = _check(api, job["id"])

    # then the task budget binds, and it is spent
    assert spent_out["exhausted"] and spent_out["remaining_usd"] == -0.1
    assert spent_out["note"] == "the task budget of project blog $0.50 (spent $0.60)"

    # and a person's month set by an admin binds when it is the tightest
    assert _set(api, user=alice.id, usd=0.55, per="month").status == 200
    assert _set(alice.api, project="blog", usd=3, per="task").status == 200
    person_month = _check(api, job["id"])
    assert person_month["note"] == "the monthly budget of alice $0.55 (spent $0.60)"
    assert person_month["binding"] == {
        "scope": "user",
        "scope_id": alice.id,
        "period": "month",
        "usd": 0.55,
        "source": "set",
        "spent_usd": 0.6,
        "remaining_usd": -0.05,
    }


def test_a_project_budget_cannot_lift_the_persons(api: ApiHarness) -> None:
    alice = person(api)
    job = task(alice)
    assert _set(api, user=alice.id, usd=2, per="task").status == 200
    assert _set(alice.api, project="blog", usd=50, per="task").status == 200
    check = _check(api, job["id"])
    assert check["remaining_usd"] == 2 and check["note"] == "the task budget of alice $2.00 (spent $0.00)"


def test_retries_and_new_workers_do_not_reset_a_task_budget(api: ApiHarness) -> None:
    # given a task that spent $0.70 of a $1 task budget, then failed
    alice = person(api)
    job = task(alice)
    _set(alice.api, project="blog", usd=1, per="task")
    worker(api, "w-1", job["id"])
    run(api, "w-1", spent(0.7))
    assert api.post(f"/internal/tasks/{job['id']}/claim", {"worker": "t"}).status == 200
    assert api.post(f"/internal/tasks/{job['id']}/fail", {"error": "boom"}).status == 200

    # when it is retried and a new worker spends more
    retried = alice.api.post(f"/tasks/{job['id']}/retry")
    assert retried.status == 202 and retried.body["attempt"] > job["attempt"]
    worker(api, "w-2", job["id"])
    sent = api.post("/internal/workers/w-2/messages", {"request_id": "again", "body": "go"})

    # then the new message may spend only what is left, and the check counts every attempt
    assert sent.body["budget_usd"] == 0.3
    assert sent.body["budget_note"] == "the task budget of project blog $1.00 (spent $0.70)"
    api.post("/internal/workers/w-2/messages/next")
    api.post(f"/internal/worker-messages/{sent.body['id']}/result", {"success": True, "result": spent(0.31)})
    check = _check(api, job["id"])
    assert check["exhausted"] and check["task_spent_usd"] == 1.01
    late = api.post("/internal/workers/w-2/messages", {"request_id": "late", "body": "go"})
    assert late.body["budget_usd"] == 0, "spent out: zero, so the wrapper does not start the agent"


def test_a_message_without_a_budget_and_a_product_owner_message(api: ApiHarness) -> None:
    api.deps.settings.budget_task_usd = None
    api.deps.settings.budget_user_month_usd = None
    alice = person(api)
    job = task(alice)
    worker(api, "w-1", job["id"])
    free = api.post("/internal/workers/w-1/messages", {"request_id": "m-1", "body": "go"}).body
    assert (free["budget_usd"], free["budget_note"]) == (None, None)
    assert _check(api, job["id"])["remaining_usd"] is None

    _set(api, user=alice.id, usd=4, per="month")
    worker(api, "po-1", None, {"context": {"role": "product_owner", "user_id": alice.id}})
    po = api.post("/internal/workers/po-1/messages", {"request_id": "po-m", "body": "hi"}).body
    assert po["budget_usd"] == 4 and po["budget_note"] == "the monthly budget of alice $4.00 (spent $0.00)"
    file = api.post(
        "/internal/workers/po-1/messages", {"request_id": "f", "kind": "file", "path": "a", "body": "x"}
    )
    assert file.body["budget_usd"] is None, "a file runs no agent"


def test_who_may_set_which_budget(api: ApiHarness) -> None:
    alice, bob = person(api), person(api, "bob")
    task(alice)

    mine = _set(alice.api, user=alice.id, usd=1000, per="month")
    assert mine.status == 403 and mine.body["fields"] == ["user"], "a person cannot lift their own limit"
    assert _set(bob.api, user=alice.id, usd=1, per="month").status == 403
    not_his = _set(bob.api, project="blog", usd=1, per="month")
    assert not_his.status == 404 and "blog" in not_his.body["message"]
    assert bob.api.call("DELETE", "/budgets", query={"project": "blog", "per": "month"}).status == 404
    assert bob.api.get("/budgets", project="blog").status == 404
    assert bob.api.get("/budgets", user=alice.id).status == 403
    assert _set(api, user="no-such-user", usd=1, per="month").status == 404

    admin_sets = _set(api, user=alice.id, usd=20, per="month")
    assert admin_sets.status == 200 and admin_sets.body == {
        "scope": "user",
        "scope_id": alice.id,
        "period": "month",
        "usd": 20,
        "source": "set",
    }
    assert _set(api, project="blog", usd=0, per="task").body["usd"] == 0, "an admin may set any project's"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"project": "blog", "user": "x", "usd": 1, "per": "task"}, ["project", "user"]),
        ({"usd": 1, "per": "task"}, ["project", "user"]),
        ({"project": "blog", "usd": -1, "per": "task"}, ["usd"]),
        ({"project": "blog", "usd": "lots", "per": "task"}, ["usd"]),
        ({"project": "blog", "usd": 1, "per": "week"}, ["per"]),
        ({"project": "blog", "usd": 1, "per": "task", "extra": 1}, ["extra"]),
    ],
)
def test_bad_budget_input_is_a_422_naming_the_field(
    api: ApiHarness, body: dict[str, Any], fields: list[str]
) -> None:
    alice = person(api)
    alice.api.new_project("blog")
    reply = _set(alice.api, **body)
    assert reply.status == 422 and reply.body["fields"] == fields, reply


def test_set_replace_show_and_clear(api: ApiHarness) -> None:
    alice = person(api)
    alice.api.new_project("blog")
    _set(alice.api, project="blog", usd=3, per="month")
    _set(alice.api, project="blog", usd=2.5, per="month")
    shown = alice.api.get("/budgets", project="blog").body
    assert [(b["scope"], b["period"], b["usd"], b["source"]) for b in shown] == [
        ("user", "task", 10, "default"),
        ("project", "month", 2.5, "set"),
        ("user", "month", 100, "default"),
    ]
    assert alice.api.get("/budgets").body == [
        {"scope": "user", "scope_id": alice.id, "period": "task", "usd": 10, "source": "default",
         "spent_usd": 0, "remaining_usd": 10},
        {"scope": "user", "scope_id": alice.id, "period": "month", "usd": 100, "source": "default",
         "spent_usd": 0, "remaining_usd": 100},
    ]  # fmt: skip

    cleared = alice.api.call("DELETE", "/budgets", query={"project": "blog", "per": "month"})
    assert cleared.status == 204
    assert alice.api.call("DELETE", "/budgets", query={"project": "blog", "per": "month"}).status == 204
    assert [b["scope"] for b in alice.api.get("/budgets", project="blog").body] == ["user", "user"]
    bad = alice.api.call("DELETE", "/budgets", query={"project": "blog", "per": "year"})
    assert bad.status == 422 and bad.body["fields"] == ["per"]
    assert alice.api.call("DELETE", "/budgets", query={"per": "task"}).status == 422


def test_a_worker_token_checks_its_own_task_only(api: ApiHarness) -> None:
    alice = person(api)
    job, other = task(alice), task(alice, "shop")
    worker(api, "w-1", job["id"])
    token = api.post("/internal/workers/w-1/token", {}).body["token"]
    mine = api.as_key(token).get(f"/internal/tasks/{job['id']}/budget")
    assert mine.status == 200 and mine.body["task_id"] == job["id"]
    assert api.as_key(token).get(f"/internal/tasks/{other['id']}/budget").status == 403
    assert alice.api.get(f"/internal/tasks/{job['id']}/budget").status == 403, "people use GET /budgets"
    assert api.get("/internal/tasks/00000000-0000-0000-0000-000000000000/budget").status == 404


def test_the_client_sets_shows_clears_and_checks(api: ApiHarness) -> None:
    alice = person(api)
    job = task(alice)
    with alice.client() as mine:
        made = mine.set_budget(BudgetSet(project="blog", usd=1.25, per="task"))
        assert (made.scope, made.usd, made.source) == ("project", 1.25, "set")
        assert [b.usd for b in mine.budgets(project="blog") if b.scope == "project"] == [1.25]
        with pytest.raises(AuthError):
            mine.set_budget(BudgetSet(user=alice.id, usd=1, per="task"))
        with pytest.raises(NotFoundError):
            mine.budgets(project="nope")
        mine.clear_budget("task", project="blog")
        assert [b.scope for b in mine.budgets(project="blog")] == ["user", "user"]
    with client(api.key) as service:
        check = service.task_budget(job["id"])
    assert check.remaining_usd == 10 and check.binding is not None and check.binding.source == "default"
    assert check.task_status == "QUEUED", "the graph's check before a round reads the status from it"
