"""Projects: a person's projects, and starting engineering / deploy / undeploy tasks on them."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import rows_changed
from functions.api.errors import Conflict, Unprocessable
from functions.api.models import Project, Task, new_id, utcnow
from functions.api.services import deployments, incidents, limits, lookup, tasks
from functions.api.settings import ApiSettings
from shared.contracts.api import (
    DeployStart,
    EngineeringStart,
    ProjectCreate,
    ProjectStatus,
    ProjectUpdate,
    RepoSync,
    TaskType,
)


def list_for(session: Session, caller: Principal) -> list[Project]:
    stmt = select(Project).order_by(Project.created_at)
    if not caller.sees_all():
        stmt = stmt.where(Project.owner_id == caller.user_id)
    return list(session.execute(stmt).scalars())


def create(session: Session, settings: ApiSettings, caller: Principal, body: ProjectCreate) -> Project:
    if session.execute(select(Project.id).where(Project.name == body.name)).first():
        # names are unique across owners: the answer must not tell whose it is, or that it is a project
        raise Conflict(f"the name {body.name!r} is not available", ["name"])
    limits.check_new_project(session, settings, caller)
    now = utcnow()
    row = Project(
        id=new_id(),
        name=body.name,
        description=body.description,
        modules=list(dict.fromkeys(body.modules)),
        agent=body.agent,
        status=ProjectStatus.DRAFT.value,
        owner_id=caller.user_id,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def change(session: Session, caller: Principal, project_id: str, body: ProjectUpdate) -> Project:
    row = lookup.project(session, caller, project_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    if row.status == ProjectStatus.ARCHIVED.value and changes and set(changes) != {"status"}:
        raise Conflict(f"project {row.name!r} is archived: set its status back first", list(changes))
    for key, value in changes.items():
        setattr(row, key, value.value if isinstance(value, ProjectStatus) else value)
    row.updated_at = utcnow()
    session.flush()
    return row


def archive(session: Session, caller: Principal, project_id: str) -> Project:
    row = lookup.project(session, caller, project_id, for_update=True)
    active = [t for t in (TaskType.ENGINEERING, TaskType.DEPLOY) if tasks.active_of_type(session, row.id, t)]
    if active:
        raise Conflict(f"project {row.name!r} has running {' and '.join(active)} tasks: cancel them first")
    row.status = ProjectStatus.ARCHIVED.value
    row.updated_at = utcnow()
    session.flush()
    return row


def start_engineering(
    session: Session, settings: ApiSettings, caller: Principal, project_id: str, body: EngineeringStart
) -> Task:
    project = lookup.project(session, caller, project_id, for_update=True)
    limits.check_new_task(session, settings, caller)
    params: dict[str, object] = {"agent": body.agent or project.agent}
    if body.base_ref:
        params["base_ref"] = body.base_ref
    if body.parent_task_id:
        parent = lookup.task(session, caller, body.parent_task_id)
        if parent.project_id != project.id or parent.type != TaskType.DEPLOY.value:
            raise Unprocessable("parent_task_id must be a deploy task of this project", ["parent_task_id"])
        params["parent_task_id"] = parent.id
        params["deploy_fix_attempt"] = body.deploy_fix_attempt
    task, _message = tasks.create(session, caller, project, TaskType.ENGINEERING, body.spec, params)
    return task


def start_deploy(
    session: Session, settings: ApiSettings, caller: Principal, project_id: str, body: DeployStart
) -> Task:
    project = lookup.project(session, caller, project_id, for_update=True)
    server = lookup.server(session, caller, body.server)
    _refuse_concurrent_deploys(session, project)
    limits.check_new_task(session, settings, caller)
    if not limits.holds_port(session, server, project):  # fail now, not in the graph
        limits.check_new_port(session, settings, server, project)
    params = {"server": body.server} | ({"ref": body.ref} if body.ref else {})
    task, _message = tasks.create(session, caller, project, TaskType.DEPLOY, None, params)
    return task


def start_undeploy(session: Session, caller: Principal, project_id: str) -> Task:
    project = lookup.project(session, caller, project_id, for_update=True)
    current = deployments.get_for(session, caller, project.id)
    _refuse_concurrent_deploys(session, project)
    params = {"server": current.server_handle}
    task, _message = tasks.create(session, caller, project, TaskType.UNDEPLOY, None, params)
    return task


def _refuse_concurrent_deploys(session: Session, project: Project) -> None:
    """The project row is locked by the caller: two requests cannot both pass this check."""
    for kind in (TaskType.DEPLOY, TaskType.UNDEPLOY):
        running = tasks.active_of_type(session, project.id, kind)
        if running is not None:
            raise Conflict(
                f"project {project.name!r} already has a {kind.value} in progress (task {running.id})"
            )


def record_repo_sync(
    session: Session, caller: Principal, project_id: str, body: RepoSync
) -> tuple[Project, bool]:
    """The repository's head and pull requests as github_sync saw them: (project, changed), changed for
    exactly one reporter of a flip of `repo_missing` (compare-and-set), which also records the incident."""
    row = lookup.project(session, caller, project_id)
    previous = row.repo_missing
    won = rows_changed(
        session,
        update(Project)
        .where(Project.id == row.id, Project.repo_missing == previous)
        .values(
            repo_missing=body.missing,
            repo_head=None if body.missing else body.head,
            repo_pull_requests=[] if body.missing else body.pull_requests,
            repo_checked_at=utcnow(),
        )
        .execution_options(synchronize_session=False),
    )
    changed = won == 1 and previous != body.missing
    session.refresh(row)
    if changed:
        if body.missing:
            text = f"the repository of {row.name} ({row.repo_url}) is gone from its host"
        else:
            text = f"the repository of {row.name} is back"
        kind = "repo_missing" if body.missing else "repo_back"
        incidents.record(session, row.owner_id, kind, text, project_id=row.id)
    return row, changed
