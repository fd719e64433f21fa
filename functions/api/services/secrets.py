"""A project's secrets: names and references in the database, values only through the secrets port."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.deps import ApiDeps
from functions.api.errors import NotFound
from functions.api.models import ProjectSecret, new_id, utcnow
from functions.api.services import lookup, tasks
from shared.contracts.api import SecretInfo


def reference_for(project_id: str, name: str) -> str:
    return f"secret://projects/{project_id}/{name}"


def _info(row: ProjectSecret) -> SecretInfo:
    return SecretInfo(name=row.name, reference=row.reference, updated_at=row.updated_at)


def _row(session: Session, project_id: str, name: str) -> ProjectSecret | None:
    return session.execute(
        select(ProjectSecret).where(ProjectSecret.project_id == project_id, ProjectSecret.name == name)
    ).scalar_one_or_none()


def list_for(session: Session, caller: Principal, project_id: str) -> list[SecretInfo]:
    project = lookup.project(session, caller, project_id)
    rows = session.execute(
        select(ProjectSecret).where(ProjectSecret.project_id == project.id).order_by(ProjectSecret.name)
    ).scalars()
    return [_info(r) for r in rows]


def put(
    session: Session, deps: ApiDeps, caller: Principal, project_id: str, name: str, value: str
) -> SecretInfo:
    """Store the value, then record the reference; deploys waiting for a secret are woken."""
    project = lookup.project(session, caller, project_id)
    reference = reference_for(project.id, name)
    deps.secrets.put(reference, value)
    row = _row(session, project.id, name)
    now = utcnow()
    if row is None:
        row = ProjectSecret(
            id=new_id(), project_id=project.id, name=name, reference=reference, created_at=now
        )
        session.add(row)
    row.updated_at = now
    session.flush()
    tasks.wake_waiting_deploys(session, project.id, f"secret {name} set")
    return _info(row)


def forget(session: Session, caller: Principal, project_id: str, name: str) -> SecretInfo:
    """Remove the secret's row; the caller deletes the value once this has committed."""
    project = lookup.project(session, caller, project_id)
    row = _row(session, project.id, name)
    if row is None:
        raise NotFound(f"project {project.name!r} has no secret {name!r}")
    info = _info(row)
    session.delete(row)
    return info
