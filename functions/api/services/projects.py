"""Projects: a person's projects, and starting engineering / deploy / undeploy tasks on them."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import from_json
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from functions.api.auth import Principal
from functions.api.db import rows_changed
from functions.api.errors import Conflict, NotFound, Unprocessable
from functions.api.models import (
    Deployment,
    Incident,
    PortAllocation,
    Project,
    ProjectSecret,
    Release,
    Server,
    Task,
    TaskEvent,
    TaskNotification,
    Worker,
    as_utc,
    new_id,
    utcnow,
)
from functions.api.services import deployments, gates, incidents, limits, lookup, pages, tasks
from functions.api.settings import ApiSettings
from shared.contracts.api import (
    DeployStart,
    EngineeringStart,
    ProjectCreate,
    ProjectStatus,
    ProjectUpdate,
    RepoSync,
    TaskStatus,
    TaskType,
)
from shared.contracts.projects import Project as ProjectView
from shared.contracts.projects import ProjectDeleted


def list_page(
    session: Session, caller: Principal, limit: int, cursor: str | None
) -> tuple[list[ProjectView], str | None]:
    """The caller's projects (everyone's for admins and services), oldest first, a page at a time.

    One statement: the live URL comes from a join, and rows go straight to the response model without
    becoming ORM objects (building those cost more than the query on a 300-project listing). On PostgreSQL
    the database writes the page as one JSON document (`_json_page`)."""
    mine, after = not caller.sees_all(), bool(cursor)
    params: dict[str, Any] = {"limit": limit + 1}
    if mine:
        params["owner"] = caller.user_id
    if cursor:
        params["created"], params["last_id"] = pages.decode_cursor(cursor)
    # Core, not `session.execute`: plain rows need none of the ORM's result handling
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        document = connection.execute(_json_page(mine, after), params).scalar_one()
        return pages.page_of(_views().validate_json(document), limit)
    result = connection.execute(_rows_page(mine, after), params)
    keys = tuple(result.keys())
    return pages.page_of(_views().validate_python([_stored_values(keys, row) for row in result]), limit)


def _page_query(columns: Sequence[ColumnElement[Any]], mine: bool, after: bool) -> Select[Any]:
    """A page of projects with their live URL, oldest first: `:owner`'s only if `mine`, after the cursor's
    (`:created`, `:last_id`) if `after`, at most `:limit` rows."""
    live = and_(Deployment.project_id == Project.id, Deployment.status == "deployed")
    stmt = select(*columns, Deployment.url.label("deployed_url")).outerjoin(Deployment, live)
    if mine:
        stmt = stmt.where(Project.owner_id == bindparam("owner"))
    if after:
        created = bindparam("created", type_=Project.created_at.type)
        last_id = bindparam("last_id", type_=Project.id.type)
        stmt = stmt.where(
            or_(Project.created_at > created, and_(Project.created_at == created, Project.id > last_id))
        )
    return stmt.order_by(Project.created_at, Project.id).limit(bindparam("limit"))


@functools.cache
def _rows_page(mine: bool, after: bool) -> Select[Any]:
    return _page_query(_listed_columns(), mine, after)


@functools.cache
def _json_page(mine: bool, after: bool) -> Select[Any]:
    """PostgreSQL: the page as one JSON array, built by the database (`json_agg` over a record per row).
    Decoding and converting each of the page's values in Python was most of a listing's CPU (300 projects:
    ~4 ms, against ~1 ms for the database to write the document and pydantic to read it in one call).

    Times are written as UTC text ending in `Z` whatever the session's `TimeZone` (pg8000 already needs the
    `DateStyle` ISO); stored JSON columns go in as JSON. The record's fields are the listing's columns,
    so the document holds exactly what `_rows_page` reads (tests/integration/api/
    test_projects_listing_values.py compares the answers byte for byte)."""
    from sqlalchemy.dialects.postgresql import aggregate_order_by  # only PostgreSQL's listing needs it

    page = _page_query(list(Project.__table__.columns), mine, after).subquery("s")
    fields = ", ".join(
        f"timezone('UTC', s.{name})::text || 'Z' AS {name}" if name in _STORED_TIMES else f"s.{name}"
        for name in page.c.keys()
    )
    record: ColumnElement[Any] = literal_column(f"(SELECT r FROM (SELECT {fields}) AS r)")
    listed = func.json_agg(aggregate_order_by(record, page.c.created_at, page.c.id))
    return select(cast(func.coalesce(listed, literal_column("'[]'::json")), Text)).select_from(page)


@functools.cache
def _views() -> TypeAdapter[list[ProjectView]]:
    """A page's rows validated in one call (one per row cost a fifth more)."""
    return TypeAdapter(list[ProjectView])


_STORED_JSON = ("modules", "repo_pull_requests")
_STORED_TIMES = ("created_at", "updated_at", "repo_checked_at")


