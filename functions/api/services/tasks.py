"""Tasks: creation with its outbox message, listing, and compare-and-set status transitions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import rows_changed
from functions.api.errors import Conflict, NotFound, Unprocessable
from functions.api.models import Gate, OutboxMessage, Project, Task, TaskEvent, User, new_id, utcnow
from functions.api.services import lookup, notifications, outbox, pages
from shared.contracts import (
    DEPLOY_QUEUE,
    ENGINEERING_QUEUE,
    DeployMessage,
    EngineeringMessage,
    ProgressEvent,
    progress_stream,
)
from shared.contracts.api import TaskStatus, TaskType
from shared.contracts.dto import ACTIVE_STATUSES
from shared.contracts.payloads import EngineeringParams, TaskParams, params_as, parse_params

ACTIVE = ACTIVE_STATUSES
FINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def _telegram_id(session: Session, user_id: str) -> int:
    user = session.get(User, user_id)
    return (user.telegram_id or 0) if user else 0


def _message_for(
    session: Session, task: Task, telegram_id: int | None = None
) -> tuple[str, EngineeringMessage | DeployMessage]:
    fields: dict[str, Any] = {
        "task_id": task.id,
        "project_id": task.project_id,
        "user_id": telegram_id if telegram_id is not None else _telegram_id(session, task.user_id),
        "correlation_id": task.correlation_id,
        "callback_stream": progress_stream(task.id),
        "deploy_fix_attempt": _fix_attempt(task),
    }
    if task.type == TaskType.ENGINEERING:
        return ENGINEERING_QUEUE, EngineeringMessage(**fields)
    if task.type in (TaskType.DEPLOY, TaskType.UNDEPLOY):
        return DEPLOY_QUEUE, DeployMessage(**fields)
    raise Unprocessable(f"tasks of type {task.type} are not queued by the API")


def _fix_params(task: Task) -> EngineeringParams | None:
    """An engineering task's params (its place in the deploy -> engineering fix loop); None otherwise."""
    if task.type != TaskType.ENGINEERING.value:
        return None
    return params_as(EngineeringParams, task.params)


def _fix_attempt(task: Task) -> int:
    params = _fix_params(task)
    return params.deploy_fix_attempt if params else 0


def valid_params(task_type: TaskType, params: Mapping[str, Any] | TaskParams) -> dict[str, Any]:
    """The params of a new task, checked against its type's model: a 422 names the bad field.
    Stored as given (only the keys set), so readers see what they saw before the models."""
    try:
        model = parse_params(task_type, params)
    except ValidationError as exc:
        fields = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
        raise Unprocessable(
            f"{task_type.value} params are not valid: {exc.errors()[0]['msg']}", fields
        ) from None
    return model.model_dump(mode="json", exclude_unset=True)


def _enqueue(session: Session, task: Task, telegram_id: int | None = None) -> OutboxMessage:
    queue, message = _message_for(session, task, telegram_id)
    return outbox.add(session, queue, message, task_id=task.id)


def create(
    session: Session,
    principal: Principal,
    project: Project,
    task_type: TaskType,
    spec: str | None,
    params: Mapping[str, Any] | TaskParams,
    correlation_id: str | None = None,
) -> tuple[Task, OutboxMessage]:
    """The task and its outbox row, in the caller's transaction: both or neither. A `correlation_id`
    given by the caller identifies the task for a repeat of the same request (a server's recovery)."""
    stored_params = valid_params(task_type, params)
    if project.status == "archived":
        raise Conflict(f"project {project.name!r} is archived")
    task = Task(
        id=new_id(),
        project_id=project.id,
        user_id=principal.user_id,
        type=task_type.value,
        status=TaskStatus.QUEUED.value,
        spec=spec,
        params=stored_params,
        attempt=0,
        correlation_id=correlation_id or new_id(),
        created_at=utcnow(),
    )
    # the task's user is the caller, whose key carries their Telegram id (0: none): no query for it
    telegram_id = (principal.telegram_id or 0) if principal.worker_id is None else None
    queue, message = _message_for(session, task, telegram_id)
    return task, outbox.add_with(session, task, queue, message, task_id=task.id)  # both rows in one INSERT


def active_of_type(session: Session, project_id: str, task_type: TaskType) -> Task | None:
    return session.execute(
        select(Task)
        .where(
            Task.project_id == project_id,
            Task.type == task_type.value,
            Task.status.in_([s.value for s in ACTIVE]),
        )
        .limit(1)
    ).scalar_one_or_none()


