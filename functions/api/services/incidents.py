"""Incidents: state changes an owner is told about once. Callers add one only when their own
compare-and-set saw the flip, in the same transaction, so overlapping checkers never add two.

An owner who uses Telegram hears of each incident once: the transaction that writes the incident also
puts an `IncidentNotice` on `progress:events` (outbox), and the notifier claims the incident's push
(compare-and-set, expiring), sends it, then marks it `notified_at`. A redelivered notice finds it
notified and sends nothing; a notifier that died mid-way lets go when its claim runs out.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import rows_changed
from functions.api.errors import Conflict, NotFound, Unprocessable
from functions.api.models import Incident, Project, Server, User, new_id, utcnow
from functions.api.services import outbox
from shared.contracts import PROGRESS_EVENTS
from shared.contracts.notices import ALREADY_NOTIFIED, IncidentNotice, IncidentPush
from shared.contracts.servers import Incident as IncidentDto
from shared.observability import count, get_logger


class AlreadyPushed(Conflict):
    """409 with its own code: the notifier drops the notice (a plain conflict means retry later)."""

    code = ALREADY_NOTIFIED


def record(
    session: Session,
    owner_id: str,
    kind: str,
    message: str,
    project_id: str | None = None,
    server_id: str | None = None,
) -> Incident:
    row = Incident(
        id=new_id(),
        owner_id=owner_id,
        project_id=project_id,
        server_id=server_id,
        kind=kind,
        message=message,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    count("Incidents")
    get_logger().warning(
        f"incident: {message}",
        extra={"kind": kind, "owner_id": owner_id, "project_id": project_id, "server_id": server_id},
    )
    if _owner_chat(session, owner_id) is not None:
        outbox.add(session, PROGRESS_EVENTS, IncidentNotice(incident_id=row.id))
    return row


def list_for(session: Session, principal: Principal, limit: int) -> list[Incident]:
    stmt = select(Incident)
    if not principal.sees_all():
        stmt = stmt.where(Incident.owner_id == principal.user_id)
    return list(session.execute(stmt.order_by(Incident.created_at.desc()).limit(limit)).scalars())


# -- the push: claim, send, mark notified -------------------------------------------------------


def _owner_chat(session: Session, owner_id: str) -> int | None:
    """The owner's Telegram id, or None (a CLI user hears of incidents through `orchestrator incidents`)."""
    owner = session.get(User, owner_id)
    return owner.telegram_id if owner is not None and owner.telegram_id else None


def _get(session: Session, incident_id: str) -> Incident:
    row = session.get(Incident, incident_id, populate_existing=True)
    if row is None:
        raise NotFound(f"incident {incident_id!r} not found")
    return row


def claim_push(session: Session, incident_id: str, holder: str, seconds: int) -> IncidentPush:
    """Hold the incident's push for `seconds`: Conflict when it was pushed already (`notified_at`) or
    another holder has it; Unprocessable when its owner has no Telegram id (nobody to push it to)."""
    row = _get(session, incident_id)
    chat_id = _owner_chat(session, row.owner_id)
    if chat_id is None:
        raise Unprocessable(f"the owner of incident {incident_id} has no Telegram id: nothing to push")
    now = utcnow()
    won = rows_changed(
        session,
        update(Incident)
        .where(
            Incident.id == incident_id,
            Incident.notified_at.is_(None),
            or_(
                Incident.notify_claimed_until.is_(None),
                Incident.notify_claimed_until < now,
                Incident.notify_holder == holder,
            ),
        )
        .values(notify_holder=holder, notify_claimed_until=now + timedelta(seconds=seconds))
        .execution_options(synchronize_session=False),
    )
    row = _get(session, incident_id)
    if won != 1:
        if row.notified_at is not None:
            raise AlreadyPushed(f"incident {incident_id} was pushed already (at {row.notified_at})")
        raise Conflict(
            f"incident {incident_id} is being pushed by {row.notify_holder} until {row.notify_claimed_until}"
        )
    return _push(session, row, chat_id)


def mark_notified(session: Session, incident_id: str, holder: str) -> IncidentDto:
    """Telegram accepted the push: `notified_at` is set once, by the claim's holder (Conflict otherwise)."""
    now = utcnow()
    won = rows_changed(
        session,
        update(Incident)
        .where(Incident.id == incident_id, Incident.notified_at.is_(None), Incident.notify_holder == holder)
        .values(notified_at=now, notify_holder=None, notify_claimed_until=None)
        .execution_options(synchronize_session=False),
    )
    row = _get(session, incident_id)
    if won != 1:
        if row.notified_at is not None:
            raise AlreadyPushed(f"incident {incident_id} was marked notified already (at {row.notified_at})")
        raise Conflict(f"the push of incident {incident_id} is not held by {holder}")
    return IncidentDto.model_validate(row)


def _push(session: Session, row: Incident, chat_id: int) -> IncidentPush:
    project = session.get(Project, row.project_id) if row.project_id else None
    server = session.get(Server, row.server_id) if row.server_id else None
    return IncidentPush(
        incident=IncidentDto.model_validate(row),
        chat_id=chat_id,
        project_name=project.name if project is not None else None,
        server_handle=server.handle if server is not None else None,
    )
