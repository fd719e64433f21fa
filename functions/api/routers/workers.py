"""/internal/workers (service scope) and /workers (people): worker records, messages, results."""

from __future__ import annotations

from typing import Annotated, get_args

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api import worker_tokens
from functions.api.deps import get_deps
from functions.api.errors import Unprocessable
from functions.api.routers._common import (
    act_for,
    created,
    new_router,
    own_worker,
    principal,
    service_or_worker,
    transaction,
)
from functions.api.services import worker_access, workers
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
    WorkerSecrets,
    WorkerSecretsRequest,
    WorkerSessionAccess,
    WorkerSessionArchive,
    WorkerSessionRequest,
    WorkerStatus,
    WorkerStopped,
    WorkerToken,
    WorkerTokenRequest,
    WorkerUpdate,
)

router = new_router()
TAGS = ["workers"]
WorkerId = Annotated[str, Path(max_length=64)]


def _service() -> None:
    principal(router).require_service()


@router.post(
    "/internal/workers",
    summary="Record a worker (idempotent by id and by create request id)",
    tags=TAGS,
    responses={
        201: {"description": "Recorded"},
        200: {"description": "Already recorded (a redelivery)"},
        429: {
            "description": "The person the worker works for has workers_per_user live workers already",
            "content": {"application/json": {"model": ErrorBody}},
        },
    },
)
def record_worker(body: WorkerRecord) -> Response[WorkerDetail]:
    _service()
    try:
        workers.reply_queue(body.config)
    except ValueError as exc:
        raise Unprocessable(str(exc), ["config.reply_queue"]) from None
    with transaction() as session:
        row, is_new = workers.record(session, body, get_deps().settings)
        return created(WorkerDetail.model_validate(row), 201 if is_new else 200)


@router.get(
    "/internal/workers/<worker_id>", summary="A worker with its config (what the wrapper runs)", tags=TAGS
)
def get_worker(worker_id: WorkerId) -> WorkerDetail:
    service_or_worker(router, worker_id)
    with transaction() as session:
        return WorkerDetail.model_validate(workers.get(session, worker_id))


@router.patch(
    "/internal/workers/<worker_id>",
    summary="Update a worker's status (optionally compare-and-set)",
    tags=TAGS,
)
def update_worker(worker_id: WorkerId, body: WorkerUpdate) -> Worker:
    service_or_worker(router, worker_id)
    with transaction() as session:
        return Worker.model_validate(workers.change(session, worker_id, body))


@router.post(
    "/internal/workers/<worker_id>/stopped", summary="The worker ended: fail what it still owed", tags=TAGS
)
def worker_stopped(worker_id: WorkerId, body: WorkerStopped) -> Worker:
    service_or_worker(router, worker_id)
    with transaction() as session:
        row, was_running = workers.stopped(session, worker_id, body)
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
        message, is_new = workers.send(session, worker_id, body)
        dto = WorkerMessage.model_validate(message)
    if is_new and dto.status == "PENDING":
        get_deps().wake_worker(worker_id)  # committed: its wrapper takes it now, not at its next timed ask
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
    service_or_worker(router, worker_id)
    with transaction() as session:
        message = workers.take_next(session, worker_id)
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
    caller = service_or_worker(router)
    with transaction() as session:
        act_for(caller, workers.message_worker(session, message_id))
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
    caller = service_or_worker(router)
    with transaction() as session:
        act_for(caller, workers.message_worker(session, message_id))
        message, queue = workers.report_activity(session, message_id)
        dto = WorkerActivityAccepted(message_id=message.id, worker_id=message.worker_id, reply_queue=queue)
    return created(dto, 202)


@router.post(
    "/internal/workers/<worker_id>/token",
    summary="Mint the worker's per-task token (replaces its previous one); the only time it is shown",
    tags=TAGS,
    responses={201: {"description": "Minted"}, 409: {"description": "The worker has ended"}},
)
def issue_token(worker_id: WorkerId, body: WorkerTokenRequest) -> Response[WorkerToken]:
    _service()
    with transaction() as session:
        if body.claim_start:
            workers.change(session, worker_id, WorkerUpdate(status="STARTING", expected_status="CREATED"))
        row, token = worker_tokens.mint(session, worker_id, body.ttl_s)
        assert row.token_expires_at is not None  # mint just set it
        dto = WorkerToken(worker_id=row.id, token=token, expires_at=row.token_expires_at)
    return created(dto, 201)


@router.post(
    "/internal/workers/<worker_id>/secrets",
    summary="The worker's own token: the values of secret references its job names (403 for any other)",
    tags=TAGS,
)
def resolve_secrets(worker_id: WorkerId, body: WorkerSecretsRequest) -> WorkerSecrets:
    own_worker(router, worker_id)
    with transaction() as session:
        values = worker_access.resolve_secrets(session, worker_id, body.refs, get_deps().secrets)
    return WorkerSecrets(values=values)


@router.post(
    "/internal/workers/<worker_id>/session",
    summary="The worker's own token: where to load or save its conversation's session archive",
    tags=TAGS,
    responses={404: {"description": "The worker has no conversation session"}},
)
def session_access(worker_id: WorkerId, body: WorkerSessionRequest) -> WorkerSessionAccess:
    own_worker(router, worker_id)
    with transaction() as session:
        return worker_access.session_access(session, worker_id, body.op, get_deps().sessions)


@router.get(
    "/internal/workers/<worker_id>/session/archive",
    summary="The worker's own token: its session archive (base64; null when none) from a store without URLs",
    tags=TAGS,
)
def load_session(worker_id: WorkerId) -> WorkerSessionArchive:
    own_worker(router, worker_id)
    with transaction() as session:
        data_b64 = worker_access.load_archive(session, worker_id, get_deps().sessions)
    return WorkerSessionArchive(data_b64=data_b64)


@router.put(
    "/internal/workers/<worker_id>/session/archive",
    summary="The worker's own token: save its session archive (base64) to a store without URLs",
    tags=TAGS,
    responses={
        204: {"description": "Saved", "content": {}},
        413: {"description": "Larger than a session may be"},
    },
)
def save_session(worker_id: WorkerId, body: WorkerSessionArchive) -> Response[None]:
    own_worker(router, worker_id)
    with transaction() as session:
        worker_access.save_archive(session, worker_id, get_deps().sessions, body.data_b64)
    return Response(status_code=204, content_type="application/json", body=None)


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
        return [WorkerMessage.model_validate(m) for m in workers.messages_of(session, caller, worker_id)]


@router.post(
    "/workers/<worker_id>/stop",
    summary="Ask the worker manager to stop a worker",
    tags=TAGS,
    responses={202: {"description": "Accepted: a delete command is queued"}},
)
def stop_worker(worker_id: WorkerId) -> Response[Worker]:
    caller = principal(router)
    with transaction() as session:
        dto = Worker.model_validate(workers.stop(session, caller, worker_id))
    return created(dto, 202)
