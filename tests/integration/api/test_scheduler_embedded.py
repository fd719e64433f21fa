"""The repair jobs on the embedded stack's own ticker, with the real worker manager and a real wrapper:
a task whose worker hangs ends FAILED with the reason, and the hung process is gone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import cli.local.stack as stack_module
from cli.local.stack import EmbeddedStack
from functions.api.deps import get_deps
from functions.api.models import Task, Worker, utcnow
from shared.api_client import ApiClient
from shared.contracts import WORKER_COMMANDS, CreateWorkerCommand, WorkerConfig
from shared.queues.local import LocalQueue
from shared.secrets.local import LocalSecrets
from shared.topology import SCHEDULES, ScheduleSpec
from tests.process_hygiene import kill_workers

FAST = {"stuck_task_reaper", "orphan_worker_collector"}


def _wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] == "Z"


@pytest.fixture
def running_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmbeddedStack, ApiClient]]:
    # the same table, with the repair jobs every second instead of every minute
    fast = tuple(ScheduleSpec(s.job, 1, s.description) if s.job in FAST else s for s in SCHEDULES)
    monkeypatch.setattr(stack_module, "SCHEDULES", fast)
    monkeypatch.setenv("ORCH_WORKER_IDLE_TIMEOUT_S", "60")
    home = Path(os.environ["ORCH_HOME"])
    saved = dict(os.environ)
    stack = EmbeddedStack(home, port=0, tick_s=0.2, consumers=["worker_manager"])
    stack.start()
    service = ApiClient(
        os.environ["ORCH_API_URL"], LocalSecrets(home / "secrets.json").get("secret://local/service_api_key")
    )
    try:
        yield stack, service
    finally:
        stack.stop()
        kill_workers(home)
        service.close()
        os.environ.clear()
        os.environ.update(saved)


def test_a_hung_worker_ends_its_task_failed_and_is_killed(
    running_stack: tuple[EmbeddedStack, ApiClient],
) -> None:
    stack, service = running_stack
    with ApiClient(service.base_url, stack.admin_key) as admin:
        admin.create_project("blog")
        task_id = admin.start_engineering("blog", "spec").id
    service.claim_task(task_id, worker="test")
    create = CreateWorkerCommand(
        config=WorkerConfig(name="dev", agent="command"),  # type: ignore[call-arg]
        context={"task_id": task_id, "step": "developer"},
    )
    LocalQueue(stack.home / "queue.db").publish(WORKER_COMMANDS, create)
    [worker] = _wait_for(
        "the worker to run", lambda: [w for w in service.list_workers(task_id=task_id) if w.runtime_handle]
    )
    _wait_for("the wrapper to poll", lambda: service.get_worker(worker.id).status == "RUNNING")
    pid = int(str(worker.runtime_handle).split(":")[1])

    # the wrapper hangs, and neither it nor the task has been heard of for 20 minutes
    os.killpg(pid, signal.SIGSTOP)
    time.sleep(0.5)
    long_ago = utcnow() - timedelta(minutes=20)
    with get_deps().db.session() as session:
        session.execute(
            update(Task).where(Task.id == task_id).values(heartbeat_at=long_ago, started_at=long_ago)
        )
        session.execute(update(Worker).where(Worker.id == worker.id).values(last_seen_at=long_ago))

    task = _wait_for("the reaper", lambda: (t := service.get_task(task_id)).status == "FAILED" and t)
    assert task.error == "no heartbeat for 20 min (limit 15 min)"
    _wait_for("the worker manager's delete", lambda: service.get_worker(worker.id).status == "STOPPED")
    assert _wait_for("the hung process to go", lambda: _gone(pid)), "no process is left behind"
    assert [e.type for e in service.task_events(task_id)][-1] == "failed"
