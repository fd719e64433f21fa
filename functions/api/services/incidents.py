"""Incidents: state changes an owner is told about once. Callers add one only when their own
compare-and-set saw the flip, in the same transaction, so overlapping checkers never add two."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.models import Incident, new_id, utcnow
from shared.observability import count, get_logger


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
    return row


def list_for(session: Session, principal: Principal, limit: int) -> list[Incident]:
    stmt = select(Incident)
    if not principal.sees_all():
        stmt = stmt.where(Incident.owner_id == principal.user_id)
    return list(session.execute(stmt.order_by(Incident.created_at.desc()).limit(limit)).scalars())