def list_tasks(
    session: Session,
    principal: Principal,
    project_id: str | None,
    status: TaskStatus | None,
    task_type: TaskType | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Task], str | None]:
    stmt = select(Task)
    if not principal.sees_all():
        stmt = stmt.where(Task.user_id == principal.user_id)
    if project_id:
        stmt = stmt.where(Task.project_id == lookup.project(session, principal, project_id).id)
    if status:
        stmt = stmt.where(Task.status == status.value)
    if task_type:
        stmt = stmt.where(Task.type == task_type.value)
    if cursor:
        created, last_id = pages.decode_cursor(cursor)
        stmt = stmt.where(or_(Task.created_at < created, and_(Task.created_at == created, Task.id < last_id)))
    rows = list(
        session.execute(stmt.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit + 1)).scalars()
    )
    return pages.page_of(rows, limit)


def events(session: Session, task: Task, after: int, limit: int, latest: bool = False) -> list[TaskEvent]:
    """Events after `after` in order: the first `limit` of them, or with `latest` the last `limit`."""
    stmt = select(TaskEvent).where(TaskEvent.task_id == task.id, TaskEvent.seq > after)
    if latest:
        newest_first = session.execute(stmt.order_by(TaskEvent.seq.desc()).limit(limit)).scalars()
        return list(reversed(list(newest_first)))
    return list(session.execute(stmt.order_by(TaskEvent.seq).limit(limit)).scalars())


def transition(
    session: Session,
    task_id: str,
    allowed_from: Iterable[TaskStatus],
    to: TaskStatus,
    **values: Any,
) -> Task:
    """Compare-and-set: only one caller moves a task out of a given status."""
    allowed = [s.value for s in allowed_from]
    won = rows_changed(
        session,
        update(Task)
        .where(Task.id == task_id, Task.status.in_(allowed))
        .values(status=to.value, **values)
        .execution_options(synchronize_session=False),
    )
    task = session.get(Task, task_id, populate_existing=True)
    if task is None:
        raise NotFound(f"task {task_id!r} not found")
    if won != 1:
        raise Conflict(
            f"task {task_id} is {task.status}; it cannot become {to.value} (allowed from: {', '.join(allowed)})"
        )
    if to in FINAL:
        wake_parent(session, task)
        # not stored (the transition is the record): it wakes the Telegram notifier for the outcome
        kind = "completed" if to == TaskStatus.COMPLETED else "failed"
        notifications.publish(
            session,
            task,
            ProgressEvent(type=kind, task_id=task.id, message=to.value.lower(), error=task.error),
        )
    return task


def wake(session: Session, task: Task, request_id: str) -> OutboxMessage:
    """Tell the graph driving `task` (waiting, not claimable) that something it waits for happened:
    its job message again, under `request_id`; the consumer resumes only a graph waiting for it."""
    queue, message = _message_for(session, task)
    message.request_id = request_id
    return outbox.add(session, queue, message, task_id=task.id)


def wake_parent(session: Session, task: Task) -> OutboxMessage | None:
    """A fix task started by a deploy (deploy -> engineering loop) ended: its deploy goes on.
    Same transaction as the transition, so the wake-up is never lost and never sent twice."""
    params = _fix_params(task)
    if params is None or not params.parent_task_id:
        return None
    parent = session.get(Task, params.parent_task_id)
    if parent is None or parent.status not in (TaskStatus.RUNNING.value, TaskStatus.WAITING_INPUT.value):
        return None
    return wake(session, parent, f"{parent.id}:fix:{params.deploy_fix_attempt}")


def wake_waiting_deploys(session: Session, project_id: str, reason: str) -> int:
    """A secret was set: every deploy of the project parked in WAITING_INPUT looks again."""
    waiting = session.execute(
        select(Task).where(
            Task.project_id == project_id,
            Task.type == TaskType.DEPLOY.value,
            Task.status == TaskStatus.WAITING_INPUT.value,
        )
    ).scalars()
    woken = 0
    for task in list(waiting):
        system_event(session, task, "progress", reason)
        wake(session, task, f"{task.id}:secrets:{new_id()[:8]}")
        woken += 1
    return woken


class EventContext:
    """What storing a task's events reads once per request, not per event: the progress the task has
    reached and its owner's Telegram id (None: none). Either left at `notifications.ASK` is read when needed."""

    def __init__(self, reached: Any = notifications.ASK, chat: Any = notifications.ASK) -> None:
        self.reached = reached
        self.chat = chat


