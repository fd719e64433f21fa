"""Deployments: one row per project saying where it runs and whether it answers."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import rows_changed
from functions.api.errors import NotFound
from functions.api.models import Deployment, Project, Server, new_id, utcnow
from functions.api.services import incidents, lookup
from shared.contracts.api import Deployment as DeploymentDto
from shared.contracts.api import DeploymentRecord, HealthChange, HealthReport


def to_dto(row: Deployment, project: Project, server: Server) -> DeploymentDto:
    live = row.status == "deployed"  # a stopped one's URL may answer for another project by now
    return DeploymentDto(
        project_id=project.id,
        project_name=project.name,
        server_handle=server.handle,
        port=row.port,
        url=row.url if live else "",
        health_url=row.health_url if live else "",
        ref=row.ref,
        status=row.status,
        health=row.health,
        health_changed_at=row.health_changed_at,
        checked_at=row.checked_at,
        task_id=row.task_id,
        owner_id=project.owner_id,
        updated_at=row.updated_at,
        slot=row.slot,
    )


def _joined(session: Session, *where: ColumnElement[bool]) -> list[tuple[Deployment, Project, Server]]:
    stmt = (
        select(Deployment, Project, Server)
        .join(Project, Project.id == Deployment.project_id)
        .join(Server, Server.id == Deployment.server_id)
        .where(*where)
        .order_by(Project.name)
    )
    return [(d, p, s) for d, p, s in session.execute(stmt).all()]


def list_for(session: Session, principal: Principal, status: str | None) -> list[DeploymentDto]:
    where: list[ColumnElement[bool]] = []
    if not principal.sees_all():
        where.append(Project.owner_id == principal.user_id)
    if status:
        where.append(Deployment.status == status)
    return [to_dto(*row) for row in _joined(session, *where)]


def get_for(session: Session, principal: Principal, project_id: str) -> DeploymentDto:
    project = lookup.project(session, principal, project_id)
    rows = _joined(session, Deployment.project_id == project.id)
    if not rows:
        raise NotFound(f"project {project.name!r} has never been deployed")
    return to_dto(*rows[0])


def record(session: Session, principal: Principal, project_id: str, body: DeploymentRecord) -> DeploymentDto:
    """Upsert the project's deployment (a redeploy moves it; an undeploy marks it stopped)."""
    project = lookup.project(session, principal, project_id, for_update=True)
    server = lookup.server(session, principal, body.server_handle)
    row = session.execute(select(Deployment).where(Deployment.project_id == project.id)).scalar_one_or_none()
    now = utcnow()
    if row is None:
        row = Deployment(id=new_id(), project_id=project.id, created_at=now, health="unknown")
        session.add(row)
    moved = row.server_id != server.id or row.port != body.port
    row.server_id, row.port, row.url, row.health_url = server.id, body.port, body.url, body.health_url
    row.ref, row.status, row.task_id, row.updated_at = body.ref, body.status, body.task_id, now
    row.slot = body.slot
    if body.status == "deployed":
        # a fresh deploy passed its smoke test: it is up, and a later 'down' is a real change
        if row.health == "down":
            incidents.record(
                session,
                project.owner_id,
                "service_up",
                f"{project.name} is up again (redeployed): {body.health_url} answers",
                project_id=project.id,
            )
        if moved or row.health != "up":
            row.health, row.health_changed_at = "up", now
        row.checked_at = now
    elif row.health != "stopped":
        row.health, row.health_changed_at = "stopped", now  # nothing checks it any more
    session.flush()
    return to_dto(row, project, server)


def report_health(
    session: Session, principal: Principal, id_or_name: str, report: HealthReport
) -> HealthChange:
    """Compare-and-set on the health column: of two overlapping checkers seeing the same flip, one
    gets changed=True (and tells the owner), the other changed=False."""
    project_id = lookup.project(session, principal, id_or_name).id
    row = session.execute(select(Deployment).where(Deployment.project_id == project_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"project {project_id!r} has no deployment")
    previous = row.health
    now = utcnow()
    changed = False
    if row.status != "deployed":  # a check that raced a stop: the stopped state stays
        return HealthChange(deployment=_dto_of(session, row), previous=previous, changed=False)
    if previous != report.health:
        won = rows_changed(
            session,
            update(Deployment)
            .where(Deployment.id == row.id, Deployment.health == previous)
            .values(health=report.health, health_changed_at=now, checked_at=now)
            .execution_options(synchronize_session=False),
        )
        changed = won == 1
    if not changed:
        session.execute(
            update(Deployment)
            .where(Deployment.id == row.id)
            .values(checked_at=now)
            .execution_options(synchronize_session=False)
        )
    session.refresh(row)
    project = session.get(Project, row.project_id)
    assert project is not None
    if changed and previous != "unknown":
        if report.health == "down":
            text = (
                f"{project.name} is DOWN: {row.health_url} does not answer ({report.detail or 'no detail'})"
            )
        else:
            text = f"{project.name} is up again: {row.health_url} answers"
        incidents.record(session, project.owner_id, f"service_{report.health}", text, project_id=project.id)
    return HealthChange(deployment=_dto_of(session, row), previous=previous, changed=changed)


def _dto_of(session: Session, row: Deployment) -> DeploymentDto:
    project, server = session.get(Project, row.project_id), session.get(Server, row.server_id)
    assert project is not None and server is not None
    return to_dto(row, project, server)
