"""The cost ledger: agent runs and worker time written by the API, summed exactly, counted once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from functions.api.models import UsageEntry, Worker
from functions.api.services import usage
from shared.contracts.spend import to_micros, to_usd
from tests.api_support import ApiHarness
from tests.integration.api.spend_support import Person, person, run, spent, task, worker


def _entries(api: ApiHarness) -> list[UsageEntry]:
    with api.deps.db.session() as session:
        rows = list(session.execute(select(UsageEntry).order_by(UsageEntry.id)).scalars())
        session.expunge_all()
        return rows


def _alice_with_worker(api: ApiHarness) -> tuple[Person, dict[str, Any]]:
    alice = person(api)
    job = task(alice)
    worker(api, "w-1", job["id"])
    return alice, job


def test_runs_sum_to_the_cent_per_task_project_person_and_month(api: ApiHarness) -> None:
    # given three agent runs of one task, and one run of another project's task
    alice, job = _alice_with_worker(api)
    for cost in (0.37, 0.25, 0.0123):
        run(api, "w-1", spent(cost))
    other = task(alice, "shop")
    worker(api, "w-2", other["id"])
    run(api, "w-2", spent(1.1, tokens=10))

    # when alice asks
    mine = alice.api.get("/usage")

    # then every sum is exact
    assert mine.status == 200, mine
    total = mine.body["total"]
    assert total["cost_usd"] == 1.7323 and total["agent_cost_usd"] == 1.7323
    assert total["worker_cost_usd"] == 0 and total["runs"] == 4
    assert (total["input_tokens"], total["output_tokens"], total["cache_tokens"]) == (310, 155, 930)
    assert [(g["key"], g["label"], g["cost_usd"]) for g in mine.body["by_task"]] == [
        (other["id"], "engineering", 1.1),
        (job["id"], "engineering", 0.6323),
    ]
    assert [(g["label"], g["cost_usd"], g["runs"]) for g in mine.body["by_project"]] == [
        ("shop", 1.1, 1),
        ("blog", 0.6323, 3),
    ]
    month = datetime.now(UTC).strftime("%Y-%m")
    assert [(g["key"], g["cost_usd"]) for g in mine.body["by_month"]] == [(month, 1.7323)]
    assert alice.api.get(f"/tasks/{job['id']}").body["cost_usd"] == 0.6323
    blog = alice.api.get("/usage", project="blog").body
    assert blog["total"]["cost_usd"] == 0.6323 and blog["project_id"] == job["project_id"]
    assert {e.model for e in _entries(api)} == {"sonnet"}
    # and the task's stored result says what it cost when it ended, from the ledger (not the writer's word)
    assert api.post(f"/internal/tasks/{job['id']}/claim", {"worker": "graph"}).status == 200
    done = api.post(
        f"/internal/tasks/{job['id']}/complete", {"result": {"status": "success", "cost_usd": 99}}
    )
    assert done.status == 200 and done.body["result"]["cost_usd"] == 0.6323, done


def test_a_repeated_result_is_409_and_counts_once(api: ApiHarness) -> None:
    _, job = _alice_with_worker(api)
    message_id = run(api, "w-1", spent(0.5))

    again = api.post(
        f"/internal/worker-messages/{message_id}/result", {"success": True, "result": spent(0.5)}
    )

    assert again.status == 409
    assert [(e.key, e.cost_micros) for e in _entries(api)] == [(f"message:{message_id}", 500_000)]
    assert api.get(f"/tasks/{job['id']}").body["cost_usd"] == 0.5


def test_a_raced_report_is_refused_by_the_unique_key(api: ApiHarness) -> None:
    """Two writers that both got past the compare-and-set (a redelivery racing): one row."""
    _, job = _alice_with_worker(api)
    payer = usage.Payer(None, job["project_id"], job["id"])
    with api.deps.db.session() as session:
        first = usage.record_agent_run(session, 7, "w-1", payer, spent(0.25), None)
        second = usage.record_agent_run(session, 7, "w-1", payer, spent(0.25), None)
        assert first is not None and second is None
        assert usage.task_cost_usd(session, job["id"]) == 0.25
    with api.deps.db.session() as session:
        third = usage.record_agent_run(session, 7, "w-1", payer, spent(0.25), None)
        assert third is None and usage.task_cost_usd(session, job["id"]) == 0.25


@pytest.mark.parametrize(
    ("result", "counted"),
    [
        ({"cost_usd": "0.37", "input_tokens": -5, "output_tokens": True, "model": 5}, None),
        ({"cost_usd": -1, "cache_tokens": "many", "input_tokens": [1]}, None),
        ({"cost_usd": 2_000_000, "output_tokens": {"n": 1}}, None),
        ({"status": "success"}, None),
        (None, None),
        ({"cost_usd": None, "input_tokens": 10, "agent": ["x"]}, (0, 10, "claude_code")),
        (
            {"cost_usd": 0.2, "input_tokens": 1e30, "duration_ms": "soon", "agent": "codex"},
            (200_000, None, "codex"),
        ),
    ],
)
def test_garbage_in_a_report_is_not_counted_and_never_a_500(
    api: ApiHarness, result: dict[str, Any] | None, counted: tuple[int, int | None, str] | None
) -> None:
    _alice_with_worker(api)
    run(api, "w-1", result)
    entries = _entries(api)
    if counted is None:
        assert entries == []
    else:
        [entry] = entries
        assert (entry.cost_micros, entry.input_tokens, entry.agent) == counted
        assert entry.duration_ms is None, "a duration that is not a number is dropped, the rest kept"


def test_a_failed_run_still_counts_what_it_spent(api: ApiHarness) -> None:
    """The wrapper stopped the agent at the budget: success=false, and the cost so far is recorded."""
    _, job = _alice_with_worker(api)
    run(api, "w-1", {**spent(1.25), "status": "budget"}, success=False)
    assert api.get(f"/tasks/{job['id']}").body["cost_usd"] == 1.25


def test_worker_time_is_priced_from_the_settings_once(api: ApiHarness) -> None:
    # given prices and a worker size of our own, and a worker that started an hour ago
    settings = api.deps.settings
    settings.worker_vcpu, settings.worker_memory_gb = 2.0, 4.0
    settings.price_vcpu_hour_usd, settings.price_gb_hour_usd = 0.05, 0.005
    alice, job = _alice_with_worker(api)
    with api.deps.db.session() as session:
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        session.execute(update(Worker).where(Worker.id == "w-1").values(started_at=hour_ago))
    run(api, "w-1", spent(0.1))

    # when it stops (and the report comes again)
    stopped = api.post("/internal/workers/w-1/stopped", {"status": "STOPPED", "reason": "done"})
    api.post("/internal/workers/w-1/stopped", {"status": "STOPPED", "reason": "late report"})

    # then its time is in the ledger once, at those prices: ~1 h x (2 x $0.05 + 4 x $0.005) = ~$0.12
    seconds = (
        datetime.fromisoformat(stopped.body["stopped_at"])
        - datetime.fromisoformat(stopped.body["started_at"])
    ).total_seconds()
    expected = to_usd(to_micros(seconds * 2 / 3600 * 0.05 + seconds * 4 / 3600 * 0.005))
    [time_entry] = [e for e in _entries(api) if e.kind == "worker"]
    assert time_entry.key == "worker:w-1" and time_entry.vcpu_s == pytest.approx(seconds * 2)
    assert time_entry.gb_s == pytest.approx(seconds * 4)
    total = alice.api.get("/usage").body["total"]
    assert total["worker_cost_usd"] == expected and 0.12 <= expected < 0.121
    assert total["cost_usd"] == to_usd(100_000 + to_micros(expected))
    assert total["worker_seconds"] == pytest.approx(seconds, abs=0.01)
    assert alice.api.get(f"/tasks/{job['id']}").body["cost_usd"] == total["cost_usd"]


def test_a_worker_ended_by_a_status_update_counts_its_time_too(api: ApiHarness) -> None:
    _alice_with_worker(api)
    assert api.patch("/internal/workers/w-1", {"status": "FAILED"}).status == 200
    assert api.patch("/internal/workers/w-1", {"status": "FAILED", "exit_reason": "again"}).status == 200
    assert [e.key for e in _entries(api)] == ["worker:w-1"]


def test_a_product_owner_conversation_counts_against_its_person(api: ApiHarness) -> None:
    alice = person(api)
    worker(api, "po-1", None, {"context": {"role": "product_owner", "user_id": alice.id}})
    run(api, "po-1", spent(0.03))
    mine = alice.api.get("/usage").body
    assert mine["total"]["cost_usd"] == 0.03
    assert [(g["key"], g["cost_usd"]) for g in mine["by_project"]] == [("none", 0.03)]
    assert mine["by_task"] == []


def test_since_and_months_are_calendar_days_in_utc(api: ApiHarness) -> None:
    alice, _ = _alice_with_worker(api)
    for cost in (0.5, 0.25, 0.125):
        run(api, "w-1", spent(cost))
    with api.deps.db.session() as session:
        ids = list(session.execute(select(UsageEntry.id).order_by(UsageEntry.id)).scalars())
        for entry_id, when in zip(
            ids,
            (datetime(2026, 1, 31, 23, 59, tzinfo=UTC), datetime(2026, 2, 1, 0, 0, tzinfo=UTC)),
            strict=False,
        ):
            session.execute(update(UsageEntry).where(UsageEntry.id == entry_id).values(created_at=when))

    every = alice.api.get("/usage").body
    assert [(g["key"], g["cost_usd"]) for g in every["by_month"]][:2] == [("2026-01", 0.5), ("2026-02", 0.25)]
    assert every["total"]["cost_usd"] == 0.875
    since = alice.api.get("/usage", since="2026-02-01").body
    assert since["total"]["cost_usd"] == 0.375 and since["since"] == "2026-02-01"
    with api.deps.db.session() as session:
        assert session.execute(select(func.count()).select_from(UsageEntry)).scalar_one() == 3


def test_usage_refuses_what_is_not_yours_and_names_bad_input(api: ApiHarness) -> None:
    alice, _ = _alice_with_worker(api)
    run(api, "w-1", spent(0.4))
    bob = person(api, "bob")

    not_his = bob.api.get("/usage", project="blog")
    assert not_his.status == 404 and "blog" in not_his.body["message"]
    assert bob.api.get("/usage", user=alice.id).status == 403
    assert bob.api.get("/usage").body["total"]["cost_usd"] == 0
    for bad in ("yesterday", "2026-02-30", "2026-1-1"):
        reply = alice.api.get("/usage", since=bad)
        assert reply.status == 422 and reply.body["fields"] == ["since"], (bad, reply)
    admin_view = api.get("/usage", user=alice.id)
    assert admin_view.status == 200 and admin_view.body["total"]["cost_usd"] == 0.4
    assert api.get("/usage", project="blog").body["total"]["cost_usd"] == 0.4


def test_the_client_reads_usage(api: ApiHarness) -> None:
    alice, _ = _alice_with_worker(api)
    run(api, "w-1", spent(0.37))
    run(api, "w-1", spent(0.25))
    with alice.client() as client:
        found = client.usage(project="blog", since="2020-01-01")
    assert found.total.cost_usd == 0.62 and found.total.runs == 2
    assert {(b.scope, b.period) for b in found.budgets} == {("user", "task"), ("user", "month")}


def test_spend_is_counted_as_a_metric_once_per_entry_after_commit(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[tuple[str, float]] = []
    monkeypatch.setattr(usage, "count", lambda name, value=1.0: counted.append((name, value)))
    _, job = _alice_with_worker(api)
    message_id = run(api, "w-1", spent(0.37))
    api.post(f"/internal/worker-messages/{message_id}/result", {"success": True, "result": spent(0.37)})
    assert counted == [("SpendUsd", 0.37)], "the repeated result (409) counts nothing"

    payer = usage.Payer(None, job["project_id"], job["id"])
    with pytest.raises(RuntimeError), api.deps.db.session() as session:
        usage.record_agent_run(session, 99, "w-1", payer, spent(5.0), None)
        raise RuntimeError("the request failed after writing: rolled back")
    assert counted == [("SpendUsd", 0.37)], "nothing rolled back is counted"
    assert api.get(f"/tasks/{job['id']}").body["cost_usd"] == 0.37