def add_event(
    session: Session, task: Task, event: ProgressEvent, context: EventContext | None = None
) -> TaskEvent:
    known = context or EventContext()
    if event.progress_pct is not None:
        # a task's progress never goes back (a deploy's fix round redeploys at a lower step's percentage)
        if known.reached is notifications.ASK:
            reached = session.execute(
                select(func.max(TaskEvent.progress_pct)).where(TaskEvent.task_id == task.id)
            ).scalar_one_or_none()
        else:
            reached = known.reached
        if reached is not None and reached > event.progress_pct:
            event = event.model_copy(update={"progress_pct": reached})
        if context is not None:
            context.reached = event.progress_pct  # this batch's next event compares with this one
    row = TaskEvent(
        task_id=task.id,
        type=event.type,
        message=event.message,
        progress_pct=event.progress_pct,
        current_step=event.current_step,
        error=event.error,
        error_type=event.error_type,
        request_id=event.request_id,
        timestamp=event.timestamp,
    )
    session.add(row)
    notifications.publish(session, task, event, chat=known.chat)
    return row


def append_events(
    session: Session, task: Task, raw_events: list[dict[str, Any]], context: EventContext | None = None
) -> list[TaskEvent]:
    rows = []
    for index, raw in enumerate(raw_events):
        try:
            event = ProgressEvent.model_validate({**raw, "task_id": task.id})
        except ValidationError as exc:
            fields = [f"events.{index}." + ".".join(str(p) for p in e["loc"]) for e in exc.errors()]
            raise Unprocessable(
                f"event {index} is not a ProgressEvent: {exc.errors()[0]['msg']}", fields
            ) from None
        rows.append(add_event(session, task, event, context))
    if task.status == TaskStatus.RUNNING.value:
        task.heartbeat_at = utcnow()
    session.flush()
    return rows


def system_event(session: Session, task: Task, kind: str, message: str, error: str | None = None) -> None:
    add_event(session, task, ProgressEvent(type=kind, task_id=task.id, message=message, error=error))


def cancel(session: Session, principal: Principal, task_id: str) -> tuple[Task, list[int]]:
    """CANCELLED, and a delete command for each of its live workers (returns their outbox ids)."""
    from functions.api.models import Worker
    from shared.contracts import WORKER_COMMANDS, DeleteWorkerCommand

    lookup.task(session, principal, task_id)
    task = transition(session, task_id, ACTIVE, TaskStatus.CANCELLED, finished_at=utcnow())
    system_event(session, task, "failed", "cancelled by the user", error="cancelled")
    close_gates(session, task.id, principal.user_id)
    live = session.execute(
        select(Worker.id).where(Worker.task_id == task.id, Worker.status.not_in(("STOPPED", "FAILED")))
    ).scalars()
    outbox_ids = [
        outbox.add(
            session, WORKER_COMMANDS, DeleteWorkerCommand(worker_id=w, correlation_id=task.correlation_id)
        ).id
        for w in list(live)
    ]
    return task, outbox_ids


def close_gates(session: Session, task_id: str, by: str | None = None) -> int:
    """A task that ends while it waits at a gate (cancelled, failed): its pending gate is cancelled in the
    same transaction, so nobody answers it later and the expiry passes it by."""
    return rows_changed(
        session,
        update(Gate)
        .where(Gate.task_id == task_id, Gate.status == "pending")
        .values(status="cancelled", answered_by=by, answered_at=utcnow())
        .execution_options(synchronize_session=False),
    )


def retry(session: Session, principal: Principal, task_id: str) -> tuple[Task, OutboxMessage]:
    lookup.task(session, principal, task_id)
    task = transition(
        session,
        task_id,
        (TaskStatus.FAILED, TaskStatus.CANCELLED),
        TaskStatus.QUEUED,
        error=None,
        failure_reason=None,
        result=None,
        started_at=None,
        finished_at=None,
        heartbeat_at=None,
        claimed_by=None,
    )
    # the retried run gets its own final message in Telegram (the status message is edited on)
    from functions.api.models import TaskNotification

    session.execute(
        update(TaskNotification)
        .where(TaskNotification.task_id == task.id)
        .values(final_sent_at=None)
        .execution_options(synchronize_session=False)
    )
    system_event(session, task, "progress", f"retry requested (attempt {task.attempt + 1})")
    return task, _enqueue(session, task)
