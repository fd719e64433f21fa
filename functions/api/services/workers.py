"""Workers and their messages. Every message gets exactly one response on worker:responses (or the
worker's reply queue); while it runs, a worker that reports activity adds ephemeral `activity` ones.

Responses go through the outbox in the same transaction as the status change that causes them,
and every status change is compare-and-set, so a repeated result, a late "stopped" report and
the result of the wrapper itself can never produce two responses for one message.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, Update, bindparam, case, select, update
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import rows_changed
from functions.api.deps import get_deps
from functions.api.errors import Conflict, Forbidden, Gone, NotFound
from functions.api.models import OutboxMessage, Project, Task, Worker, WorkerMessage, utcnow
from functions.api.services import budgets, limits, outbox, usage
from functions.api.settings import ApiSettings
from shared.contracts import (
    PO_RESPONSES,
    WORKER_COMMANDS,
    WORKER_RESPONSES,
    DeleteWorkerCommand,
    SendFileResponse,
    SendMessageResponse,
    WorkerActivity,
)
from shared.contracts.api import WorkerMessageCreate, WorkerRecord, WorkerStopped, WorkerUpdate

ENDED = ("STOPPED", "FAILED")
OPEN = ("PENDING", "RUNNING")
WORKER_ONLY_OWN = "a worker token may only act for its own worker"
REPLY_QUEUES = (WORKER_RESPONSES, PO_RESPONSES)
"""Where a worker's config may send its responses (`reply_queue`); anything else is refused."""


BUDGETED_KINDS = ("message", "command")
"""Message kinds that run something (an agent, a command) and so carry the budget left (`budget_usd`)."""


def reply_queue(config: dict[str, Any] | None) -> str:
    """The logical queue a worker's responses go to (worker:responses unless its config says otherwise)."""
    queue = (config or {}).get("reply_queue") or WORKER_RESPONSES
    if queue not in REPLY_QUEUES:
        raise ValueError(f"reply_queue must be one of {', '.join(REPLY_QUEUES)}")
    return str(queue)


def get(session: Session, worker_id: str) -> Worker:
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id!r} not found")
    return worker


def _respond(
    session: Session,
    message: WorkerMessage,
    success: bool,
    response: str | None,
    error: str | None,
    result: dict[str, Any] | None,
) -> OutboxMessage:
    fields: dict[str, Any] = {
        "request_id": message.request_id,
        "success": success,
        "worker_id": message.worker_id,
        "error": error,
    }
    if message.correlation_id:
        fields["correlation_id"] = message.correlation_id
    if message.kind == "file":
        reply: SendMessageResponse | SendFileResponse = SendFileResponse(**fields)
    else:
        reply = SendMessageResponse(**fields, response=response, result=result)
    worker = session.get(Worker, message.worker_id)
    return outbox.add(session, reply_queue(worker.config if worker is not None else None), reply)


def finish_message(
    session: Session,
    message_id: int,
    success: bool,
    response: str | None,
    error: str | None,
    result: dict[str, Any] | None,
    allowed: tuple[str, ...] = ("RUNNING",),
) -> tuple[WorkerMessage, int]:
    """RUNNING -> DONE | FAILED, and its response, once."""
    won = rows_changed(
        session,
        update(WorkerMessage)
        .where(WorkerMessage.id == message_id, WorkerMessage.status.in_(allowed))
        .values(status="DONE" if success else "FAILED", result=result, error=error, finished_at=utcnow())
        .execution_options(synchronize_session=False),
    )
    message = session.get(WorkerMessage, message_id, populate_existing=True)
    if message is None:
        raise NotFound(f"worker message {message_id} not found")
    if won != 1:
        raise Conflict(f"worker message {message_id} is already {message.status}")
    if result is not None:  # what the agent cost, in the same transaction (once: this call won)
        worker = session.get(Worker, message.worker_id)
        if worker is not None:
            usage.record_agent_run(
                session, message.id, worker.id, _payer(session, worker), result, worker.agent
            )
    return message, _respond(session, message, success, response, error, result).id


def _payer(session: Session, worker: Worker) -> usage.Payer:
    """Whom a worker's spend counts against: its task's person, project and task; a Product Owner
    worker's conversation person (no project, no task)."""
    if worker.task_id:
        task = session.get(Task, worker.task_id)
        if task is not None:
            return usage.Payer(task.user_id, task.project_id, task.id)
    return usage.Payer(conversation_person(worker.config))


def _record_time(session: Session, worker: Worker) -> None:
    """A stopped worker's running time goes into the ledger (once per worker: its unique key)."""
    if worker.stopped_at is not None:
        usage.record_worker_time(
            session,
            worker.id,
            _payer(session, worker),
            worker.started_at,
            worker.stopped_at,
            get_deps().settings,
        )


