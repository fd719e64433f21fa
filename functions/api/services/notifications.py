"""Telegram progress notifications: which tasks publish progress events, and the status-message row.

A task of a Telegram user publishes each progress event on `progress:events` through the outbox,
in the transaction that stored it. The notifier then keeps one status message per task: it
claims the task's row (compare-and-set, expiring) before talking to Telegram, so two notifier
invocations never both create a status message; `final_sent_at` is set once, only after Telegram
accepted the final message.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from functions.api.db import rows_changed
from functions.api.errors import Conflict, NotFound, Unprocessable
from functions.api.models import Task, TaskNotification, User, utcnow
from functions.api.services import outbox
from shared.contracts import PROGRESS_EVENTS, ProgressEvent
from shared.contracts.api import NotificationRecord


def owner_chat(session: Session, task: Task) -> int | None:
    """The owner's Telegram id, or None for users without one (CLI users are never notified)."""
    user = session.get(User, task.user_id)
    return user.telegram_id if user is not None and user.telegram_id else None


ASK: Any = object()
"""A value not read yet: ask the database."""


def publish(session: Session, task: Task, event: ProgressEvent, chat: Any = ASK) -> None:
    """Put `event` on progress:events (same transaction) when the task's owner uses Telegram (`chat`: the
    owner's Telegram id or None, when the caller read it already)."""
    if (owner_chat(session, task) if chat is ASK else chat) is None:
        return
    correlation_id = event.correlation_id or task.correlation_id
    event = event.model_copy(update={"correlation_id": correlation_id, "task_id": task.id})
    outbox.add(session, PROGRESS_EVENTS, event, task_id=task.id)


def _ensure_row(session: Session, task_id: str, chat_id: int) -> None:
    """Insert the row unless it exists; safe when two claims race (ON CONFLICT DO NOTHING)."""
    # the dialect in use only: importing the other one's package is ~2 MiB of the process (PostgreSQL's on
    # SQLite), for nothing. Both dialects' `insert` take ON CONFLICT DO NOTHING the same way.
    dialect = importlib.import_module(f"sqlalchemy.dialects.{session.get_bind().dialect.name}")
    now = utcnow()
    session.execute(
        dialect.insert(TaskNotification)
        .values(task_id=task_id, chat_id=chat_id, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["task_id"])
    )


def claim(session: Session, task_id: str, holder: str, seconds: int) -> TaskNotification:
    """Hold the task's notification for `seconds`; Conflict while another holder has it."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id!r} not found")
    chat_id = owner_chat(session, task)
    if chat_id is None:
        raise Unprocessable(f"the owner of task {task_id} has no Telegram id: nothing to notify")
    _ensure_row(session, task_id, chat_id)
    now = utcnow()
    won = rows_changed(
        session,
        update(TaskNotification)
        .where(
            TaskNotification.task_id == task_id,
            or_(
                TaskNotification.claimed_until.is_(None),
                TaskNotification.claimed_until < now,
                TaskNotification.claim_holder == holder,
            ),
        )
        .values(claim_holder=holder, claimed_until=now + timedelta(seconds=seconds), updated_at=now)
        .execution_options(synchronize_session=False),
    )
    row = session.get(TaskNotification, task_id, populate_existing=True)
    assert row is not None
    if won != 1:
        raise Conflict(
            f"the notification of task {task_id} is held by {row.claim_holder} until {row.claimed_until}"
        )
    return row


def record(session: Session, task_id: str, body: NotificationRecord) -> TaskNotification:
    """What the claim holder got Telegram to accept; Conflict if it no longer holds the claim
    (or, with `final_sent`, when the final message was already recorded)."""
    now = utcnow()
    values: dict[str, object] = {"updated_at": now}
    if body.message_id is not None:
        values["message_id"] = body.message_id
    if body.text is not None:
        values["text"] = body.text
    if body.final_sent:
        values["final_sent_at"] = now
    if body.release:
        values.update(claim_holder=None, claimed_until=None)
    stmt = update(TaskNotification).where(
        TaskNotification.task_id == task_id, TaskNotification.claim_holder == body.holder
    )
    if body.final_sent:
        stmt = stmt.where(TaskNotification.final_sent_at.is_(None))
    won = rows_changed(session, stmt.values(**values).execution_options(synchronize_session=False))
    row = session.get(TaskNotification, task_id, populate_existing=True)
    if row is None:
        raise NotFound(f"task {task_id!r} has no notification: claim it first")
    if won != 1:
        raise Conflict(
            f"the notification of task {task_id} is not held by {body.holder}"
            + (" or its final message was already recorded" if body.final_sent else "")
        )
    return row


def get(session: Session, task_id: str) -> TaskNotification:
    row = session.get(TaskNotification, task_id)
    if row is None:
        raise NotFound(f"task {task_id!r} has no notification")
    return row


def release(session: Session, task_id: str, holder: str) -> TaskNotification:
    session.execute(
        update(TaskNotification)
        .where(TaskNotification.task_id == task_id, TaskNotification.claim_holder == holder)
        .values(claim_holder=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    row = session.get(TaskNotification, task_id, populate_existing=True)
    if row is None:
        raise NotFound(f"task {task_id!r} has no notification")
    return row
