"""`follow` ends with the task's last event: the graphs post `completed` / `failed` just after the task's
status changes, so a follower can read the final status before that event exists (it used to stop there
and miss "done: ... merged into main", which tests/e2e/test_engineering_merge looks for)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from cli.follow import follow
from shared.contracts.api import Task, TaskEvent, TaskStatus
from tests.unit.test_cli_spend import TASK_ID, _task

NOW = datetime(2026, 12, 4, tzinfo=UTC)


def _event(seq: int, kind: str) -> TaskEvent:
    return TaskEvent(
        seq=seq,
        task_id=TASK_ID,
        type=kind,  # type: ignore[arg-type]
        message=f"{kind} {seq}",
        progress_pct=None,
        current_step=None,
        error=None,
        error_type=None,
        timestamp=NOW,
    )


class EventsLate:
    """The task is final from the first read; its last event shows up only on a later read of events."""

    def __init__(self, status: TaskStatus, late: list[TaskEvent], after_reads: int = 3) -> None:
        self.status, self.late, self.after_reads = status, late, after_reads
        self.reads = 0

    def get_task(self, task_id: str) -> Task:
        return _task(self.status)

    def task_events(self, task_id: str, after: int = 0) -> list[TaskEvent]:
        self.reads += 1
        events = [_event(1, "started"), *(self.late if self.reads > self.after_reads else [])]
        return [e for e in events if e.seq > after]


def test_the_ending_event_posted_after_the_status_is_still_followed() -> None:
    api = EventsLate(TaskStatus.COMPLETED, [_event(2, "completed")])
    seen: list[str] = []
    final = follow(api, TASK_ID, lambda e: seen.append(e.type), interval=0.0)  # type: ignore[arg-type]
    assert final.status is TaskStatus.COMPLETED
    assert seen == ["started", "completed"]


def test_without_an_ending_event_it_waits_the_grace_only_and_a_cancelled_task_not_at_all() -> None:
    never = EventsLate(TaskStatus.FAILED, [])
    started = time.monotonic()
    final = follow(never, TASK_ID, lambda _e: None, interval=0.0, final_event_grace_s=0.3)  # type: ignore[arg-type]
    assert final.status is TaskStatus.FAILED
    waited = time.monotonic() - started
    assert waited >= 0.3 and never.reads > 3  # it read events on through the grace, then gave up

    cancelled = EventsLate(TaskStatus.CANCELLED, [_event(2, "failed")], after_reads=99)
    follow(cancelled, TASK_ID, lambda _e: None, interval=0.0)  # type: ignore[arg-type]
    assert cancelled.reads == 2  # the loop's read and the one after the final status: no grace
