"""A person's news through the real handler, on SQLite and PostgreSQL: how their tasks ended since their
Product Owner last heard, and the marker that only moves forward."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from functions.api.models import Task, UsageEntry, utcnow
from tests.api_support import ApiHarness


@pytest.fixture
def service(api: ApiHarness) -> ApiHarness:
    _, key = api.new_user("po-consumer", scopes=["service"])
    return api.as_key(key)


@pytest.fixture
def alice(api: ApiHarness) -> tuple[str, ApiHarness]:
    user, key = api.new_user("alice", telegram_id=1001)
    person = api.as_key(key)
    reply = person.post("/projects", {"name": "blog", "description": "a blog", "modules": ["backend"]})
    assert reply.status == 201, reply
    return user["id"], person


def _engineering(person: ApiHarness, spec: str = "x") -> str:
    reply = person.post("/projects/blog/engineering", {"spec": spec})
    assert reply.status == 202, reply
    return str(reply.body["id"])


def _claimed(api: ApiHarness, task_id: str) -> str:
    assert api.post(f"/internal/tasks/{task_id}/claim", {"worker": "test"}).status == 200
    return task_id


def _complete(api: ApiHarness, task_id: str, result: dict[str, Any]) -> None:
    reply = api.post(f"/internal/tasks/{_claimed(api, task_id)}/complete", {"result": result})
    assert reply.status == 200, reply


def _fail(api: ApiHarness, task_id: str, error: str, reason: str | None = None) -> None:
    body = {"error": error, "reason": reason} if reason else {"error": error}
    reply = api.post(f"/internal/tasks/{_claimed(api, task_id)}/fail", body)
    assert reply.status == 200, reply


def _finished_at(api: ApiHarness, task_id: str, when: datetime) -> None:
    with api.deps.db.session() as session:
        session.execute(update(Task).where(Task.id == task_id).values(finished_at=when))


def test_news_lists_the_persons_ended_tasks_oldest_first_with_what_each_left(
    api: ApiHarness, service: ApiHarness, alice: tuple[str, ApiHarness]
) -> None:
    # given: one merged, one failed on its budget, one cancelled, one still running, and bob's task
    user_id, person = alice
    merged, failed, cancelled, running = (_engineering(person, f"spec {n}") for n in range(4))
    _complete(api, merged, {"status": "success", "merge_commit": "abc1234", "commit_sha": "abc1234"})
    _fail(api, failed, "budget: the task budget $1.00 (spent $1.02)\nTraceback ...", reason="budget")
    assert person.post(f"/tasks/{cancelled}/cancel").status == 200
    _claimed(api, running)
    _, bob_key = api.new_user("bob")
    bob = api.as_key(bob_key)
    assert bob.post("/projects", {"name": "shop", "description": "s", "modules": ["backend"]}).status == 201
    bobs = bob.post("/projects/shop/engineering", {"spec": "x"}).body["id"]
    _complete(api, bobs, {"status": "success"})
    now = utcnow()
    for offset, task_id in enumerate((merged, failed, cancelled)):
        _finished_at(api, task_id, now - timedelta(minutes=10 - offset))
    with api.deps.db.session() as session:
        session.add(
            UsageEntry(key="message:1", user_id=user_id, task_id=failed, kind="agent", cost_micros=1_020_000)
        )
        session.add(
            UsageEntry(key="worker:w1", user_id=user_id, task_id=failed, kind="worker", cost_micros=5)
        )

    # when
    reply = service.get(f"/internal/users/{user_id}/news")

    # then
    assert reply.status == 200, reply
    items = reply.body["items"]
    assert [i["task_id"] for i in items] == [merged, failed, cancelled], "oldest first, ended only, hers only"
    assert [i["status"] for i in items] == ["COMPLETED", "FAILED", "CANCELLED"]
    assert items[0]["merge_commit"] == "abc1234" and items[0]["project_name"] == "blog"
    assert items[0]["type"] == "engineering" and items[0]["cost_usd"] == 0
    assert items[1]["failure_reason"] == "budget"
    assert items[1]["error"] == "budget: the task budget $1.00 (spent $1.02)", "the first line only"
    assert items[1]["cost_usd"] == 1.020005, "agent runs and worker time, to the micro-dollar"
    assert reply.body["marker"] == items[-1]["finished_at"] and reply.body["more"] is False


def test_a_deploys_outcome_carries_its_url(
    api: ApiHarness, service: ApiHarness, alice: tuple[str, ApiHarness]
) -> None:
    user_id, person = alice
    assert person.post("/servers", {"handle": "local", "host": "127.0.0.1", "labels": {}}).status == 201
    deploy = person.post("/projects/blog/deploy", {"server": "local"})
    assert deploy.status == 202, deploy
    _complete(api, deploy.body["id"], {"status": "success", "deployed_url": "http://127.0.0.1:8000"})

    items = service.get(f"/internal/users/{user_id}/news").body["items"]

    assert [(i["type"], i["deployed_url"]) for i in items] == [("deploy", "http://127.0.0.1:8000")]


def test_seen_moves_the_marker_forward_only_and_later_outcomes_still_come(
    api: ApiHarness, service: ApiHarness, alice: tuple[str, ApiHarness]
) -> None:
    user_id, person = alice
    first = _engineering(person)
    _complete(api, first, {"status": "success"})
    news = service.get(f"/internal/users/{user_id}/news").body
    marker = news["marker"]

    seen = service.post(f"/internal/users/{user_id}/news/seen", {"until": marker})
    again = service.post(f"/internal/users/{user_id}/news/seen", {"until": marker})
    older = service.post(f"/internal/users/{user_id}/news/seen", {"until": news["since"]})

    assert seen.status == again.status == older.status == 200, (seen, again, older)
    assert seen.body["seen_at"] == again.body["seen_at"] == older.body["seen_at"] == marker, "never back"
    after = service.get(f"/internal/users/{user_id}/news").body
    assert after["items"] == [] and after["marker"] is None and after["since"] == marker

    second = _engineering(person)
    _fail(api, second, "tests failed")
    later = service.get(f"/internal/users/{user_id}/news").body
    assert [i["task_id"] for i in later["items"]] == [second]


def test_never_heard_means_the_last_day_and_a_long_list_comes_twenty_at_a_time(
    api: ApiHarness, service: ApiHarness, alice: tuple[str, ApiHarness]
) -> None:
    user_id, person = alice
    old = _engineering(person)
    _complete(api, old, {"status": "success"})
    now = utcnow()
    _finished_at(api, old, now - timedelta(hours=25))
    recent = []
    for n in range(22):
        task_id = _engineering(person, f"spec {n}")
        assert person.post(f"/tasks/{task_id}/cancel").status == 200
        _finished_at(api, task_id, now - timedelta(minutes=30 - n))
        recent.append(task_id)

    first = service.get(f"/internal/users/{user_id}/news").body
    assert [i["task_id"] for i in first["items"]] == recent[:20], "a day back, never the 25-hour-old one"
    assert first["more"] is True
    assert service.post(f"/internal/users/{user_id}/news/seen", {"until": first["marker"]}).status == 200
    rest = service.get(f"/internal/users/{user_id}/news").body
    assert [i["task_id"] for i in rest["items"]] == recent[20:] and rest["more"] is False


def test_outcomes_ending_at_one_instant_are_never_split_by_the_limit(
    api: ApiHarness, service: ApiHarness, alice: tuple[str, ApiHarness]
) -> None:
    user_id, person = alice
    now = utcnow()
    ids = []
    for n in range(21):
        task_id = _engineering(person, f"spec {n}")
        assert person.post(f"/tasks/{task_id}/cancel").status == 200
        # the last two share an instant across the limit of 20
        _finished_at(api, task_id, now - timedelta(minutes=30 - min(n, 19)))
        ids.append(task_id)

    first = service.get(f"/internal/users/{user_id}/news").body
    assert len(first["items"]) == 19 and first["more"] is True
    service.post(f"/internal/users/{user_id}/news/seen", {"until": first["marker"]})
    rest = service.get(f"/internal/users/{user_id}/news").body["items"]
    assert sorted(i["task_id"] for i in rest) == sorted(ids[19:]), "both of the shared instant come next"


def test_news_is_for_the_service_only_and_names_bad_input(
    api: ApiHarness, service: ApiHarness, alice: tuple[str, ApiHarness]
) -> None:
    user_id, person = alice
    assert person.get(f"/internal/users/{user_id}/news").status == 403
    assert person.post(f"/internal/users/{user_id}/news/seen", {"until": utcnow().isoformat()}).status == 403
    assert service.get("/internal/users/nobody/news").status == 404
    future = service.post(
        f"/internal/users/{user_id}/news/seen", {"until": (utcnow() + timedelta(days=1)).isoformat()}
    )
    assert future.status == 422 and "until" in str(future.body), future
    naive = service.post(f"/internal/users/{user_id}/news/seen", {"until": "2026-01-01T00:00:00"})
    assert naive.status == 422, naive