def task_of(session: Session, worker_id: str) -> str | None:
    """The task a worker works for (None: none, or no such worker)."""
    return session.execute(select(Worker.task_id).where(Worker.id == worker_id)).scalar_one_or_none()


def act_for_task(session: Session, caller: Principal, task_id: str) -> None:
    """403 unless the caller may act for the task: a service may; a worker token only for its worker's task."""
    if caller.worker_id is not None and task_of(session, caller.worker_id) != task_id:
        raise Forbidden(WORKER_ONLY_OWN)


def message_worker(session: Session, message_id: int) -> str | None:
    """The worker a message is for (None: no such message)."""
    return session.execute(
        select(WorkerMessage.worker_id).where(WorkerMessage.id == message_id)
    ).scalar_one_or_none()


def report_activity(session: Session, message_id: int) -> tuple[WorkerMessage, str]:
    """The agent is still working on a RUNNING message: an ephemeral `activity` response on the worker's
    reply queue (as often as the wrapper reports; never instead of the one real answer), and the worker
    was seen alive. Returns (message, the queue it went to)."""
    message = session.get(WorkerMessage, message_id)
    if message is None:
        raise NotFound(f"worker message {message_id} not found")
    worker = get(session, message.worker_id)
    if not (worker.config or {}).get("activity_every_s"):
        raise Conflict(f"worker {worker.id} does not report activity (its config has no activity_every_s)")
    # The worker row first, then the message: the order mark_stopped and claim_next (when it marks the
    # worker seen) lock them in; claim_next without that locks only a message.
    worker.last_seen_at = utcnow()
    session.flush()
    # Locked (on PostgreSQL) so an answer being committed right now is seen: no activity after the answer.
    message = session.get(WorkerMessage, message_id, with_for_update=True, populate_existing=True)
    assert message is not None  # a message is deleted only with its worker, which we hold
    if message.status != "RUNNING":
        raise Conflict(
            f"worker message {message_id} is {message.status}, not RUNNING: nothing is working on it"
        )
    envelope = {"correlation_id": message.correlation_id} if message.correlation_id else {}
    activity = WorkerActivity(
        request_id=message.request_id, worker_id=message.worker_id, success=True, **envelope
    )
    queue = reply_queue(worker.config)
    outbox.add(session, queue, activity)
    return message, queue


def enqueue_message(
    session: Session, worker: Worker, body: dict[str, Any]
) -> tuple[WorkerMessage, list[int], bool]:
    """A message for `worker` (idempotent by request_id). Returns (message, outbox ids, created)."""
    existing = session.execute(
        select(WorkerMessage).where(WorkerMessage.request_id == body["request_id"])
    ).scalar_one_or_none()
    if existing is not None:
        if existing.worker_id != worker.id:
            raise Conflict(f"request {body['request_id']} was already sent to another worker", ["request_id"])
        return existing, [], False
    message = WorkerMessage(worker_id=worker.id, status="PENDING", created_at=utcnow(), **body)
    if message.kind in BUDGETED_KINDS and worker.status not in ENDED:
        # What the agent (or the command) may spend on it, fixed now: the wrapper stops it past it, and
        # refuses to start it with nothing left.
        payer = _payer(session, worker)
        message.budget_micros, message.budget_note = budgets.for_message(
            session, get_deps().settings, payer.task_id, payer.user_id
        )
    session.add(message)
    session.flush()
    outbox_ids: list[int] = []
    if worker.status in ENDED:
        _, outbox_id = finish_message(
            session,
            message.id,
            False,
            None,
            f"worker {worker.id} has ended ({worker.exit_reason or worker.status})",
            None,
            allowed=("PENDING",),
        )
        outbox_ids.append(outbox_id)
    return message, outbox_ids, True


SEEN_EVERY = timedelta(seconds=30)
"""How stale a polling worker's `last_seen_at` may get: an idle wrapper asks for its next message about
once a second, and writing the row each time made every empty poll a write (on SQLite, a wait for the
database's one writer). The readers of `last_seen_at` (the stuck-task reaper, the orphan collector)
count silence in many minutes."""


@functools.cache
def _waiting() -> Select[int, str]:
    """A worker's messages in flight (RUNNING first, then PENDING, oldest first), built once: an idle
    wrapper asks about once a second."""
    return (
        select(WorkerMessage.id, WorkerMessage.status)
        .where(
            WorkerMessage.worker_id == bindparam("worker_id"),
            WorkerMessage.status.in_(("RUNNING", "PENDING")),
        )
        .order_by(case((WorkerMessage.status == "RUNNING", 0), else_=1), WorkerMessage.id)
        .limit(5)
    )


