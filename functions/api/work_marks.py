"""Marks the work signal (`shared.work_signal`) from the API's own writes, before they commit.

A session of the API's database that inserts or updates a row of a watched table marks that kind of
work once per transaction, so the scheduler's jobs know there is something to look at. Watching the
ORM (new and changed objects at flush, INSERT/UPDATE statements as they run) rather than each service
keeps every writer covered, including ones added later. Outbox rows mark on insert only: marking one
sent ends its work. A mark that cannot be written fails the transaction: work nobody would look at
must not be committed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from functions.api.models import Deployment, Gate, OutboxMessage, Project, Server, Task, Worker
from shared.work_signal import WorkKind, WorkSignalPort

WATCHED: dict[type, WorkKind] = {
    OutboxMessage: WorkKind.OUTBOX,
    Task: WorkKind.TASKS,
    Worker: WorkKind.WORKERS,
    Deployment: WorkKind.DEPLOYMENTS,
    Server: WorkKind.SERVERS,
    Project: WorkKind.PROJECTS,
    Gate: WorkKind.GATES,
}
INSERT_ONLY = frozenset({WorkKind.OUTBOX})
_SIGNAL = "work_signal"
"""`Session.info` key (set on the sessionmaker, so every session carries it): the port's factory."""
_MARKED = "work_signal_marked"
"""`Session.info` key: the kinds this transaction has marked already."""


def install(sessions: sessionmaker[Session], signal: Callable[[], WorkSignalPort]) -> None:
    """Mark through `signal()` from every session `sessions` makes from now on (the last install wins)."""
    sessions.configure(info={**sessions.kw.get("info", {}), _SIGNAL: signal})
    if not event.contains(sessions, "after_flush", _after_flush):
        event.listen(sessions, "after_flush", _after_flush)
        event.listen(sessions, "do_orm_execute", _do_orm_execute)


def _after_flush(session: Session, _context: Any) -> None:
    new = {WATCHED[type(o)] for o in session.new if type(o) in WATCHED}
    changed = {WATCHED[type(o)] for o in session.dirty if type(o) in WATCHED} - INSERT_ONLY
    _mark(session, new | changed)


def _do_orm_execute(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update):
        return
    mapper = state.bind_mapper
    kind = WATCHED.get(mapper.class_) if mapper is not None else None
    if kind is None or (state.is_update and kind in INSERT_ONLY):
        return
    _mark(state.session, {kind})


def mark_inserted(session: Session, *models: type) -> None:
    """What a write the ORM does not see (`db.insert_together`) inserted: rows of these mapped classes."""
    _mark(session, {WATCHED[model] for model in models if model in WATCHED})


def _mark(session: Session, kinds: set[WorkKind]) -> None:
    signal: Callable[[], WorkSignalPort] | None = session.info.get(_SIGNAL)
    marked: set[WorkKind] = session.info.setdefault(_MARKED, set())
    fresh = kinds - marked
    if signal is None or not fresh:
        return
    signal().mark(fresh)
    marked |= fresh
