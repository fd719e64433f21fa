"""Deleting a worker records it STOPPED first and then stops its process; the runtime's report of that
stop, when it reaches the same manager, has nothing to add and costs no request. Any other end is
reported as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from functions.worker_manager.logic import REMEMBERED_DELETES, WorkerManager
from shared.contracts import DeleteWorkerCommand, DeleteWorkerResponse
from shared.contracts.api import WorkerDetail
from shared.workers.runtime import RuntimeStatus


class _Api:
    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.stopped: list[tuple[str, str, int | None]] = []

    def get_worker(self, worker_id: str) -> WorkerDetail:
        return WorkerDetail(
            id=worker_id,
            task_id="t-1",
            agent="command",
            runtime_handle=f"local:1:{worker_id}",
            status=self.status.get(worker_id, "RUNNING"),
            exit_reason=None,
            started_at=datetime.now(UTC),
            stopped_at=None,
            config={},
            create_request_id="r",
        )

    def worker_stopped(self, worker_id: str, reason: str, exit_code: int | None = None, **_: Any) -> None:
        self.stopped.append((worker_id, reason, exit_code))
        self.status[worker_id] = "STOPPED"


class _Runtime:
    backend = "fake"

    def __init__(self) -> None:
        self.manager: WorkerManager | None = None

    def stop(self, handle: str, reason: str) -> None:
        assert self.manager is not None
        # as the local runtime's monitor does once the process has gone
        self.manager.runtime_stopped(
            handle.rsplit(":", 1)[1], RuntimeStatus(handle, "STOPPED", -15, f"stopped:{reason}")
        )


class _Queue:
    def __init__(self) -> None:
        self.published: list[Any] = []

    def publish(self, queue: str, message: Any) -> None:
        self.published.append(message)


def _manager() -> tuple[WorkerManager, _Api, _Queue]:
    api, runtime, queue = _Api(), _Runtime(), _Queue()
    manager = WorkerManager(api, runtime, queue, {})  # type: ignore[arg-type]
    runtime.manager = manager
    return manager, api, queue


def test_a_deleted_workers_stop_is_reported_once() -> None:
    manager, api, queue = _manager()

    manager.delete(DeleteWorkerCommand(request_id="t-1:tester:1:delete", worker_id="w-1"))

    assert api.stopped == [("w-1", "deleted", None)], "recorded by the delete, not again by the runtime"
    [answer] = queue.published
    assert isinstance(answer, DeleteWorkerResponse) and answer.success


def test_other_ends_are_still_reported() -> None:
    manager, api, _ = _manager()
    manager.delete(DeleteWorkerCommand(request_id="t-1:tester:1:delete", worker_id="w-1"))

    # a process that exits by itself, or one stopped for another reason, or a second report of the same
    manager.runtime_stopped("w-2", RuntimeStatus("local:1:w-2", "STOPPED", 0, "exited"))
    manager.runtime_stopped("w-3", RuntimeStatus("local:1:w-3", "STOPPED", -15, "stopped:max lifetime"))
    manager.runtime_stopped("w-1", RuntimeStatus("local:1:w-1", "STOPPED", -15, "stopped:deleted"))

    assert [s[0] for s in api.stopped] == ["w-1", "w-2", "w-3", "w-1"]


def test_what_it_remembers_is_bounded() -> None:
    manager, api, _ = _manager()
    manager.runtime.stop = lambda handle, reason: None  # type: ignore[method-assign]
    for i in range(REMEMBERED_DELETES + 10):
        manager.delete(DeleteWorkerCommand(request_id=f"t:{i}:delete", worker_id=f"w-{i}"))
    api.stopped.clear()

    manager.runtime_stopped("w-0", RuntimeStatus("local:1:w-0", "STOPPED", -15, "stopped:deleted"))
    manager.runtime_stopped("w-10", RuntimeStatus("local:1:w-10", "STOPPED", -15, "stopped:deleted"))

    assert [s[0] for s in api.stopped] == ["w-0"], "the oldest forgotten (reported), a recent one remembered"