@functools.cache
def _start_pending() -> Update:
    return (
        update(WorkerMessage)
        .where(WorkerMessage.id == bindparam("message_id"), WorkerMessage.status == "PENDING")
        .values(status="RUNNING", started_at=bindparam("started_at"))
        .execution_options(synchronize_session=False)
    )


def claim_next(session: Session, worker: Worker) -> WorkerMessage | None:
    """The oldest PENDING message, moved to RUNNING (compare-and-set: one wrapper gets it).

    A worker has one wrapper, which asks only when it is idle: a message already RUNNING for this
    worker is one whose answer to `next` got lost on the way (a dropped connection), so it comes
    back first instead of waiting forever. One query looks for both; with nothing there (an idle
    poll) it is the only one after the worker's row."""
    now = utcnow()
    if worker.last_seen_at is None or worker.last_seen_at <= now - SEEN_EVERY:
        worker.last_seen_at = now  # flushed before the query below: the worker row, then its messages
    waiting = session.execute(_waiting(), {"worker_id": worker.id}).all()
    if waiting and waiting[0].status == "RUNNING":
        return session.get(WorkerMessage, waiting[0].id)
    for message_id, _status in waiting:
        won = rows_changed(session, _start_pending(), {"message_id": message_id, "started_at": utcnow()})
        if won == 1:
            return session.get(WorkerMessage, message_id, populate_existing=True)
    return None


def mark_stopped(
    session: Session, worker: Worker, status: str, exit_code: int | None, reason: str
) -> list[int]:
    """The worker ended (deleted, exited, died, timed out): fail what it still owed, and count its
    running time, once."""
    ended_now = rows_changed(
        session,
        update(Worker)
        .where(Worker.id == worker.id, Worker.status.not_in(ENDED))
        .values(status=status, exit_code=exit_code, exit_reason=reason, stopped_at=utcnow())
        .execution_options(synchronize_session=False),
    )
    session.get(Worker, worker.id, populate_existing=True)
    if ended_now:
        _record_time(session, worker)
    outbox_ids: list[int] = []
    open_ids = session.execute(
        select(WorkerMessage.id).where(WorkerMessage.worker_id == worker.id, WorkerMessage.status.in_(OPEN))
    ).scalars()
    detail = f"worker {worker.id} ended before answering: {reason}" + (
        f" (exit code {exit_code})" if exit_code is not None else ""
    )
    for message_id in list(open_ids):
        try:
            _, outbox_id = finish_message(session, message_id, False, None, detail, None, allowed=OPEN)
        except Conflict:
            continue
        outbox_ids.append(outbox_id)
    return outbox_ids


def listing(
    session: Session,
    user_id: str | None,
    task_id: str | None = None,
    statuses: list[str] | None = None,
    name: str | None = None,
    limit: int = 500,
) -> list[Worker]:
    """Workers, newest first: all of them (`user_id` None) or those of one person's tasks. Every filter
    is in SQL, so `limit` counts only the workers that match."""
    stmt = _listing(user_id is not None, bool(task_id), bool(statuses), bool(name))
    params = {"user_id": user_id, "task_id": task_id, "statuses": statuses, "name": name, "limit": limit}
    return list(session.execute(stmt, params).scalars())


@functools.cache
def _listing(by_user: bool, by_task: bool, by_status: bool, by_name: bool) -> Select[Worker]:
    """Each shape of the listing built once, its values bind parameters (the graphs and the wrapper list a
    task's workers on every step)."""
    stmt = select(Worker).order_by(Worker.started_at.desc())
    if by_user:
        stmt = stmt.join(Task, Task.id == Worker.task_id).where(Task.user_id == bindparam("user_id"))
    if by_task:
        stmt = stmt.where(Worker.task_id == bindparam("task_id"))
    if by_status:
        stmt = stmt.where(Worker.status.in_(bindparam("statuses", expanding=True)))
    if by_name:
        # config ->> 'name' on PostgreSQL, JSON_EXTRACT(config, '$."name"') on SQLite
        stmt = stmt.where(Worker.config["name"].as_string() == bindparam("name"))
    return stmt.limit(bindparam("limit"))


PRODUCT_OWNER = "product_owner"


def person_for(session: Session, task_id: str | None, config: dict[str, Any] | None) -> str | None:
    """The person a worker works for: the owner of its task's project, or for a Product Owner worker the
    person of its conversation (`config.context.user_id`, set by the service that records it)."""
    if task_id:
        owner = session.execute(
            select(Project.owner_id).join(Task, Task.project_id == Project.id).where(Task.id == task_id)
        ).scalar_one_or_none()
        if owner is not None:
            return owner
    return conversation_person(config)


