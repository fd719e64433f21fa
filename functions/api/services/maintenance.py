"""Self-repair the scheduler asks for: stuck RUNNING tasks and orphan workers.

Both are bounded (one batch per call) and safe to run twice at once. Candidates are found in one
short transaction; each is then handled in its own transaction behind a compare-and-set whose
WHERE repeats the candidate condition, so of two overlapping calls exactly one fails (or requeues)
a task, appends its event and queues its workers' deletes, and exactly one queues a worker's
delete (`workers.stop_requested_at` is set once). The other call counts the row as skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from functions.api.auth import Principal
from functions.api.db import Database
from functions.api.models import Task, Worker, WorkerMessage, utcnow
from functions.api.services import outbox, tasks
from functions.api.services.workers import ENDED
from shared.contracts import WORKER_COMMANDS, DeleteWorkerCommand, ProgressEvent
from shared.contracts.api import (
    CollectedWorker,
    OrphanCause,
    OrphanWorkerCollect,
    OrphanWorkerReport,
    ReapedTask,
    StuckTaskReap,
    StuckTaskReport,
    TaskStatus,
)

FINAL = [s.value for s in tasks.FINAL]


def duration(seconds: float) -> str:
    """'17 min' (whole minutes, rounded down) from two minutes on, seconds below."""
    whole = int(seconds)
    return f"{whole // 60} min" if whole >= 120 else f"{whole} s"


def _before(
    primary: InstrumentedAttribute[Any], fallback: InstrumentedAttribute[Any], cutoff: datetime
) -> ColumnElement[bool]:
    """coalesce(primary, fallback) < cutoff, spelled out (portable, and each side keeps its type)."""
    return or_(and_(primary.is_not(None), primary < cutoff), and_(primary.is_(None), fallback < cutoff))


def _since(
    primary: InstrumentedAttribute[Any], fallback: InstrumentedAttribute[Any], cutoff: datetime
) -> ColumnElement[bool]:
    """coalesce(primary, fallback) >= cutoff."""
    return or_(and_(primary.is_not(None), primary >= cutoff), and_(primary.is_(None), fallback >= cutoff))


def _busy() -> ColumnElement[bool]:
    """The worker is running a message: its wrapper polls only when idle, and the message has its own
    timeout (a worker that never comes back is stopped for its age by the orphan collector)."""
    return (
        select(WorkerMessage.id)
        .where(WorkerMessage.worker_id == Worker.id, WorkerMessage.status == "RUNNING")
        .exists()
    )


def _live_worker(task_id: Any, seen_cutoff: datetime) -> ColumnElement[bool]:
    """The task has a worker that is not going away and was seen lately or is busy."""
    return (
        select(Worker.id)
        .where(
            Worker.task_id == task_id,
            Worker.status.not_in(ENDED),
            Worker.stop_requested_at.is_(None),
            or_(_since(Worker.last_seen_at, Worker.started_at, seen_cutoff), _busy()),
        )
        .exists()
    )


def _active_child(task_id: Any) -> ColumnElement[bool]:
    """A task it waits for (a deploy's engineering fix task) is still going: it shows life for it."""
    child = aliased(Task)
    return (
        select(child.id)
        .where(
            child.params["parent_task_id"].as_string() == task_id,
            child.status.in_([s.value for s in tasks.ACTIVE]),
        )
        .exists()
    )


def _stuck(task_id: Any, cutoff: datetime, now: datetime) -> ColumnElement[bool]:
    """RUNNING, no heartbeat since `cutoff`, no graph driver holding its lease, no live worker, no
    live child task."""
    return and_(
        Task.status == TaskStatus.RUNNING.value,
        _before(Task.heartbeat_at, Task.started_at, cutoff),
        or_(Task.lease_until.is_(None), Task.lease_until < now),
        ~_live_worker(task_id, cutoff),
        ~_active_child(task_id),
    )


def request_stop(session: Session, worker_id: str, correlation_id: str | None, now: datetime) -> int | None:
    """Queue the worker's delete command once: the outbox id, or None if it ended or was asked already."""
    won = cast(
        CursorResult[Any],
        session.execute(
            update(Worker)
            .where(Worker.id == worker_id, Worker.status.not_in(ENDED), Worker.stop_requested_at.is_(None))
            .values(stop_requested_at=now)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if won != 1:
        return None
    extra = {"correlation_id": correlation_id} if correlation_id else {}
    return outbox.add(session, WORKER_COMMANDS, DeleteWorkerCommand(worker_id=worker_id, **extra)).id


# -- stuck tasks ---------------------------------------------------------------------------


def reap_stuck_tasks(
    db: Database, principal: Principal, request: StuckTaskReap
) -> tuple[StuckTaskReport, list[int]]:
    """Fail (or requeue, by policy) RUNNING tasks that stopped showing signs of life; returns the report
    and the outbox ids to publish (worker deletes, requeued task messages)."""
    now = utcnow()
    cutoff = now - timedelta(seconds=request.limit_s)
    with db.session() as session:
        candidates = list(
            session.execute(
                select(Task.id)
                .where(_stuck(Task.id, cutoff, now))
                .order_by(Task.started_at, Task.id)
                .limit(request.batch)
            ).scalars()
        )
        running = session.execute(
            select(func.count()).where(Task.status == TaskStatus.RUNNING.value)
        ).scalar_one()
    report = StuckTaskReport(
        examined=len(candidates), failed=0, requeued=0, workers_stopped=0, skipped=0, running=running
    )
    outbox_ids: list[int] = []
    for task_id in candidates:
        reaped = _reap_one(db, principal, task_id, request, cutoff, now, outbox_ids)
        if reaped is None:
            report.skipped += 1
            continue
        report.tasks.append(reaped)
        report.workers_stopped += len(reaped.workers_stopped)
        if reaped.action == "requeued":
            report.requeued += 1
        else:
            report.failed += 1
    return report, outbox_ids


def _reap_one(
    db: Database,
    principal: Principal,
    task_id: str,
    request: StuckTaskReap,
    cutoff: datetime,
    now: datetime,
    outbox_ids: list[int],
) -> ReapedTask | None:
    """One task, in its own transaction: None when it is no longer stuck or another caller got it first."""
    with db.session() as session:
        task = session.get(Task, task_id)
        last_sign = (task.heartbeat_at or task.started_at) if task is not None else None
        if last_sign is None:
            return None
        age = duration((now - last_sign).total_seconds())
        reason = f"no heartbeat for {age} (limit {duration(request.limit_s)})"
        won = cast(
            CursorResult[Any],
            session.execute(
                update(Task)
                .where(Task.id == task_id, _stuck(task_id, cutoff, now))
                .values(status=TaskStatus.FAILED.value, error=reason, finished_at=now)
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if won != 1:
            return None
        from shared.observability import count

        count("TasksFailed")
        task = session.get(Task, task_id, populate_existing=True)
        assert task is not None
        live = session.execute(
            select(Worker.id)
            .where(Worker.task_id == task_id, Worker.status.not_in(ENDED))
            .order_by(Worker.id)
        ).scalars()
        stopped, queued = [], []
        for worker_id in list(live):
            outbox_id = request_stop(session, worker_id, task.correlation_id, now)
            if outbox_id is not None:
                stopped.append(worker_id)
                queued.append(outbox_id)
        requeue = request.max_retries > 0 and task.attempt <= request.max_retries
        if requeue:
            message = (
                f"stuck: {reason}; requeued by the stuck-task reaper "
                f"(retry {task.attempt} of {request.max_retries})"
            )
            tasks.add_event(
                session,
                task,
                ProgressEvent(
                    type="progress", task_id=task_id, message=message, correlation_id=task.correlation_id
                ),
            )
            task, row = tasks.retry(session, principal, task_id)
            queued.append(row.id)
        else:
            tasks.add_event(
                session,
                task,
                ProgressEvent(
                    type="failed",
                    task_id=task_id,
                    message=f"failed by the stuck-task reaper: {reason}",
                    error=reason,
                    error_type="StuckTask",
                    correlation_id=task.correlation_id,
                ),
            )
            wake = tasks.wake_parent(session, task)
            if wake is not None:
                queued.append(wake.id)
        reaped = ReapedTask(
            task_id=task_id,
            action="requeued" if requeue else "failed",
            reason=reason,
            attempt=task.attempt,
            workers_stopped=stopped,
        )
    outbox_ids.extend(queued)  # only once committed
    return reaped


# -- orphan workers ------------------------------------------------------------------------


def _orphan(request: OrphanWorkerCollect, now: datetime) -> ColumnElement[bool]:
    ended_before = now - timedelta(seconds=request.ended_grace_s)
    task_ended = (
        select(Task.id)
        .where(
            Task.id == Worker.task_id,
            Task.status.in_(FINAL),
            or_(Task.finished_at.is_(None), Task.finished_at < ended_before),
        )
        .exists()
    )
    too_old = Worker.started_at < now - timedelta(seconds=request.max_lifetime_s)
    unseen = and_(
        _before(Worker.last_seen_at, Worker.started_at, now - timedelta(seconds=request.unseen_s)), ~_busy()
    )
    return and_(
        Worker.status.not_in(ENDED), Worker.stop_requested_at.is_(None), or_(task_ended, too_old, unseen)
    )


def _cause(
    session: Session, worker: Worker, task: Task | None, request: OrphanWorkerCollect, now: datetime
) -> tuple[OrphanCause, str] | None:
    """Why this worker should go (the same conditions as `_orphan`, on the row as read now)."""
    if task is not None and task.status in FINAL:
        ended_for = (now - task.finished_at).total_seconds() if task.finished_at else None
        if ended_for is None or ended_for > request.ended_grace_s:
            return "task_ended", f"its task {task.id} is {task.status}"
    age = (now - worker.started_at).total_seconds()
    if age > request.max_lifetime_s:
        return "too_old", f"running for {duration(age)} (max lifetime {duration(request.max_lifetime_s)})"
    unseen_for = (now - (worker.last_seen_at or worker.started_at)).total_seconds()
    if unseen_for > request.unseen_s:
        busy = session.execute(
            select(WorkerMessage.id)
            .where(WorkerMessage.worker_id == worker.id, WorkerMessage.status == "RUNNING")
            .limit(1)
        ).first()
        if busy is None:
            return (
                "unseen",
                f"its wrapper was not seen for {duration(unseen_for)} (limit {duration(request.unseen_s)})",
            )
    return None


def collect_orphan_workers(
    db: Database, request: OrphanWorkerCollect
) -> tuple[OrphanWorkerReport, list[int]]:
    """Queue one delete command for each worker whose task ended, that outlived its lifetime, or whose
    idle wrapper went silent; returns the report and the outbox ids to publish."""
    now = utcnow()
    with db.session() as session:
        candidates = list(
            session.execute(
                select(Worker.id)
                .where(_orphan(request, now))
                .order_by(Worker.started_at, Worker.id)
                .limit(request.batch)
            ).scalars()
        )
        live = session.execute(select(func.count()).where(Worker.status.not_in(ENDED))).scalar_one()
    report = OrphanWorkerReport(
        examined=len(candidates), stopped=0, task_ended=0, too_old=0, unseen=0, skipped=0, live=live
    )
    outbox_ids: list[int] = []
    for worker_id in candidates:
        collected = _collect_one(db, worker_id, request, now, outbox_ids)
        if collected is None:
            report.skipped += 1
            continue
        report.stopped += 1
        setattr(report, collected.cause, getattr(report, collected.cause) + 1)
        report.workers.append(collected)
    return report, outbox_ids


def _collect_one(
    db: Database, worker_id: str, request: OrphanWorkerCollect, now: datetime, outbox_ids: list[int]
) -> CollectedWorker | None:
    """One worker, in its own transaction: None when it is no orphan now or another caller asked first."""
    with db.session() as session:
        worker = session.get(Worker, worker_id)
        if worker is None:
            return None
        task = session.get(Task, worker.task_id) if worker.task_id else None
        found = _cause(session, worker, task, request, now)
        if found is None:
            return None
        outbox_id = request_stop(session, worker_id, task.correlation_id if task else None, now)
        if outbox_id is None:
            return None
    outbox_ids.append(outbox_id)
    cause, reason = found
    return CollectedWorker(worker_id=worker_id, task_id=worker.task_id, cause=cause, reason=reason)
