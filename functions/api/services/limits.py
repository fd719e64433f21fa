"""Bounded resources per person (`ORCH_LIMIT_*`): projects, tasks at once and per hour, ports on
servers someone else owns, live workers. A bound reached answers 429 naming the limit (`LimitExceeded.fields`).

Admins and service keys are not bounded themselves (they run the stack), but a port a service
key asks for on a project's behalf (the deploy graph) counts against the project's owner.
Each check runs inside the transaction that creates the row and first locks the person's user
row, so two concurrent requests of one person cannot both slip under a bound on PostgreSQL;
SQLite serialises writers anyway.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.errors import LimitExceeded
from functions.api.models import PortAllocation, Project, Server, Task, User, Worker, utcnow
from functions.api.settings import ApiSettings
from shared.contracts.api import ProjectStatus
from shared.contracts.dto import ACTIVE_STATUSES

ACTIVE = [status.value for status in ACTIVE_STATUSES]


def _lock_user(session: Session, user_id: str) -> User | None:
    return session.execute(select(User).where(User.id == user_id).with_for_update()).scalar_one_or_none()


def _owner_bounded(session: Session, user_id: str) -> bool:
    user = _lock_user(session, user_id)
    return user is not None and not user.is_admin


def _refuse(name: str, limit: int, what: str) -> LimitExceeded:
    return LimitExceeded(
        f"limit {name} reached: at most {limit} {what} per person (ORCH_LIMIT_{name.upper()})", [name]
    )


def check_new_project(session: Session, settings: ApiSettings, caller: Principal) -> None:
    if caller.sees_all():
        return
    owner_id = caller.user_id
    _lock_user(session, owner_id)
    limit = settings.limit_projects_per_user
    owned = session.execute(
        select(func.count()).where(
            Project.owner_id == owner_id, Project.status != ProjectStatus.ARCHIVED.value
        )
    ).scalar_one()
    if owned >= limit:
        raise _refuse("projects_per_user", limit, "projects (archive one to make room)")


def check_new_task(session: Session, settings: ApiSettings, caller: Principal) -> None:
    if caller.sees_all():
        return
    user_id = caller.user_id
    _lock_user(session, user_id)
    is_active = Task.status.in_(ACTIVE)
    is_recent = Task.created_at >= utcnow() - timedelta(hours=1)
    active, recent = session.execute(  # both bounds in one statement, after the lock (a fresh snapshot)
        select(func.count().filter(is_active), func.count().filter(is_recent)).where(
            Task.user_id == user_id, or_(is_active, is_recent)
        )
    ).one()
    if active >= settings.limit_active_tasks_per_user:
        raise _refuse(
            "active_tasks_per_user",
            settings.limit_active_tasks_per_user,
            "queued or running tasks (wait for one to finish, or cancel one)",
        )
    if recent >= settings.limit_tasks_per_hour:
        raise _refuse("tasks_per_hour", settings.limit_tasks_per_hour, "tasks started in an hour")


def check_new_port(session: Session, settings: ApiSettings, server: Server, project: Project) -> None:
    """Before `project` gets its first port on `server`: on a server its owner does not own (the shared
    localhost), the owner's projects together hold at most `limit_shared_ports_per_user` ports."""
    if server.owner_id == project.owner_id or not _owner_bounded(session, project.owner_id):
        return
    holders = (  # a project's stable port and its slots' ports on one server count once
        select(PortAllocation.server_id, PortAllocation.project_id)
        .join(Project, Project.id == PortAllocation.project_id)
        .join(Server, Server.id == PortAllocation.server_id)
        .where(Project.owner_id == project.owner_id, Server.owner_id != project.owner_id)
        .distinct()
        .subquery()
    )
    held = session.execute(select(func.count()).select_from(holders)).scalar_one()
    if held >= settings.limit_shared_ports_per_user:
        raise _refuse(
            "shared_ports_per_user",
            settings.limit_shared_ports_per_user,
            "ports on servers you do not own (undeploy a project to free one)",
        )


def holds_port(session: Session, server: Server, project: Project) -> bool:
    found = session.execute(
        select(PortAllocation.id)
        .where(PortAllocation.server_id == server.id, PortAllocation.project_id == project.id)
        .limit(1)
    ).first()
    return found is not None


WORKER_ENDED = ("STOPPED", "FAILED")


def check_new_worker(session: Session, settings: ApiSettings, person_id: str | None) -> None:
    """Before the service records a worker for `person_id` (see `workers.person_for`): that person's live
    workers, for their projects' tasks and their Product Owner conversation, stay under
    `limit_workers_per_user`. A worker for nobody (no task, not a Product Owner) and an admin's are not bounded."""
    if person_id is None or not _owner_bounded(session, person_id):
        return
    live = session.execute(
        select(func.count())
        .select_from(Worker)
        .outerjoin(Task, Task.id == Worker.task_id)
        .outerjoin(Project, Project.id == Task.project_id)
        .where(
            Worker.status.not_in(WORKER_ENDED),
            or_(
                Project.owner_id == person_id,
                and_(
                    Worker.task_id.is_(None),
                    Worker.config[("context", "role")].as_string() == "product_owner",
                    Worker.config[("context", "user_id")].as_string() == person_id,
                ),
            ),
        )
    ).scalar_one()
    if live >= settings.limit_workers_per_user:
        raise _refuse(
            "workers_per_user",
            settings.limit_workers_per_user,
            "workers running at once (wait for one to end, or stop one)",
        )