def _listed_columns() -> list[ColumnElement[Any]]:
    """The project's columns with JSON read as its stored text and times as the driver gives them (text on
    SQLite, aware datetimes from pg8000). Through their column types SQLAlchemy decoded each value in Python
    (`json.loads`, a regex per SQLite time, a time-zone fix): a fifth of a listing's CPU on SQLite. `_stored_values`
    converts them with C parsers instead, to the same values (tests/integration/api/
    test_projects_listing_values.py compares the answers byte for byte)."""
    columns: list[ColumnElement[Any]] = []
    for column in Project.__table__.columns:
        if column.name in _STORED_JSON:
            columns.append(cast(column, Text).label(column.name))
        elif column.name in _STORED_TIMES:
            columns.append(type_coerce(column, String).label(column.name))
        else:
            columns.append(column)
    return columns


def _stored_values(keys: tuple[str, ...], row: Sequence[Any]) -> dict[str, Any]:
    """One row's values as the response model takes them: keys zipped once per result (`Row._asdict` rebuilt
    them per row), JSON and times converted."""
    item = dict(zip(keys, row, strict=True))
    for name in _STORED_JSON:
        stored = item[name]
        item[name] = None if stored is None else from_json(stored)
    for name in _STORED_TIMES:
        item[name] = _utc(item[name])
    return item


def _utc(stored: str | datetime | None) -> datetime | None:
    """What `models.UtcDateTime` reads: SQLite keeps naive UTC text, PostgreSQL an aware time."""
    if isinstance(stored, str):  # the offset read with the text: 5x faster than `.replace(tzinfo=UTC)`
        return datetime.fromisoformat(stored + "+00:00")
    return as_utc(stored)


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
    set_committed_value(row, "deployment", None)  # a new project runs nowhere: no query to learn that
    return row


def change(session: Session, caller: Principal, project_id: str, body: ProjectUpdate) -> Project:
    row = lookup.project(session, caller, project_id, for_update=True)
    changes = body.model_dump(exclude_unset=True)
    if row.status == ProjectStatus.ARCHIVED.value and changes and set(changes) != {"status"}:
        raise Conflict(f"project {row.name!r} is archived: set its status back first", list(changes))
    if changes.get("domain") is not None:
        _refuse_taken_domain(session, row, changes["domain"])
    if "approval" in changes:  # stored as "deploy,plan" / "none"; "default" and null clear it
        changes["approval"] = gates.normal_policy(changes["approval"])
    for key, value in changes.items():
        setattr(row, key, value.value if isinstance(value, ProjectStatus) else value)
    row.updated_at = utcnow()
    session.flush()
    return row


def _refuse_taken_domain(session: Session, row: Project, domain: str) -> None:
    """One project per domain (the unique index is the backstop): the answer does not say whose it is."""
    taken = session.execute(select(Project.id).where(Project.domain == domain, Project.id != row.id)).first()
    if taken:
        raise Conflict(f"the domain {domain!r} is already used by another project", ["domain"])


def archive(session: Session, caller: Principal, project_id: str) -> Project:
    row = lookup.project(session, caller, project_id, for_update=True)
    active = [t for t in (TaskType.ENGINEERING, TaskType.DEPLOY) if tasks.active_of_type(session, row.id, t)]
    if active:
        raise Conflict(f"project {row.name!r} has running {' and '.join(active)} tasks: cancel them first")
    row.status = ProjectStatus.ARCHIVED.value
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_project(session: Session, caller: Principal, project_id: str) -> tuple[ProjectDeleted, list[str]]:
    """Delete the project and everything the database holds for it: its ports go back to their servers,
    its secrets' rows go (the caller deletes their values, the second item, after the commit), and its
    finished tasks go with their events. Refused while a task runs or the project is still deployed
    (stopping it is an undeploy task: `deploy stop` first). The repository is kept."""
    row = lookup.project(session, caller, project_id, for_update=True)
    _refuse_while_busy(session, row)
    ports = session.execute(
        select(Server.handle, PortAllocation.port)
        .join(Server, Server.id == PortAllocation.server_id)
        .where(PortAllocation.project_id == row.id)
        .order_by(PortAllocation.port)
    ).all()
    secrets = list(
        session.execute(
            select(ProjectSecret).where(ProjectSecret.project_id == row.id).order_by(ProjectSecret.name)
        ).scalars()
    )
    task_ids = select(Task.id).where(Task.project_id == row.id).scalar_subquery()
    deleted_tasks = len(session.execute(select(Task.id).where(Task.project_id == row.id)).all())
    session.execute(update(Worker).where(Worker.task_id.in_(task_ids)).values(task_id=None))
    for model in (TaskEvent, TaskNotification):
        session.execute(delete(model).where(model.task_id.in_(task_ids)))
    session.execute(delete(Task).where(Task.project_id == row.id))
    for owned in (PortAllocation, ProjectSecret, Deployment, Incident, Release):
        session.execute(delete(owned).where(owned.project_id == row.id))
    result = ProjectDeleted(
        id=row.id,
        name=row.name,
        freed_ports=[f"{handle}:{port}" for handle, port in ports],
        removed_secrets=[s.name for s in secrets],
        deleted_tasks=deleted_tasks,
        repo_url=row.repo_url,
    )
    session.delete(row)
    session.flush()
    return result, [s.reference for s in secrets]


