"""The scheduler's jobs over fakes, a local queue file and the local work signal: settings reach the API
calls, an idle system is answered without the API, a job settles its mark only when the API says
nothing is left, the DLQ watch counts and tells the owner, the metrics are a few aggregates, and the
schedule table names only jobs that exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.scheduler.handler import SCHEDULER_METRICS, lambda_handler, metric_values
from functions.scheduler.jobs import IDLE, JOBS, dlq_summary
from functions.scheduler.settings import SchedulerSettings
from shared.contracts.api import OrphanWorkerReport, StuckTaskReport
from shared.queues.local import LocalQueue
from shared.topology import SCHEDULES
from shared.work_signal import SETTLE_S, WorkKind, build_work_signal
from shared.work_signal.local import SqliteWorkSignal


class FakeApi:
    """Records the repair calls; answers with empty reports."""

    def __init__(self, running: int = 0, live: int = 0) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False
        self.running = running
        self.live = live

    def reap_stuck_tasks(self, **kwargs: Any) -> StuckTaskReport:
        self.calls.append(("reap", kwargs))
        return StuckTaskReport(
            examined=0, failed=0, requeued=0, workers_stopped=0, skipped=0, running=self.running
        )

    def collect_orphan_workers(self, **kwargs: Any) -> OrphanWorkerReport:
        self.calls.append(("collect", kwargs))
        return OrphanWorkerReport(
            examined=0, stopped=0, task_ended=0, too_old=0, unseen=0, skipped=0, live=self.live
        )

    def close(self) -> None:
        self.closed = True


def _dead_letter(queue: LocalQueue, name: str) -> None:
    queue.publish_raw(name, "not json at all")
    for _ in range(3):
        queue.receive(name, visibility_timeout=0)


def test_every_scheduled_job_exists_and_every_job_is_scheduled() -> None:
    assert {s.job for s in SCHEDULES} == set(JOBS)
    every = {s.job: s.every_s for s in SCHEDULES}
    assert (every["stuck_task_reaper"], every["orphan_worker_collector"], every["dlq_watch"]) == (60, 60, 300)


def test_repair_jobs_pass_their_settings_to_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REAPER_MAX_RETRIES", "2")
    monkeypatch.setenv("ORCH_WORKER_MAX_LIFETIME_S", "600")
    api = FakeApi()
    build_work_signal().mark([WorkKind.TASKS, WorkKind.WORKERS])  # the API wrote a task and a worker

    lambda_handler({"job": "stuck_task_reaper"}, None, api=api)  # type: ignore[arg-type]
    lambda_handler({"job": "orphan_worker_collector"}, None, api=api)  # type: ignore[arg-type]

    assert api.calls == [
        ("reap", {"limit_s": 900, "max_retries": 2, "batch": 50}),
        ("collect", {"max_lifetime_s": 600 + 300, "unseen_s": 900, "batch": 50}),
    ]
    assert not api.closed, "a client handed in belongs to the caller"


def test_dlq_watch_counts_each_dlq_and_tells_the_owner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a dead message on two queues, and no API key anywhere (the watch needs none)
    queue = LocalQueue(tmp_path / "queue.db", max_receives=2, visibility_timeout=0)
    _dead_letter(queue, "worker:commands")
    _dead_letter(queue, "engineering:queue")
    _dead_letter(queue, "engineering:queue")

    # when
    result = lambda_handler({"job": "dlq_watch"}, None, queue=queue, settings=SchedulerSettings())

    # then the counts are the job's answer (and its log line); no custom metric per queue
    assert result["dead_total"] == 3 and result["dlqs_non_empty"] == 2
    assert result["dead.engineering:queue"] == 2 and result["dead.worker:commands"] == 1
    assert result["dead.deploy:queue"] == 0
    out, err = capsys.readouterr()
    emf = json.loads(next(line for line in out.splitlines() if '"_aws"' in line))
    assert not [name for name in emf if name.startswith(("dlq_watch", "dead"))], emf
    assert emf["DeadLetters"] == [3.0], "one total for every DLQ (the dead-letters alarm)"
    # and one warning line names each non-empty DLQ with the commands that inspect and repair it
    [summary] = [json.loads(line) for line in err.splitlines() if '"WARNING"' in line]
    assert summary["message"].startswith("3 dead-lettered message(s) in 2 DLQ(s): engineering:queue 2")
    for name in ("engineering:queue", "worker:commands"):
        assert f"orchestrator queue dlq {name}" in summary["message"]
        assert f"orchestrator queue redrive {name}" in summary["message"]
    assert summary["dead_letters"] == {"engineering:queue": 2, "worker:commands": 1}


def test_dlq_watch_is_quiet_when_every_dlq_is_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = LocalQueue(tmp_path / "queue.db")
    result = lambda_handler({"job": "dlq_watch"}, None, queue=queue, settings=SchedulerSettings())
    assert (result["dead_total"], result["dlqs_non_empty"]) == (0, 0)
    assert '"WARNING"' not in capsys.readouterr().err


def test_dlq_summary_lists_only_non_empty_queues() -> None:
    assert dlq_summary({"a:queue": 0}) is None
    line = dlq_summary({"a:queue": 0, "b:queue": 4})
    assert line == (
        "4 dead-lettered message(s) in 1 DLQ(s): b:queue 4 "
        "(inspect: orchestrator queue dlq b:queue; after the fix: orchestrator queue redrive b:queue)"
    )


def test_jobs_that_need_the_api_fail_clearly_without_a_key() -> None:
    build_work_signal().mark([WorkKind.TASKS])
    with pytest.raises(RuntimeError, match="no service API key"):
        lambda_handler({"job": "stuck_task_reaper"}, None)


class FakeSweepApi(FakeApi):
    def __init__(self, pending: int) -> None:
        super().__init__()
        self.pending = pending

    def sweep_outbox(self) -> dict[str, int]:
        self.calls.append(("sweep", {}))
        return {"claimed": 2, "sent": 1, "failed": 1, "pruned": 0, "pending": self.pending}


def test_an_idle_system_is_answered_from_the_work_signal_alone(capsys: pytest.CaptureFixture[str]) -> None:
    # given no mark at all (nothing was ever written): the API is never asked, however many ticks
    api = FakeSweepApi(pending=0)
    for name in ("outbox_sweep", "stuck_task_reaper", "orphan_worker_collector", "health_checker"):
        for _ in range(3):
            assert lambda_handler({"job": name}, None, api=api) == {"job": name, IDLE: 1}  # type: ignore[arg-type]
    assert api.calls == []
    # and an idle tick writes neither a metric nor a log line
    out, err = capsys.readouterr()
    assert '"_aws"' not in out and "scheduled job done" not in err


def test_a_job_settles_its_mark_only_when_the_api_says_nothing_is_left(tmp_path: Path) -> None:
    clock = [1000.0]
    signal = SqliteWorkSignal(tmp_path / "signal.db", clock=lambda: clock[0])
    signal.mark([WorkKind.OUTBOX])
    clock[0] += SETTLE_S + 1  # the marking transaction has long committed or died
    # when the sweep leaves a row unsent, the mark stands
    busy = FakeSweepApi(pending=1)
    result = lambda_handler({"job": "outbox_sweep"}, None, api=busy, signal=signal)  # type: ignore[arg-type]
    assert result["pending"] == 1 and "settled" not in result and WorkKind.OUTBOX in signal.marks()
    # when nothing is left, the mark goes and the next tick does not call the API
    done = FakeSweepApi(pending=0)
    assert lambda_handler({"job": "outbox_sweep"}, None, api=done, signal=signal)["settled"] == 1  # type: ignore[arg-type]
    assert lambda_handler({"job": "outbox_sweep"}, None, api=done, signal=signal)[IDLE] == 1  # type: ignore[arg-type]
    assert [call for call, _ in done.calls] == ["sweep"]


def test_a_fresh_mark_survives_an_empty_answer(tmp_path: Path) -> None:
    # given a mark set just now (its transaction may not have committed when the API looked)
    signal = SqliteWorkSignal(tmp_path / "signal.db")
    signal.mark([WorkKind.TASKS])
    api = FakeApi(running=0)
    # when the reaper finds no RUNNING task, it does not settle: the next tick looks again
    result = lambda_handler({"job": "stuck_task_reaper"}, None, api=api, signal=signal)  # type: ignore[arg-type]
    assert result["settled"] == 0 and WorkKind.TASKS in signal.marks()
    lambda_handler({"job": "stuck_task_reaper"}, None, api=api, signal=signal)  # type: ignore[arg-type]
    assert len(api.calls) == 2


def test_every_job_that_reaches_the_database_watches_a_kind_of_work() -> None:
    watched = {name: getattr(job, "watches", None) for name, job in JOBS.items()}
    assert watched.pop("dlq_watch") is None  # SQS attributes only
    assert set(watched.values()) == set(WorkKind), watched


def test_metrics_are_a_few_aggregates_and_zero_is_not_emitted() -> None:
    names = {metric for per_job in SCHEDULER_METRICS.values() for metric in per_job} | {"ScheduledRuns"}
    assert len(names) <= 7, names
    assert metric_values("stuck_task_reaper", {"failed": 1, "requeued": 2, "examined": 3}) == {
        "ScheduledRuns": 1,
        "StuckTasks": 3,
    }
    assert metric_values("outbox_sweep", {"sent": 0, "failed": 0, "pending": 0}) == {"ScheduledRuns": 1}
    assert metric_values("health_checker", {IDLE: 1}) == {}
