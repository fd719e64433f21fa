"""Releases: one per deploy task, numbered 1, 2, 3... per project; the project's current release is its one
`serving` row. The deploy graph starts and finishes them (service scope); owners list them and roll back."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import added, rows_changed
from functions.api.errors import Conflict, NotFound, Unprocessable
from functions.api.models import Project, Release, Server, Task, new_id, utcnow
from functions.api.services import lookup, projects
from functions.api.settings import ApiSettings
from shared.contracts.api import DeployParams, DeployStart, TaskType
from shared.contracts.releases import Release as ReleaseDto
from shared.contracts.releases import ReleaseFinish, ReleaseStart

NUMBER_ATTEMPTS = 5
"""Retries when a concurrent start took the number (the project row lock makes this rare)."""


def to_dto(row: Release, server_handle: str | None) -> ReleaseDto:
    return ReleaseDto.model_validate(row).model_copy(update={"server_handle": server_handle})


def _dto(session: Session, row: Release) -> ReleaseDto:
    handle = session.execute(select(Server.handle).where(Server.id == row.server_id)).scalar_one_or_none()
    return to_dto(row, handle)


def _by_task(session: Session, task_id: str) -> Release | None:
    return session.execute(select(Release).where(Release.task_id == task_id)).scalar_one_or_none()


def _deploy_task(session: Session, project: Project, task_id: str) -> Task:
    task = session.get(Task, task_id)
    if task is None or task.project_id != project.id or task.type != TaskType.DEPLOY.value:
        raise Unprocessable(f"task_id must name a deploy task of project {project.name!r}", ["task_id"])
    return task


def start(session: Session, caller: Principal, body: ReleaseStart) -> tuple[ReleaseDto, bool]:
    """(release, created). One release per deploy task: a repeat (a redelivered message, a fix round, a
    retry) returns the task's release; while it is `deploying` (or `failed`: a retry reopens it) what it
    ships and where are updated. The project row is locked, so two starts never take one number."""
    caller.require_service()
    project = lookup.project(session, caller, body.project_id, for_update=True)
    server = lookup.server(session, caller, body.server_handle)
    task = _deploy_task(session, project, body.task_id)
    rollback_of = body.rollback_of or DeployParams.model_validate(task.params or {}).rollback_of
    for _attempt in range(NUMBER_ATTEMPTS):
        existing = _by_task(session, task.id)
        if existing is not None:
            _resume(existing, body, server, rollback_of)
            session.flush()
            return to_dto(existing, server.handle if existing.server_id == server.id else None), False
        number = (
            session.execute(
                select(func.max(Release.number)).where(Release.project_id == project.id)
            ).scalar_one_or_none()
            or 0
        ) + 1
        row = Release(
            id=new_id(),
            project_id=project.id,
            number=number,
            task_id=task.id,
            commit_sha=body.commit_sha,
            ref=body.ref,
            server_id=server.id,
            slot=body.slot,
            port=body.port,
            status="deploying",
            requested_by=task.user_id,
            rollback_of=rollback_of,
            created_at=utcnow(),
        )
        if not added(session, row):
            continue  # a concurrent start took the number (or this task's release): look again
        return to_dto(row, server.handle), True
    raise Conflict(f"could not number a release of {project.name!r}: too much contention, try again")


def _resume(row: Release, body: ReleaseStart, server: Server, rollback_of: int | None) -> None:
    if row.status not in ("deploying", "failed"):
        return  # it served: a late repeat changes nothing
    row.commit_sha, row.ref, row.server_id = body.commit_sha, body.ref, server.id
    row.slot, row.port, row.rollback_of = body.slot, body.port, rollback_of
    row.status, row.error, row.finished_at = "deploying", None, None


def finish(session: Session, caller: Principal, release_id: str, body: ReleaseFinish) -> ReleaseDto:
    """Compare-and-set from `deploying`. `serving` supersedes the project's previous serving release in the
    same transaction (under the project row lock: two releases never serve at once). The same status again
    returns the row unchanged; another change is a 409 naming `status`."""
    caller.require_service()
    found = session.get(Release, release_id)
    if found is None:
        raise NotFound(f"release {release_id!r} not found")
    session.execute(select(Project.id).where(Project.id == found.project_id).with_for_update())
    session.refresh(found)
    if found.status == body.status:
        return _dto(session, found)
    now = utcnow()
    won = rows_changed(
        session,
        update(Release)
        .where(Release.id == found.id, Release.status == "deploying")
        .values(status=body.status, url=body.url, error=body.error, finished_at=now)
        .execution_options(synchronize_session=False),
    )
    session.refresh(found)
    if won != 1:
        if found.status == body.status:
            return _dto(session, found)
        raise Conflict(
            f"release {found.number} is {found.status}: it cannot become {body.status}", ["status"]
        )
    if body.status == "serving":
        session.execute(
            update(Release)
            .where(
                Release.project_id == found.project_id, Release.status == "serving", Release.id != found.id
            )
            .values(status="superseded")
            .execution_options(synchronize_session=False)
        )
    return _dto(session, found)


def list_page(
    session: Session, caller: Principal, project_id: str, limit: int, cursor: str | None, status: str | None
) -> tuple[list[ReleaseDto], str | None]:
    """Newest first; the cursor is the last number of the previous page."""
    project = lookup.project(session, caller, project_id)
    where: list[object] = [Release.project_id == project.id]
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 10:
            raise Unprocessable("cursor is not valid: pass next_cursor from a previous page", ["cursor"])
        where.append(Release.number < int(cursor))
    if status is not None:
        where.append(Release.status == status)
    rows = _select(session, where, limit + 1)
    page = rows[:limit]
    return page, str(page[-1].number) if len(rows) > limit else None


def _select(session: Session, where: list[object], limit: int) -> list[ReleaseDto]:
    stmt = (
        select(Release, Server.handle)
        .outerjoin(Server, Server.id == Release.server_id)
        .where(*where)  # type: ignore[arg-type]
        .order_by(Release.number.desc())
        .limit(limit)
    )
    return [to_dto(row, handle) for row, handle in session.execute(stmt).all()]


def get(session: Session, caller: Principal, project_id: str, number: int) -> ReleaseDto:
    project = lookup.project(session, caller, project_id)
    found = _select(session, [Release.project_id == project.id, Release.number == number], 1)
    if not found:
        raise NotFound(f"project {project.name!r} has no release {number}", ["number"])
    return found[0]


def rollback_target(session: Session, project: Project, to: int | None) -> ReleaseDto:
    """The release a rollback ships: release `to`, or (None) the newest superseded release older than the
    current one. 404 / 409 naming `to` when there is none, it never served, or it serves now."""
    current = _select(session, [Release.project_id == project.id, Release.status == "serving"], 1)
    if to is None:
        if not current:
            raise Conflict(
                f"project {project.name!r} has no serving release to roll back from: name one with to",
                ["to"],
            )
        earlier = _select(
            session,
            [
                Release.project_id == project.id,
                Release.status == "superseded",
                Release.number < current[0].number,
            ],
            1,
        )
        if not earlier:
            raise NotFound(
                f"project {project.name!r} has no earlier release to roll back to "
                f"(release {current[0].number} is the first that served)",
                ["to"],
            )
        return earlier[0]
    found = _select(session, [Release.project_id == project.id, Release.number == to], 1)
    if not found:
        raise NotFound(f"project {project.name!r} has no release {to}", ["to"])
    target = found[0]
    if target.status == "serving":
        raise Conflict(f"release {to} of {project.name!r} is serving now: nothing to roll back", ["to"])
    if target.status != "superseded":
        raise Conflict(
            f"release {to} of {project.name!r} never served ({target.status}): roll back to one that did",
            ["to"],
        )
    if target.server_handle is None:
        raise Conflict(f"the server release {to} of {project.name!r} ran on is gone", ["to"])
    return target


def rollback(
    session: Session, settings: ApiSettings, caller: Principal, project_id: str, to: int | None
) -> Task:
    """A deploy task (made the way `deploy start` makes one: same checks, same queue) shipping the target
    release's commit to the server it ran on, with `rollback_of` naming it."""
    project = lookup.project(session, caller, project_id, for_update=True)
    target = rollback_target(session, project, to)
    assert target.server_handle is not None  # rollback_target refuses a release whose server is gone
    body = DeployStart(server=target.server_handle, ref=target.commit_sha)
    return projects.start_deploy(session, settings, caller, project.id, body, rollback_of=target.number)
