"""The scheduler's repair jobs through the real API (service scope), on SQLite and PostgreSQL:
the stuck-task reaper, the orphan-worker collector, and both overlapping with themselves and each other."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from functions.api.auth import Principal
from functions.api.handler import lambda_handler as api_handler
from functions.api.models import OutboxMessage, Task, Worker, utcnow
from functions.api.services import maintenance
from functions.scheduler.handler import lambda_handler
from functions.scheduler.settings import SchedulerSettings
from shared.api_client import ApiClient, AuthError
from shared.apigw import LambdaTransport
from shared.contracts import WORKER_COMMANDS
from shared.contracts.api import OrphanWorkerCollect, StuckTaskReap
from shared.work_signal import WorkKind
from tests.api_support import ApiHarness
from tests.factories import race as _race

SERVICE = Principal(
    user_id="scheduler", telegram_id=None, is_admin=False, scopes=frozenset({"service"}), key_id="k"
)


def _client(key: str) -> ApiClient:
    return ApiClient("http://api.local", key, transport=LambdaTransport(api_handler))


@pytest.fixture(autouse=True)
def _one_work_signal(api: ApiHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler reads the marks the API's writes set (as the embedded stack's ticker does)."""
    monkeypatch.setenv("ORCH_WORK_SIGNAL_FILE", str(api.deps.settings.effective_work_signal_file))


@pytest.fixture
def service(api: ApiHarness) -> ApiClient:
    _, key = api.new_user("scheduler", scopes=["service"])
    return _client(key)


def _run(job: str, service: ApiClient, **settings: Any) -> dict[str, Any]:
    return lambda_handler({"job": job}, None, api=service, settings=SchedulerSettings(**settings))


def _running_task(api: ApiHarness, project: str) -> str:
    api.new_project(project)
    task_id: str = api.post(f"/projects/{project}/engineering", {"spec": "x"}).body["id"]
    claimed = api.post(f"/internal/tasks/{task_id}/claim", {"worker": "test"})
    assert claimed.status == 200, claimed
    return task_id


def _worker(api: ApiHarness, worker_id: str, task_id: str | None, status: str = "RUNNING") -> None:
    reply = api.post(
        "/internal/workers", {"id": worker_id, "task_id": task_id, "agent": "command", "status": status}
    )
    assert reply.status == 201, reply


def _ago(api: ApiHarness, model: Any, row_id: str, **minutes: float) -> None:
    """Move a row's timestamps into the past (or the future, with negative minutes)."""
    values = {column: utcnow() - timedelta(minutes=m) for column, m in minutes.items()}
    with api.deps.db.session() as session:
        session.execute(update(model).where(model.id == row_id).values(**values))


def _deletes(api: ApiHarness) -> list[str]:
    """The worker ids of every delete command published on worker:commands so far (drained)."""
    out: list[str] = []
    while batch := api.deps.queue.receive(WORKER_COMMANDS, 10, visibility_timeout=300):
        out += [json.loads(m.body)["worker_id"] for m in batch if json.loads(m.body)["command"] == "delete"]
    return out


def _queued_deletes(api: ApiHarness) -> list[str]:
    """The same, from the outbox (for calls of the service that publish nothing themselves)."""
    with api.deps.db.session() as session:
        bodies = session.execute(
            select(OutboxMessage.body).where(OutboxMessage.queue == WORKER_COMMANDS)
        ).scalars()
        return sorted(json.loads(b)["worker_id"] for b in bodies if json.loads(b)["command"] == "delete")