def _refuse_while_busy(session: Session, project: Project) -> None:
    running = session.execute(
        select(Task)
        .where(Task.project_id == project.id, Task.status.in_([s.value for s in tasks.ACTIVE]))
        .order_by(Task.created_at)
        .limit(1)
    ).scalar_one_or_none()
    if running is not None:
        raise Conflict(
            f"project {project.name!r} has a task in progress ({running.type} task {running.id}, "
            f"{running.status}): cancel it first (orchestrator task cancel {running.id[:8]})"
        )
    deployed = session.execute(
        select(Deployment).where(Deployment.project_id == project.id, Deployment.status == "deployed")
    ).scalar_one_or_none()
    if deployed is not None:
        raise Conflict(
            f"project {project.name!r} is deployed (port {deployed.port}): stop it first "
            f"(orchestrator deploy stop {project.name})"
        )


def start_engineering(
    session: Session, settings: ApiSettings, caller: Principal, project_id: str, body: EngineeringStart
) -> Task:
    project = lookup.project(session, caller, project_id, for_update=True)
    limits.check_new_task(session, settings, caller)
    params: dict[str, object] = {"agent": body.agent or project.agent}
    if body.base_ref:
        params["base_ref"] = body.base_ref
    if body.no_merge:
        params["no_merge"] = True
    if body.parent_task_id:
        parent = lookup.task(session, caller, body.parent_task_id)
        if parent.project_id != project.id or parent.type != TaskType.DEPLOY.value:
            raise Unprocessable("parent_task_id must be a deploy task of this project", ["parent_task_id"])
        params["parent_task_id"] = parent.id
        params["deploy_fix_attempt"] = body.deploy_fix_attempt
    task, _message = tasks.create(session, caller, project, TaskType.ENGINEERING, body.spec, params)
    return task


def start_deploy(
    session: Session,
    settings: ApiSettings,
    caller: Principal,
    project_id: str,
    body: DeployStart,
    rollback_of: int | None = None,
) -> Task:
    """A deploy task; `rollback_of` (services.releases.rollback): the release whose commit `body.ref` is."""
    project = lookup.project(session, caller, project_id, for_update=True)
    server = lookup.server(session, caller, body.server)
    _refuse_concurrent_deploys(session, project)
    limits.check_new_task(session, settings, caller)
    if not limits.holds_port(session, server, project):  # fail now, not in the graph
        limits.check_new_port(session, settings, server, project)
    params: dict[str, object] = {"server": body.server}
    if body.ref:
        params["ref"] = body.ref
    if rollback_of is not None:
        params["rollback_of"] = rollback_of
    task, _message = tasks.create(session, caller, project, TaskType.DEPLOY, None, params)
    return task


def start_undeploy(session: Session, caller: Principal, project_id: str) -> tuple[Task, bool]:
    """(task, queued): a new undeploy task, or, for a project already stopped, the undeploy that stopped
    it (queued=False): a second stop does not redo the work."""
    project = lookup.project(session, caller, project_id, for_update=True)
    try:
        current = deployments.get_for(session, caller, project.id)
    except NotFound:
        return _start_cleanup(session, caller, project), True
    _refuse_concurrent_deploys(session, project)
    if current.status == "stopped":
        done = _last_undeploy(session, project)
        if done is not None:
            return done, False
    params = {"server": current.server_handle}
    task, _message = tasks.create(session, caller, project, TaskType.UNDEPLOY, None, params)
    return task, True


def _last_undeploy(session: Session, project: Project) -> Task | None:
    return session.execute(
        select(Task)
        .where(
            Task.project_id == project.id,
            Task.type == TaskType.UNDEPLOY.value,
            Task.status == TaskStatus.COMPLETED.value,
        )
        .order_by(Task.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()


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


def _start_cleanup(session: Session, caller: Principal, project: Project) -> Task:
    """Never deployed, but a failed deploy may have left its directory (with the service log) or, before
    failed deploys freed theirs, a port: an undeploy task on that server cleans up and says what it did.
    Nothing left (or cleaned up already, the newest task): the NotFound of a project never deployed."""
    _refuse_concurrent_deploys(session, project)
    held = session.execute(
        select(Server.handle)
        .join(PortAllocation, PortAllocation.server_id == Server.id)
        .where(PortAllocation.project_id == project.id)
        .limit(1)
    ).scalar_one_or_none()
    failed = session.execute(
        select(Task)
        .where(Task.project_id == project.id, Task.type.in_((TaskType.DEPLOY.value, TaskType.UNDEPLOY.value)))
        .order_by(Task.created_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    server = held or (
        (failed.params or {}).get("server")
        if failed is not None
        and (failed.type, failed.status) == (TaskType.DEPLOY.value, TaskStatus.FAILED.value)
        else None
    )
    if not server:
        raise NotFound(f"project {project.name!r} has never been deployed: nothing to stop")
    task, _message = tasks.create(session, caller, project, TaskType.UNDEPLOY, None, {"server": server})
    return task