def conversation_person(config: dict[str, Any] | None) -> str | None:
    """The person of a Product Owner worker's conversation (None for any other worker)."""
    context = (config or {}).get("context")
    if isinstance(context, dict) and context.get("role") == PRODUCT_OWNER and context.get("user_id"):
        return str(context["user_id"])
    return None


def visible_to(session: Session, worker: Worker, user_id: str) -> bool:
    if worker.task_id is None:
        return False
    task = session.get(Task, worker.task_id)
    return task is not None and task.user_id == user_id


def record(session: Session, body: WorkerRecord, settings: ApiSettings) -> tuple[Worker, bool]:
    """The worker manager's record of a worker: (row, created). A redelivery (same id, or same create
    request id) gets the first row back; the same worker for another task is a conflict; a new one must
    fit its person's `limit_workers_per_user` (429)."""
    existing = session.get(Worker, body.id)
    if existing is None and body.create_request_id:
        existing = session.execute(
            select(Worker).where(Worker.create_request_id == body.create_request_id)
        ).scalar_one_or_none()
    if existing is not None:
        if existing.task_id != body.task_id:
            raise Conflict(f"worker {existing.id} is already recorded for another task", ["id"])
        return existing, False
    if body.task_id and session.get(Task, body.task_id) is None:
        raise NotFound(f"task {body.task_id!r} not found")
    limits.check_new_worker(session, settings, person_for(session, body.task_id, body.config))
    row = Worker(**body.model_dump(), started_at=utcnow())
    session.add(row)
    session.flush()
    return row, True


def change(session: Session, worker_id: str, body: WorkerUpdate) -> Worker:
    """A status update (compare-and-set with `expected_status`); an ended worker does not come back."""
    row = get(session, worker_id)
    if body.expected_status is not None:
        won = rows_changed(
            session,
            update(Worker)
            .where(Worker.id == worker_id, Worker.status == body.expected_status)
            .values(status=body.status)
            .execution_options(synchronize_session=False),
        )
        session.refresh(row)
        if won != 1:
            raise Conflict(f"worker {worker_id} is {row.status}, not {body.expected_status}")
    elif row.status in ENDED and body.status not in ENDED:
        raise Conflict(f"worker {worker_id} already ended ({row.status})")
    for key, value in body.model_dump(exclude_unset=True, exclude={"expected_status"}).items():
        setattr(row, key, value)
    if body.status in ENDED and row.stopped_at is None:
        row.stopped_at = utcnow()
        session.flush()
        _record_time(session, row)
    session.flush()
    return row


def send(session: Session, worker_id: str, body: WorkerMessageCreate) -> tuple[WorkerMessage, bool]:
    """A message for the worker (idempotent by request_id): (message, created)."""
    message, _outbox_ids, is_new = enqueue_message(session, get(session, worker_id), body.model_dump())
    return message, is_new


def stopped(session: Session, worker_id: str, body: WorkerStopped) -> tuple[Worker, bool]:
    """The worker ended: (row, whether it was still running before this report)."""
    row = get(session, worker_id)
    was_running = row.status not in ENDED
    mark_stopped(session, row, body.status, body.exit_code, body.reason)
    return row, was_running


def take_next(session: Session, worker_id: str) -> WorkerMessage | None:
    """The wrapper's next message (see `claim_next`); an ended worker gets none (410)."""
    worker = get(session, worker_id)
    if worker.status in ENDED:
        raise Gone(f"worker {worker_id} has ended ({worker.exit_reason or worker.status})")
    return claim_next(session, worker)


def _visible(session: Session, caller: Principal, worker_id: str) -> Worker:
    worker = get(session, worker_id)
    if not (caller.sees_all() or visible_to(session, worker, caller.user_id)):
        raise NotFound(f"worker {worker_id!r} not found")
    return worker


def messages_of(session: Session, caller: Principal, worker_id: str) -> list[WorkerMessage]:
    worker = _visible(session, caller, worker_id)
    return list(session.execute(_messages_of(), {"worker_id": worker.id}).scalars())


@functools.cache
def _messages_of() -> Select[WorkerMessage]:
    """Built once: the wrapper's and the graphs' reads of a worker's messages are among the most frequent."""
    return (
        select(WorkerMessage)
        .where(WorkerMessage.worker_id == bindparam("worker_id"))
        .order_by(WorkerMessage.id)
    )


def stop(session: Session, caller: Principal, worker_id: str) -> Worker:
    """Ask the worker manager (through the outbox) to delete a running worker."""
    worker = _visible(session, caller, worker_id)
    if worker.status in ENDED:
        raise Conflict(f"worker {worker_id} already ended ({worker.status})")
    outbox.add(session, WORKER_COMMANDS, DeleteWorkerCommand(worker_id=worker.id))
    return worker
