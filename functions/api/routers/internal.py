"""/internal: what consumers and workers do to tasks. Service scope only (a worker token may append
progress events to its own task).

Every status change is a compare-and-set, so a redelivered message that tries to claim an
already claimed task gets 409 and does nothing.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api.deps import get_deps
from functions.api.routers._common import (
    created,
    new_router,
    principal,
    service_or_worker,
    transaction,
)
from functions.api.services import notifications, outbox, task_runs, workers
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
    TaskWait,
)

router = new_router()
TAGS = ["internal"]
TaskId = Annotated[str, Path(max_length=64)]


def _service() -> None:
    principal(router).require_service()


@router.post(
    "/internal/tasks/<task_id>/claim", summary="QUEUED -> RUNNING (409 if already claimed)", tags=TAGS
)
def claim(task_id: TaskId, body: TaskClaim) -> Task:
    _service()
    with transaction() as session:
        return Task.model_validate(task_runs.claim(session, task_id, body.worker))


@router.post("/internal/tasks/<task_id>/heartbeat", summary="I am still working on it", tags=TAGS)
def heartbeat(task_id: TaskId) -> Task:
    _service()
    with transaction() as session:
        return Task.model_validate(task_runs.heartbeat(session, task_id))


@router.post("/internal/tasks/<task_id>/wait", summary="RUNNING -> WAITING_INPUT", tags=TAGS)
def wait_for_input(task_id: TaskId, body: TaskWait) -> Task:
    _service()
    with transaction() as session:
        return Task.model_validate(task_runs.wait_for_input(session, task_id, body.reason))


@router.post("/internal/tasks/<task_id>/resume", summary="WAITING_INPUT -> RUNNING", tags=TAGS)
def resume(task_id: TaskId) -> Task:
    _service()
    with transaction() as session:
        return Task.model_validate(task_runs.resume(session, task_id))


@router.post("/internal/tasks/<task_id>/complete", summary="RUNNING -> COMPLETED with the result", tags=TAGS)
def complete(task_id: TaskId, body: TaskComplete) -> Task:
    _service()
    with transaction() as session:
        return Task.model_validate(task_runs.complete(session, task_id, body.result))


@router.post("/internal/tasks/<task_id>/fail", summary="-> FAILED with the reason", tags=TAGS)
def fail(task_id: TaskId, body: TaskFail) -> Task:
    _service()
    with transaction() as session:
        return Task.model_validate(task_runs.fail(session, task_id, body.error, body.result, body.reason))


@router.post(
    "/internal/tasks/<task_id>/events",
    summary="Append progress events",
    tags=TAGS,
    responses={201: {"description": "Appended"}},
)
def append_events(task_id: TaskId, body: EventAppend) -> Response[list[TaskEvent]]:
    caller = service_or_worker(router)  # a worker token: for its own task only
    raw = [e.model_dump(exclude_unset=True) for e in body.events]
    with transaction() as session:
        workers.act_for_task(session, caller, task_id)
        rows = task_runs.append_events(session, task_id, raw)
        return created([TaskEvent.model_validate(r) for r in rows], 201)


@router.post(
    "/internal/tasks/<task_id>/lease", summary="Take (or renew) the task's lease; 409 if held", tags=TAGS
)
def take_lease(task_id: TaskId, body: TaskLease) -> TaskLeaseState:
    _service()
    with transaction() as session:
        lease = task_runs.take_lease(session, task_id, body.holder, body.seconds)
        return TaskLeaseState(
            task_id=lease.task_id, holder=lease.holder, until=lease.until, acquired=True, status=lease.status
        )


@router.delete("/internal/tasks/<task_id>/lease", summary="Give the lease back", tags=TAGS)
def release_lease(task_id: TaskId, holder: Annotated[str, Query(max_length=200)]) -> TaskLeaseState:
    _service()
    with transaction() as session:
        lease = task_runs.release_lease(session, task_id, holder)
        return TaskLeaseState(task_id=lease.task_id, holder=lease.holder, until=lease.until, acquired=False)


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
    _service()
    deps = get_deps()
    return outbox.sweep(deps.db, deps.queue, deps.settings.idempotency_window_s)
