"""The transactional outbox: a message is committed with the change that caused it, then published.

A request's unit of work (`unit_of_work.transaction`) inserts its rows already claimed (a lease of
`LEASE`, in the same INSERT), publishes them right after its commit and marks them sent with one
statement: one transaction plus one UPDATE, no separate claim round trip. Anything else that adds rows
leaves them to `dispatch`, which claims rows with a compare-and-set lease so two dispatchers never
publish the same row at the same time. If a process dies between commit and publish, the row stays
unsent and the scheduler's sweep publishes it once its lease has run out (at least once; at most
`LEASE` + a sweep interval late).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import Update, bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from functions.api import work_marks
from functions.api.db import Database, insert_together, rows_changed
from functions.api.models import Base, OutboxMessage, utcnow
from shared.contracts import dump_message
from shared.queues.port import QueuePort

LEASE = timedelta(seconds=30)
PUBLISHES_AFTER_COMMIT = "outbox_publishes_after_commit"
"""`Session.info` flag: this session's owner publishes the rows it adds once it has committed."""
CLAIMED_ROWS = "outbox_claimed_rows"
"""`Session.info` key: the rows `add` inserted claimed, for the owner to publish."""


def add(session: Session, queue: str, message: BaseModel, task_id: str | None = None) -> OutboxMessage:
    row = _claimed_row(session, queue, message, task_id)
    session.add(row)
    session.flush()
    return _publish_later(session, row)


def add_with(
    session: Session, change: Base, queue: str, message: BaseModel, task_id: str | None = None
) -> OutboxMessage:
    """`add`, together with the new row `change` whose message it is: one INSERT of both on PostgreSQL
    (`db.insert_together`: a task and its message, one round trip instead of two)."""
    row = _claimed_row(session, queue, message, task_id)
    insert_together(session, change, row)
    work_marks.mark_inserted(session, type(change), OutboxMessage)
    return _publish_later(session, row)


def _claimed_row(session: Session, queue: str, message: BaseModel, task_id: str | None) -> OutboxMessage:
    now = utcnow()
    publishing = bool(session.info.get(PUBLISHES_AFTER_COMMIT))
    return OutboxMessage(
        queue=queue,
        body=dump_message(message),
        correlation_id=getattr(message, "correlation_id", None),
        task_id=task_id,
        created_at=now,
        # claimed by the request that commits it: no dispatcher takes it while the request publishes it
        claimed_until=now + LEASE if publishing else None,
        attempts=1 if publishing else 0,
    )


def _publish_later(session: Session, row: OutboxMessage) -> OutboxMessage:
    if session.info.get(
        PUBLISHES_AFTER_COMMIT
    ):  # `unit_of_work.transaction` publishes these after the commit
        session.info.setdefault(CLAIMED_ROWS, []).append(row)
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
    publish_claimed(db, queue, claimed, report)
    return report


def publish_claimed(
    db: Database, queue: QueuePort, rows: list[OutboxMessage], report: DispatchReport | None = None
) -> DispatchReport:
    """Publish rows this process holds the lease of, then mark the published ones sent in one statement
    (a failed one is released with its error at once: the next sweep retries it)."""
    report = report or DispatchReport(claimed=len(rows))
    sent: list[int] = []
    for row in rows:
        attributes = {"outbox_id": str(row.id)}
        if row.correlation_id:
            attributes["correlation_id"] = row.correlation_id
        try:
            queue.publish_raw(row.queue, row.body, attributes)
        except Exception as exc:  # left unsent: the next sweep retries it
            report.failed += 1
            db.run_alone(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id)
                .values(claimed_until=None, last_error=f"{type(exc).__name__}: {exc}"[:2000])
            )
            continue
        sent.append(row.id)
    if sent:  # lost, it only publishes them again once their lease has run out: the request does not wait
        db.send_alone(_mark_sent(), {"ids": sent, "sent_at": utcnow()})
        report.sent += len(sent)
    return report


@functools.cache
def _mark_sent() -> Update:
    """Built once: a statement built per call cost a tenth of a request that starts a task (its clauses,
    then SQLAlchemy's cache key of them); one object is keyed once."""
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(bindparam("ids", expanding=True)))
        .values(sent_at=bindparam("sent_at"), claimed_until=None, last_error=None)
    )


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
    expired Idempotency-Keys (while the system is idle the sweep does not run: nothing new to prune)."""
    report = dispatch(db, queue, min_age=SWEEP_MIN_AGE)
    pruned = prune_sent(db)
    from functions.api.services import idempotency  # here: idempotency -> unit_of_work -> outbox

    with db.session() as session:
        pruned += idempotency.prune(session, timedelta(seconds=idempotency_window_s))
    return {
        "claimed": report.claimed,
        "sent": report.sent,
        "failed": report.failed,
        "pruned": pruned,
        # unsent rows left (any age): the scheduler stops sweeping at 0
        "pending": pending_count(db),
    }
