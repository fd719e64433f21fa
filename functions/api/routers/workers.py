"""/internal/workers (service scope) and /workers (people): worker records, messages, results."""

from __future__ import annotations

from typing import Annotated, get_args

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from sqlalchemy import select, update

from functions.api.errors import Conflict, Gone, NotFound, Unprocessable
from functions.api.models import Task as TaskRow
from functions.api.models import Worker as WorkerRow
from functions.api.models import WorkerMessage as WorkerMessageRow
from functions.api.models import utcnow
from functions.api.routers._common import created, principal, transaction
from functions.api.services import workers
from shared.contracts.api import (
    INT32_MAX,
    ErrorBody,
    Worker,
    WorkerActivityAccepted,
    WorkerDetail,
    WorkerMessage,
    WorkerMessageCreate,
    WorkerMessageResult,
    WorkerRecord,
    WorkerStatus,
    WorkerStopped,
    WorkerUpdate,
)

router = APIGatewayHttpRouter()
TAGS = ["workers"]
WorkerId = Annotated[str, Path(max_length=64)]


def _service() -> None:
    principal(router).require_service()


@router.post(
    "/internal/workers",
    summary="Record a worker (idempotent by id and by create request id)",
    tags=TAGS,
    responses={201: {"description": "Recorded"}, 200: {"description": "Already recorded (a redelivery)"}},
)
def record_worker(body: WorkerRecord) -> Response[WorkerDetail]:
    _service()
    try:
        workers.reply_queue(body.config)
    except ValueError as exc:
        raise Unprocessable(str(exc), ["config.reply_queue"]) from None
    with transaction() as session:
        existing = session.get(WorkerRow, body.id)
        if existing is None and body.create_request_id:
            existing = session.execute(
                select(WorkerRow).where(WorkerRow.create_request_id == body.create_request_id)
            ).scalar_one_or_none()
        if existing is not None:
            if existing.task_id != body.task_id:
                raise Conflict(f"worker {existing.id} is already recorded for another task", ["id"])
            return created(WorkerDetail.model_validate(existing), 200)
        if body.task_id and session.get(TaskRow, body.task_id) is None:
            raise NotFound(f"task {body.task_id!r} not found")
        row = WorkerRow(**body.model_dump(), started_at=utcnow())
        session.add(row)
        session.flush()
        return created(WorkerDetail.model_validate(row), 201)


@router.get(
    "/internal/workers/<worker_id>", summary="A worker with its config (what the wrapper runs)", tags=TAGS
)
def get_worker(worker_id: WorkerId) -> WorkerDetail:
    _service()
    with transaction() as session:
        return WorkerDetail.model_validate(workers.get(session, worker_id))


@router.patch(
    "/internal/workers/<worker_id>",
    summary="Update a worker's status (optionally compare-and-set)",
    tags=TAGS,
)
def update_worker(worker_id: WorkerId, body: WorkerUpdate) -> Worker:
    _service()
    with transaction() as session:
        row = workers.get(session, worker_id)
        if body.expected_status is not None:
            won = session.execute(
                update(WorkerRow)
                .where(WorkerRow.id == worker_id, WorkerRow.status == body.expected_status)
                .values(status=body.status)
                .execution_options(synchronize_session=False)
            ).rowcount
            session.refresh(row)
            if won != 1:
                raise Conflict(f"worker {worker_id} is {row.status}, not {body.expected_status}")
        elif row.status in workers.ENDED and body.status not in workers.ENDED:
            raise Conflict(f"worker {worker_id} already ended ({row.status})")
        changes = body.model_dump(exclude_unset=True, exclude={"expected_status"})
        for key, value in changes.items():
            setattr(row, key, value)
        if body.status in workers.ENDED and row.stopped_at is None:
            row.stopped_at = utcnow()
        session.flush()
        return Worker.model_validate(row)


@router.post(
    "/internal/workers/<worker_id>/stopped", summary="The worker ended: fail what it still owed", tags=TAGS
)
def worker_stopped(worker_id: WorkerId, body: WorkerStopped) -> Worker:
    _service()
    with transaction() as session:
        row = workers.get(session, worker_id)
        was_running = row.status not in workers.ENDED
        workers.mark_stopped(session, row, body.status, body.exit_code, body.reason)
        dto = Worker.model_validate(row)
    if was_running and dto.stopped_at:
        from shared.observability import seconds

        seconds("WorkerRunTime", (dto.stopped_at - dto.started_at).total_seconds())
    return dto


@router.post(
    "/internal/workers/<worker_id>/messages",
    summary="Queue a message or file for a worker (idempotent by request_id)",
    tags=TAGS,
    responses={201: {"description": "Queued"}, 200: {"description": "Already queued (same request_id)"}},
)
def send_message(worker_id: WorkerId, body: WorkerMessageCreate) -> Response[WorkerMessage]:
    _service()
    with transaction() as session:
        worker = workers.get(session, worker_id)
        message, _outbox_ids, is_new = workers.enqueue_message(session, worker, body.model_dump())
        dto = WorkerMessage.model_validate(message)
    return created(dto, 201 if is_new else 200)


