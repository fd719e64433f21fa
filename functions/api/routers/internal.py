"""/internal: what consumers and workers do to tasks. Service scope only.

Every status change is a compare-and-set, so a redelivered message that tries to claim an
already claimed task gets 409 and does nothing.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from functions.api.errors import Conflict, NotFound
from functions.api.models import Task as TaskRow
from functions.api.models import utcnow
from functions.api.routers._common import created, principal, transaction
from functions.api.services import notifications, tasks
from shared.contracts.api import (
    EventAppend,
    NotificationClaim,
    NotificationRecord,
    Task,
    TaskClaim,
    TaskComplete,
    TaskEvent,
    TaskFail,
    TaskLease,
    TaskLeaseState,
    TaskNotification,
    TaskStatus,
    TaskWait,
)
from shared.observability import count, seconds

router = APIGatewayHttpRouter()
TAGS = ["internal"]
TaskId = Annotated[str, Path(max_length=64)]
S = TaskStatus


def _service() -> None:
    principal(router).require_service()


@router.post(
    "/internal/tasks/<task_id>/claim", summary="QUEUED -> RUNNING (409 if already claimed)", tags=TAGS
)
def claim(task_id: TaskId, body: TaskClaim) -> Task:
    _service()
    with transaction() as session:
        now = utcnow()
        task = tasks.transition(
            session, task_id, [S.QUEUED], S.RUNNING,
            started_at=now, heartbeat_at=now, attempt=TaskRow.attempt + 1, claimed_by=body.worker,
        )  # fmt: skip
        tasks.system_event(session, task, "started", f"started (attempt {task.attempt})")
        count("TasksStarted")
        return Task.model_validate(task)


@router.post("/internal/tasks/<task_id>/heartbeat", summary="I am still working on it", tags=TAGS)
def heartbeat(task_id: TaskId) -> Task:
    _service()
    with transaction() as session:
        task = tasks.transition(
            session, task_id, [S.RUNNING, S.WAITING_INPUT], S.RUNNING, heartbeat_at=utcnow()
        )
        return Task.model_validate(task)


@router.post("/internal/tasks/<task_id>/wait", summary="RUNNING -> WAITING_INPUT", tags=TAGS)
def wait_for_input(task_id: TaskId, body: TaskWait) -> Task:
    _service()
    with transaction() as session:
        task = tasks.transition(session, task_id, [S.RUNNING], S.WAITING_INPUT, heartbeat_at=utcnow())
        tasks.system_event(session, task, "progress", body.reason)
        return Task.model_validate(task)


@router.post("/internal/tasks/<task_id>/resume", summary="WAITING_INPUT -> RUNNING", tags=TAGS)
def resume(task_id: TaskId) -> Task:
    _service()
    with transaction() as session:
        task = tasks.transition(session, task_id, [S.WAITING_INPUT], S.RUNNING, heartbeat_at=utcnow())
        return Task.model_validate(task)


@router.post("/internal/tasks/<task_id>/complete", summary="RUNNING -> COMPLETED with the result", tags=TAGS)
def complete(task_id: TaskId, body: TaskComplete) -> Task:
    _service()
    with transaction() as session:
        task = tasks.transition(
            session, task_id, [S.RUNNING], S.COMPLETED, result=body.result, finished_at=utcnow()
        )
        count("TasksCompleted")
        if task.started_at and task.finished_at:
            seconds("TaskDuration", (task.finished_at - task.started_at).total_seconds())
        return Task.model_validate(task)


@router.post("/internal/tasks/<task_id>/fail", summary="-> FAILED with the reason", tags=TAGS)
def fail(task_id: TaskId, body: TaskFail) -> Task:
    _service()
    with transaction() as session:
        task = tasks.transition(
            session, task_id, [S.QUEUED, S.RUNNING, S.WAITING_INPUT], S.FAILED,
            error=body.error, result=body.result, finished_at=utcnow(),
        )  # fmt: skip
        count("TasksFailed")
        return Task.model_validate(task)


@router.post(
    "/internal/tasks/<task_id>/events",
    summary="Append progress events",
    tags=TAGS,
    responses={201: {"description": "Appended"}},
)
def append_events(task_id: TaskId, body: EventAppend) -> Response[list[TaskEvent]]:
    _service()
    with transaction() as session:
        task = session.get(TaskRow, task_id)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        rows = tasks.append_events(session, task, [e.model_dump(exclude_unset=True) for e in body.events])
        return created([TaskEvent.model_validate(r) for r in rows], 201)


@router.post(
    "/internal/tasks/<task_id>/lease", summary="Take (or renew) the task's lease; 409 if held", tags=TAGS
)
def take_lease(task_id: TaskId, body: TaskLease) -> TaskLeaseState:
    from datetime import timedelta

    from sqlalchemy import or_, update

    _service()
    with transaction() as session:
        now = utcnow()
        won = session.execute(
            update(TaskRow)
            .where(TaskRow.id == task_id,
                   or_(TaskRow.lease_until.is_(None), TaskRow.lease_until < now, TaskRow.lease_holder == body.holder))
            .values(lease_holder=body.holder, lease_until=now + timedelta(seconds=body.seconds))
            .execution_options(synchronize_session=False)
        ).rowcount  # fmt: skip
        task = session.get(TaskRow, task_id, populate_existing=True)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        if won != 1:
            raise Conflict(f"task {task_id} is leased by {task.lease_holder} until {task.lease_until}")
        return TaskLeaseState(
            task_id=task.id, holder=task.lease_holder, until=task.lease_until, acquired=True
        )


@router.delete("/internal/tasks/<task_id>/lease", summary="Give the lease back", tags=TAGS)
def release_lease(task_id: TaskId, holder: Annotated[str, Query(max_length=200)]) -> TaskLeaseState:
    from sqlalchemy import update

    _service()
    with transaction() as session:
        session.execute(
            update(TaskRow)
            .where(TaskRow.id == task_id, TaskRow.lease_holder == holder)
            .values(lease_holder=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        task = session.get(TaskRow, task_id, populate_existing=True)
        if task is None:
            raise NotFound(f"task {task_id!r} not found")
        return TaskLeaseState(
            task_id=task.id, holder=task.lease_holder, until=task.lease_until, acquired=False
        )


@router.post(
    "/internal/tasks/<task_id>/notification/claim",
    summary="Claim the task's Telegram status message (creates its row); 409 while another holds it",
    tags=TAGS,
    responses={422: {"description": "The task's owner has no Telegram id"}},
)
def claim_notification(task_id: TaskId, body: NotificationClaim) -> TaskNotification:
    _service()
    with transaction() as session:
        row = notifications.claim(session, task_id, body.holder, body.seconds)
        return TaskNotification.model_validate(row)


@router.put(
    "/internal/tasks/<task_id>/notification",
    summary="Record what Telegram accepted (status message id / text, final sent once); 409 unless held",
    tags=TAGS,
)
def record_notification(task_id: TaskId, body: NotificationRecord) -> TaskNotification:
    _service()
    with transaction() as session:
        return TaskNotification.model_validate(notifications.record(session, task_id, body))


@router.delete(
    "/internal/tasks/<task_id>/notification/claim", summary="Give the notification claim back", tags=TAGS
)
def release_notification(task_id: TaskId, holder: Annotated[str, Query(max_length=200)]) -> TaskNotification:
    _service()
    with transaction() as session:
        return TaskNotification.model_validate(notifications.release(session, task_id, holder))


@router.post("/internal/outbox/sweep", summary="Publish outbox rows older than a few seconds", tags=TAGS)
def sweep_outbox() -> dict[str, int]:
    from datetime import timedelta

    from functions.api.deps import get_deps
    from functions.api.services import idempotency, outbox

    _service()
    deps = get_deps()
    report = outbox.dispatch(deps.db, deps.queue, min_age=timedelta(seconds=5))
    pruned = outbox.prune_sent(deps.db)
    with deps.db.session() as session:  # expired Idempotency-Keys go with the sent messages
        pruned += idempotency.prune(session, timedelta(seconds=deps.settings.idempotency_window_s))
    return {"claimed": report.claimed, "sent": report.sent, "failed": report.failed, "pruned": pruned}