def _in_step(monkeypatch: pytest.MonkeyPatch, n: int, *names: str) -> None:
    """Hold every caller before its first row until all have picked their candidates: the overlap is certain."""
    barrier = threading.Barrier(n)
    local = threading.local()
    for name in names:
        original = getattr(maintenance, name)

        def gated(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if not getattr(local, "waited", False):
                local.waited = True
                barrier.wait(timeout=30)
            return _original(*args, **kwargs)

        monkeypatch.setattr(maintenance, name, gated)


def _events(api: ApiHarness, task_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in api.get(f"/tasks/{task_id}/events").body if e["type"] == kind]


# -- stuck-task reaper ---------------------------------------------------------------------


def test_stuck_task_is_failed_with_the_reason_and_its_worker_deleted(
    api: ApiHarness, service: ApiClient
) -> None:
    # given a RUNNING task silent for 17 minutes whose worker was last seen as long ago
    task_id = _running_task(api, "blog")
    _worker(api, "w-stuck", task_id)
    _worker(api, "w-done", task_id, status="STOPPED")
    _ago(api, Task, task_id, heartbeat_at=17, started_at=20)
    _ago(api, Worker, "w-stuck", last_seen_at=17, started_at=20)

    # when the reaper runs
    report = _run("stuck_task_reaper", service)

    # then the task failed with a reason a person can read, once, and its live worker is being deleted
    assert report == {
        "job": "stuck_task_reaper",
        "examined": 1,
        "failed": 1,
        "requeued": 0,
        "workers_stopped": 1,
        "skipped": 0,
        "running": 1,  # counted as the call began: the reaper looks again next tick
    }
    task = api.get(f"/tasks/{task_id}").body
    assert task["status"] == "FAILED" and task["error"] == "no heartbeat for 17 min (limit 15 min)"
    [failed] = _events(api, task_id, "failed")
    assert failed["error"] == task["error"] and failed["error_type"] == "StuckTask"
    assert "stuck-task reaper" in failed["message"]
    assert _deletes(api) == ["w-stuck"], "one delete, and none for a worker that already ended"

    assert _run("stuck_task_reaper", service)["examined"] == 0
    assert _deletes(api) == []


def test_only_stuck_tasks_are_reaped(api: ApiHarness, service: ApiClient) -> None:
    fresh = _running_task(api, "fresh")
    seen = _running_task(api, "seen")
    _worker(api, "w-seen", seen)
    _ago(api, Task, seen, heartbeat_at=30, started_at=30)
    _ago(api, Worker, "w-seen", last_seen_at=1, started_at=30)

    busy = _running_task(api, "busy")
    _worker(api, "w-busy", busy)
    api.post("/internal/workers/w-busy/messages", {"request_id": "m-1", "body": "work"})
    assert api.post("/internal/workers/w-busy/messages/next").status == 200
    _ago(api, Task, busy, heartbeat_at=30, started_at=30)
    _ago(api, Worker, "w-busy", last_seen_at=30, started_at=30)

    leased = _running_task(api, "leased")
    _ago(api, Task, leased, heartbeat_at=30, started_at=30, lease_until=-2)

    talking = _running_task(api, "talking")
    _ago(api, Task, talking, heartbeat_at=30, started_at=30)
    appended = api.post(
        f"/internal/tasks/{talking}/events", {"events": [{"type": "progress", "message": "tool: ls"}]}
    )
    assert appended.status == 201, "a worker's progress events are the engineering task's heartbeat"

    waiting = _running_task(api, "waiting")
    api.post(f"/internal/tasks/{waiting}/wait", {"reason": "needs an answer"})
    _ago(api, Task, waiting, heartbeat_at=30, started_at=30)

    report = _run("stuck_task_reaper", service)

    assert report["examined"] == 0 and report["failed"] == 0, report
    statuses = {api.get(f"/tasks/{t}").body["status"] for t in (fresh, seen, busy, leased, talking)}
    assert statuses == {"RUNNING"}
    assert api.get(f"/tasks/{waiting}").body["status"] == "WAITING_INPUT"
    assert _deletes(api) == []


def test_a_worker_that_stopped_answering_does_not_keep_its_task_alive(
    api: ApiHarness, service: ApiClient
) -> None:
    task_id = _running_task(api, "blog")
    _worker(api, "w-silent", task_id)
    _worker(api, "w-stopping", task_id)
    _ago(api, Task, task_id, heartbeat_at=16, started_at=40)
    _ago(api, Worker, "w-silent", last_seen_at=16, started_at=40)
    _ago(api, Worker, "w-stopping", last_seen_at=0, started_at=40, stop_requested_at=1)

    report = _run("stuck_task_reaper", service, reaper_heartbeat_limit_s=600)

    assert report["failed"] == 1
    assert api.get(f"/tasks/{task_id}").body["error"] == "no heartbeat for 16 min (limit 10 min)"
    assert _deletes(api) == ["w-silent"], "a worker already asked to stop is not asked twice"


def test_overlapping_reapers_fail_each_task_once_and_send_one_delete(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_ids = [_running_task(api, f"p{i}") for i in range(3)]
    for i, task_id in enumerate(task_ids):
        _worker(api, f"w-{i}", task_id)
        _ago(api, Task, task_id, heartbeat_at=20, started_at=20)
        _ago(api, Worker, f"w-{i}", last_seen_at=20, started_at=20)
    request = StuckTaskReap(limit_s=900)
    _in_step(monkeypatch, 4, "_reap_one")

    results = _race(4, lambda _i: maintenance.reap_stuck_tasks(api.deps.db, SERVICE, request)[0])

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.failed for r in results) == 3
    assert sum(r.skipped for r in results) == 9, "every caller saw all three; the others lost the CAS"
    assert sum(r.failed + r.skipped for r in results) == sum(r.examined for r in results)
    assert sorted(t.task_id for r in results for t in r.tasks) == sorted(task_ids)
    for task_id in task_ids:
        assert len(_events(api, task_id, "failed")) == 1, "one failure event per task"
    assert _queued_deletes(api) == ["w-0", "w-1", "w-2"], "one delete per worker"


def test_retry_policy_requeues_up_to_n_times_then_fails(api: ApiHarness, service: ApiClient) -> None:
    task_id = _running_task(api, "blog")
    _worker(api, "w-1", task_id)
    _ago(api, Task, task_id, heartbeat_at=20, started_at=20)
    _ago(api, Worker, "w-1", last_seen_at=20, started_at=20)
    api.deps.queue.receive("engineering:queue", 10, visibility_timeout=300)  # the first run's message

    first = _run("stuck_task_reaper", service, reaper_max_retries=1)

    assert (first["requeued"], first["failed"], first["workers_stopped"]) == (1, 0, 1)
    task = api.get(f"/tasks/{task_id}").body
    assert task["status"] == "QUEUED" and task["attempt"] == 1 and task["error"] is None
    assert any(
        "requeued by the stuck-task reaper (retry 1 of 1)" in e["message"]
        for e in _events(api, task_id, "progress")
    )
    assert _events(api, task_id, "failed") == []
    assert len(api.deps.queue.receive("engineering:queue", 10, visibility_timeout=300)) == 1, "queued again"
    assert _deletes(api) == ["w-1"], "the stuck run's worker goes"

    # the second run gets stuck too: the policy is spent
    assert api.post(f"/internal/tasks/{task_id}/claim", {"worker": "test"}).body["attempt"] == 2
    _ago(api, Task, task_id, heartbeat_at=20)
    second = _run("stuck_task_reaper", service, reaper_max_retries=1)

    assert (second["requeued"], second["failed"]) == (0, 1)
    task = api.get(f"/tasks/{task_id}").body
    assert task["status"] == "FAILED" and task["error"] == "no heartbeat for 20 min (limit 15 min)"


# -- orphan-worker collector ---------------------------------------------------------------


def test_orphan_workers_get_exactly_one_delete(api: ApiHarness, service: ApiClient) -> None:
    running = _running_task(api, "running")
    ended = _running_task(api, "ended")
    just_ended = _running_task(api, "just-ended")
    for task_id in (ended, just_ended):
        assert api.post(f"/internal/tasks/{task_id}/fail", {"error": "boom"}).status == 200
    _ago(api, Task, ended, finished_at=5)

    _worker(api, "w-task-ended", ended)
    _worker(api, "w-already-stopped", ended, status="STOPPED")
    _worker(api, "w-grace", just_ended)
    _worker(api, "w-too-old", running)
    _ago(api, Worker, "w-too-old", started_at=120, last_seen_at=0)
    _worker(api, "w-unseen", running)
    _ago(api, Worker, "w-unseen", started_at=20, last_seen_at=20)
    _worker(api, "w-never-seen", None, status="STARTING")
    _ago(api, Worker, "w-never-seen", started_at=20)
    _worker(api, "w-busy", running)
    api.post("/internal/workers/w-busy/messages", {"request_id": "m-1", "body": "work"})
    api.post("/internal/workers/w-busy/messages/next")
    _ago(api, Worker, "w-busy", started_at=20, last_seen_at=20)
    _worker(api, "w-fresh", running)

    report = _run("orphan_worker_collector", service)

    assert report == {
        "job": "orphan_worker_collector",
        "examined": 4,
        "stopped": 4,
        "task_ended": 1,
        "too_old": 1,
        "unseen": 2,
        "skipped": 0,
        "live": 7,  # every worker but the stopped one, as the call began
    }
    assert sorted(_deletes(api)) == ["w-never-seen", "w-task-ended", "w-too-old", "w-unseen"]
    assert _run("orphan_worker_collector", service)["stopped"] == 0, "asked once, never again"
    assert _deletes(api) == []
    listed = {w["id"]: w["status"] for w in api.get("/workers").body}
    assert listed["w-fresh"] == listed["w-busy"] == listed["w-grace"] == "RUNNING"


def test_collector_reports_why(api: ApiHarness, service: ApiClient) -> None:
    task_id = _running_task(api, "blog")
    _worker(api, "w-old", task_id)
    _ago(api, Worker, "w-old", started_at=60, last_seen_at=0)

    report = service.collect_orphan_workers(max_lifetime_s=1800 + 300, unseen_s=900)

    [collected] = report.workers
    assert (collected.worker_id, collected.task_id, collected.cause) == ("w-old", task_id, "too_old")
    assert collected.reason == "running for 60 min (max lifetime 35 min)"


def test_overlapping_collectors_and_reapers_send_one_delete_per_worker(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given orphans of every kind, and a stuck task whose silent worker is an orphan too
    ended = _running_task(api, "ended")
    api.post(f"/internal/tasks/{ended}/fail", {"error": "boom"})
    _ago(api, Task, ended, finished_at=5)
    stuck = _running_task(api, "stuck")
    _ago(api, Task, stuck, heartbeat_at=20, started_at=20)
    for worker_id, task_id in (("w-a", ended), ("w-b", ended), ("w-c", stuck), ("w-d", None)):
        _worker(api, worker_id, task_id)
        _ago(api, Worker, worker_id, started_at=20, last_seen_at=20)
    collect, reap = OrphanWorkerCollect(unseen_s=900), StuckTaskReap(limit_s=900)

    def tick(i: int) -> object:
        if i % 2:
            return maintenance.reap_stuck_tasks(api.deps.db, SERVICE, reap)[0]
        return maintenance.collect_orphan_workers(api.deps.db, collect)[0]

    _in_step(monkeypatch, 6, "_reap_one", "_collect_one")
    results = _race(6, tick)

    assert not [r for r in results if isinstance(r, Exception)], results
    assert _queued_deletes(api) == ["w-a", "w-b", "w-c", "w-d"], "exactly one delete per worker"
    reapers, collectors = results[1::2], results[0::2]
    assert sum(r.failed for r in reapers) == 1
    assert sum(r.workers_stopped for r in reapers) + sum(r.stopped for r in collectors) == 4
    assert sum(r.skipped for r in collectors) >= 2 * 4, "each collector saw every orphan; one acted on each"
    assert len(_events(api, stuck, "failed")) == 1
    with api.deps.db.session() as session:
        asked = session.execute(
            select(func.count()).where(Worker.stop_requested_at.is_not(None))
        ).scalar_one()
    assert asked == 4


# -- wiring --------------------------------------------------------------------------------


def test_repair_endpoints_need_service_scope(api: ApiHarness) -> None:
    _, user_key = api.new_user("plain")
    api.deps.work_signal.mark([WorkKind.TASKS, WorkKind.WORKERS])
    with _client(user_key) as plain:
        for job in ("stuck_task_reaper", "orphan_worker_collector"):
            with pytest.raises(AuthError):
                _run(job, plain)


def test_repair_requests_are_validated(api: ApiHarness) -> None:
    reply = api.post("/internal/maintenance/reap-stuck-tasks", {"limit_s": 0, "batch": 10_000})
    assert reply.status == 422 and set(reply.body["fields"]) == {"limit_s", "batch"}
    reply = api.post("/internal/maintenance/collect-orphan-workers", {"unseen_s": 1})
    assert reply.status == 422 and reply.body["fields"] == ["unseen_s"]


def test_each_call_is_bounded_by_its_batch(api: ApiHarness, service: ApiClient) -> None:
    task_ids = [_running_task(api, f"p{i}") for i in range(3)]
    for task_id in task_ids:
        _ago(api, Task, task_id, heartbeat_at=20, started_at=20)

    first = service.reap_stuck_tasks(limit_s=900, batch=2)
    second = service.reap_stuck_tasks(limit_s=900, batch=2)

    assert (first.failed, second.failed) == (2, 1)
    assert {t.task_id for t in first.tasks + second.tasks} == set(task_ids)
