"""The transactional outbox: a message is committed with the change that caused it, then published.

`dispatch` claims rows with a compare-and-set lease so two dispatchers (the API right after a
commit, the scheduler's sweep) never publish the same row at the same time. If a process dies
between commit and publish, the row stays unsent and the sweep publishes it later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from functions.api.db import Database, rows_changed
from functions.api.models import OutboxMessage, utcnow
from functions.api.services import idempotency
from shared.contracts import dump_message
from shared.queues.port import QueuePort

LEASE = timedelta(seconds=30)


def add(session: Session, queue: str, message: BaseModel, task_id: str | None = None) -> OutboxMessage:
    row = OutboxMessage(
        queue=queue,
        body=dump_message(message),
        correlation_id=getattr(message, "correlation_id", None),
        task_id=task_id,
        created_at=utcnow(),
        attempts=0,
    )
    session.add(row)
    session.flush()
    # `unit_of_work.transaction` publishes these right after the commit (the sweep is the backstop)
    session.info.setdefault("outbox_ids", []).append(row.id)
    return row


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    failed: int = 0


def dispatch(
    db: Database,
    queue: QueuePort,
    ids: list[int] | None = None,
    min_age: timedelta = timedelta(0),
    limit: int = 100,
) -> DispatchReport:
    """Publish unsent outbox rows (the given ids, or the oldest `limit` older than `min_age`)."""
    report = DispatchReport()
    now = utcnow()
    with db.session() as session:
        stmt = select(OutboxMessage.id).where(OutboxMessage.sent_at.is_(None))
        if ids is not None:
            stmt = stmt.where(OutboxMessage.id.in_(ids))
        else:
            stmt = stmt.where(OutboxMessage.created_at <= now - min_age)
        stmt = stmt.where(or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now))
        candidates = list(session.execute(stmt.order_by(OutboxMessage.id).limit(limit)).scalars())
        claimed: list[OutboxMessage] = []
        for row_id in candidates:
            won = rows_changed(
                session,
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == row_id,
                    OutboxMessage.sent_at.is_(None),
                    or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
                )
                .values(claimed_until=now + LEASE, attempts=OutboxMessage.attempts + 1)
                .execution_options(synchronize_session=False),
            )
            row = session.get(OutboxMessage, row_id, populate_existing=True) if won == 1 else None
            if row is not None:
                claimed.append(row)
    report.claimed = len(claimed)
    for row in claimed:
        attributes = {"outbox_id": str(row.id)}
        if row.correlation_id:
            attributes["correlation_id"] = row.correlation_id
        try:
            queue.publish_raw(row.queue, row.body, attributes)
        except Exception as exc:  # left unsent: the next sweep retries it
            report.failed += 1
            with db.session() as session:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == row.id)
                    .values(claimed_until=None, last_error=f"{type(exc).__name__}: {exc}"[:2000])
                )
            continue
        with db.session() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(sent_at=utcnow(), claimed_until=None, last_error=None)
            )
        report.sent += 1
    return report


SENT_KEPT = timedelta(days=7)
"""Sent rows are kept this long (to trace a delivery), then pruned by the sweep: activity reports
alone add one row every few seconds while an agent works."""


def prune_sent(db: Database, older_than: timedelta = SENT_KEPT, limit: int = 5000) -> int:
    """Delete up to `limit` rows sent before `older_than` ago; unsent rows are never touched."""
    cutoff = utcnow() - older_than
    with db.session() as session:
        ids = list(
            session.execute(
                select(OutboxMessage.id)
                .where(OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at < cutoff)
                .order_by(OutboxMessage.id)
                .limit(limit)
            ).scalars()
        )
        if ids:
            session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(ids)))
    return len(ids)


def pending_count(db: Database) -> int:
    from sqlalchemy import func

    with db.session() as session:
        return int(session.execute(select(func.count()).where(OutboxMessage.sent_at.is_(None))).scalar_one())


SWEEP_MIN_AGE = timedelta(seconds=5)
"""The sweep leaves younger rows to the request that committed them (it publishes right after)."""


def sweep(db: Database, queue: QueuePort, idempotency_window_s: int) -> dict[str, int]:
    """The scheduler's backstop: publish what no request published, prune sent rows and, with them,
    expired Idempotency-Keys."""
    report = dispatch(db, queue, min_age=SWEEP_MIN_AGE)
    pruned = prune_sent(db)
    with db.session() as session:
        pruned += idempotency.prune(session, timedelta(seconds=idempotency_window_s))
    return {"claimed": report.claimed, "sent": report.sent, "failed": report.failed, "pruned": pruned}