@router.post(
    "/internal/workers/<worker_id>/messages/next",
    summary="The wrapper takes its next message (204: none; 410: the worker has ended)",
    tags=TAGS,
    responses={
        200: {"description": "The next message, now RUNNING"},
        204: {"description": "No message waits", "content": {}},
        410: {"description": "The worker has ended"},
    },
)
def next_message(worker_id: WorkerId) -> Response[WorkerMessage | None]:
    _service()
    with transaction() as session:
        worker = workers.get(session, worker_id)
        if worker.status in workers.ENDED:
            raise Gone(f"worker {worker_id} has ended ({worker.exit_reason or worker.status})")
        message = workers.claim_next(session, worker)
        if message is None:
            return Response(status_code=204, content_type="application/json", body=None)
        return created(WorkerMessage.model_validate(message), 200)


@router.post(
    "/internal/worker-messages/<message_id>/result",
    summary="The wrapper's answer to a message (409 if already answered)",
    tags=TAGS,
)
def message_result(
    message_id: Annotated[int, Path(ge=1, le=INT32_MAX)], body: WorkerMessageResult
) -> WorkerMessage:
    _service()
    with transaction() as session:
        message, _outbox_id = workers.finish_message(
            session, message_id, body.success, body.response, body.error, body.result
        )
        dto = WorkerMessage.model_validate(message)
    return dto


@router.post(
    "/internal/worker-messages/<message_id>/activity",
    summary="The agent is still working on a message: queue an activity response (409 unless RUNNING)",
    tags=TAGS,
    responses={
        202: {"description": "Accepted: an activity response is queued for the worker's reply queue"},
        409: {
            "description": "The message is not RUNNING, or the worker does not report activity",
            "content": {"application/json": {"model": ErrorBody}},
        },
    },
)
def message_activity(
    message_id: Annotated[int, Path(ge=1, le=INT32_MAX)],
) -> Response[WorkerActivityAccepted]:
    _service()
    with transaction() as session:
        message, queue = workers.report_activity(session, message_id)
        dto = WorkerActivityAccepted(message_id=message.id, worker_id=message.worker_id, reply_queue=queue)
    return created(dto, 202)


WORKER_STATUSES: tuple[str, ...] = get_args(WorkerStatus)


def _statuses(raw: str | None) -> list[str]:
    """`RUNNING` or `CREATED,STARTING,RUNNING`; an unknown one is a 422 that names it."""
    wanted = [part.strip() for part in (raw or "").split(",") if part.strip()]
    for value in wanted:
        if value not in WORKER_STATUSES:
            known = ", ".join(WORKER_STATUSES)
            raise Unprocessable(
                f"invalid request: status: unknown worker status {value!r} (known: {known})", ["status"]
            )
    return wanted


@router.get("/workers", summary="List workers (yours; all for admins), newest first, at most 500", tags=TAGS)
def list_workers(
    task_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[
        str | None,
        Query(max_length=100, description="One status, or several comma-separated: RUNNING,STARTING."),
    ] = None,
    name: Annotated[
        str | None, Query(max_length=128, description="Only workers whose config names them so.")
    ] = None,
) -> list[Worker]:
    caller = principal(router)
    statuses = _statuses(status)
    with transaction() as session:
        owner = None if caller.sees_all() else caller.user_id
        rows = workers.listing(session, owner, task_id=task_id, statuses=statuses, name=name)
        return [Worker.model_validate(w) for w in rows]


@router.get("/workers/<worker_id>/messages", summary="A worker's messages and their results", tags=TAGS)
def list_messages(worker_id: WorkerId) -> list[WorkerMessage]:
    caller = principal(router)
    with transaction() as session:
        worker = workers.get(session, worker_id)
        if not (caller.sees_all() or workers.visible_to(session, worker, caller.user_id)):
            raise NotFound(f"worker {worker_id!r} not found")
        rows = session.execute(
            select(WorkerMessageRow)
            .where(WorkerMessageRow.worker_id == worker.id)
            .order_by(WorkerMessageRow.id)
        ).scalars()
        return [WorkerMessage.model_validate(m) for m in rows]


@router.post(
    "/workers/<worker_id>/stop",
    summary="Ask the worker manager to stop a worker",
    tags=TAGS,
    responses={202: {"description": "Accepted: a delete command is queued"}},
)
def stop_worker(worker_id: WorkerId) -> Response[Worker]:
    from functions.api.services import outbox
    from shared.contracts import WORKER_COMMANDS, DeleteWorkerCommand

    caller = principal(router)
    with transaction() as session:
        worker = workers.get(session, worker_id)
        if not (caller.sees_all() or workers.visible_to(session, worker, caller.user_id)):
            raise NotFound(f"worker {worker_id!r} not found")
        if worker.status in workers.ENDED:
            raise Conflict(f"worker {worker_id} already ended ({worker.status})")
        outbox.add(session, WORKER_COMMANDS, DeleteWorkerCommand(worker_id=worker.id))
        dto = Worker.model_validate(worker)
    return created(dto, 202)
