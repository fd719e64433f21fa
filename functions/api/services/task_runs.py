"""What consumers and workers do to a task while it runs: status changes, progress, its lease.

Every status change is a compare-and-set (`tasks.transition`), so a redelivered message that tries to
claim an already claimed task gets 409 and does nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Select, Update, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from functions.api.db import rows_changed
from functions.api.errors import Conflict, NotFound
from functions.api.models import Task, TaskEvent, User, utcnow
from functions.api.services import tasks, usage
from shared.contracts.api import TaskStatus
from shared.observability import count, seconds

S = TaskStatus


def claim(session: Session, task_id: str, worker: str | None) -> Task:
    """QUEUED -> RUNNING, one more attempt."""
    now = utcnow()
    task = tasks.transition(
        session,
        task_id,
        [S.QUEUED],
        S.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempt=Task.attempt + 1,
        claimed_by=worker,
    )
    tasks.system_event(session, task, "started", f"started (attempt {task.attempt})")
    count("TasksStarted")
    return task


def heartbeat(session: Session, task_id: str) -> Task:
    return tasks.transition(session, task_id, [S.RUNNING, S.WAITING_INPUT], S.RUNNING, heartbeat_at=utcnow())


def wait_for_input(session: Session, task_id: str, reason: str) -> Task:
    task = tasks.transition(session, task_id, [S.RUNNING], S.WAITING_INPUT, heartbeat_at=utcnow())
    tasks.system_event(session, task, "progress", reason)
    return task


def resume(session: Session, task_id: str) -> Task:
    return tasks.transition(session, task_id, [S.WAITING_INPUT], S.RUNNING, heartbeat_at=utcnow())


def _with_cost(session: Session, task_id: str, result: dict[str, Any] | None) -> dict[str, Any]:
    """The result as stored: what the task cost so far, from the ledger (never the writer's word)."""
    return {**(result or {}), "cost_usd": usage.task_cost_usd(session, task_id)}


def complete(session: Session, task_id: str, result: dict[str, Any]) -> Task:
    result = _with_cost(session, task_id, result)
    task = tasks.transition(session, task_id, [S.RUNNING], S.COMPLETED, result=result, finished_at=utcnow())
    count("TasksCompleted")
    if task.started_at and task.finished_at:
        seconds("TaskDuration", (task.finished_at - task.started_at).total_seconds())
    return task


def fail(
    session: Session, task_id: str, error: str, result: dict[str, Any] | None, reason: str | None = None
) -> Task:
    task = tasks.transition(
        session,
        task_id,
        tasks.ACTIVE,
        S.FAILED,
        error=error,
        result=_with_cost(session, task_id, result),
        finished_at=utcnow(),
        failure_reason=reason,
    )
    tasks.close_gates(session, task.id)
    count("TasksFailed")
    return task


def append_events(session: Session, task_id: str, raw_events: list[dict[str, Any]]) -> list[TaskEvent]:
    """One query reads the task, its owner's Telegram id and the progress it has reached (three per event
    before: the graphs and workers append ~10 events per engineering task, one at a time)."""
    found = session.execute(_with_reach(), {"task_id": task_id}).first()
    if found is None:
        raise NotFound(f"task {task_id!r} not found")
    task, chat, progress = found
    context = tasks.EventContext(reached=progress, chat=chat or None)
    return tasks.append_events(session, task, raw_events, context)


@functools.cache
def _with_reach() -> Select[Task, int | None, int | None]:
    """The events' read of their task, built once like the other statements of the most frequent requests
    (built per request, a statement cost more than running it: docs/decisions.md)."""
    reached = select(func.max(TaskEvent.progress_pct)).where(TaskEvent.task_id == Task.id).scalar_subquery()
    return (
        select(Task, User.telegram_id, reached)
        .outerjoin(User, User.id == Task.user_id)
        .where(Task.id == bindparam("task_id"))
    )


def current(session: Session, task_id: str) -> Task:
    """The task as the database has it now (404 if none)."""
    task = session.get(Task, task_id, populate_existing=True)
    if task is None:
        raise NotFound(f"task {task_id!r} not found")
    return task


@dataclass(frozen=True)
class Lease:
    """A task's lease as a take or a release left it."""

    task_id: str
    holder: str | None
    until: datetime | None
    status: str | None = None
    """The task's status (a take says it: the driver's answer to "did it end?")."""


def take_lease(session: Session, task_id: str, holder: str, lease_s: int) -> Lease:
    """Take the lease, or renew it for its holder; 409 while another holder's lease runs. Where the
    database can return what an UPDATE changed (PostgreSQL, SQLite 3.35+), a taken lease is one
    statement: the task is read again only when the take failed (who holds it) or nothing returns."""
    now = utcnow()
    until = now + timedelta(seconds=lease_s)
    params = {"task_id": task_id, "holder": holder, "now": now, "until": until}
    bind = session.get_bind()
    if bind.dialect.update_returning:
        taken = session.execute(_take(returning=True), params).first()
        if taken is not None:
            return Lease(task_id, holder, until, taken.status)
    elif rows_changed(session, _take(returning=False), params) == 1:
        return Lease(task_id, holder, until, current(session, task_id).status)
    task = current(session, task_id)
    raise Conflict(f"task {task_id} is leased by {task.lease_holder} until {task.lease_until}")


@functools.cache
def _take(returning: bool) -> Update:
    """The lease's take, built once: free (none, run out, or this holder's own), then taken."""
    now: BindParameter[datetime] = bindparam("now")
    holder: BindParameter[str] = bindparam("holder")
    free = or_(Task.lease_until.is_(None), Task.lease_until < now, Task.lease_holder == holder)
    take = (
        update(Task)
        .where(Task.id == bindparam("task_id"), free)
        .values(lease_holder=holder, lease_until=bindparam("until"))
        .execution_options(synchronize_session=False)
    )
    return take.returning(Task.status) if returning else take


@functools.cache
def _release() -> Update:
    return (
        update(Task)
        .where(Task.id == bindparam("task_id"), Task.lease_holder == bindparam("holder"))
        .values(lease_holder=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )


def release_lease(session: Session, task_id: str, holder: str) -> Lease:
    """Give the lease back (a no-op unless `holder` holds it): the task is read only when `holder` did
    not hold it (404 for no such task, else the lease as it is)."""
    released = rows_changed(session, _release(), {"task_id": task_id, "holder": holder})
    if released == 1:
        return Lease(task_id, None, None)
    task = current(session, task_id)
    return Lease(task.id, task.lease_holder, task.lease_until)
