"""The scheduler's jobs over fakes and a local queue file: settings reach the API calls, the DLQ watch
counts and tells the owner, and the schedule table names only jobs that exist."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from functions.scheduler.handler import lambda_handler
from functions.scheduler.jobs import JOBS, dlq_summary
from functions.scheduler.settings import SchedulerSettings
from shared.contracts.api import OrphanWorkerReport, StuckTaskReport
from shared.queues.local import LocalQueue
from shared.topology import SCHEDULES


class FakeApi:
    """Records the repair calls; answers with empty reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    def reap_stuck_tasks(self, **kwargs: Any) -> StuckTaskReport:
        self.calls.append(("reap", kwargs))
        return StuckTaskReport(examined=0, failed=0, requeued=0, workers_stopped=0, skipped=0)

    def collect_orphan_workers(self, **kwargs: Any) -> OrphanWorkerReport:
        self.calls.append(("collect", kwargs))
        return OrphanWorkerReport(examined=0, stopped=0, task_ended=0, too_old=0, unseen=0, skipped=0)

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

    # then the counts are the job's metrics
    assert result["dead_total"] == 3 and result["dlqs_non_empty"] == 2
    assert result["dead.engineering:queue"] == 2 and result["dead.worker:commands"] == 1
    assert result["dead.deploy:queue"] == 0
    out, err = capsys.readouterr()
    emf = json.loads(next(line for line in out.splitlines() if '"_aws"' in line))
    assert emf["dlq_watch.dead_total"] == [3.0] and emf["dlq_watch.dead.worker:commands"] == [1.0]
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
    with pytest.raises(RuntimeError, match="no service API key"):
        lambda_handler({"job": "stuck_task_reaper"}, None)
