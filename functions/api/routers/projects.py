"""/projects: a person's projects, and starting engineering / deploy tasks on them."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from functions.api.deps import get_deps
from functions.api.errors import Conflict, Unprocessable
from functions.api.models import Project as ProjectRow
from functions.api.models import new_id, utcnow
from functions.api.routers._common import (
    IdempotencyKeyHeader,
    created,
    idempotency_claim,
    principal,
    transaction,
)
from functions.api.services import deployments, limits, lookup, tasks
from shared.contracts.api import (
    DeployStart,
    EngineeringStart,
    Project,
    ProjectCreate,
    ProjectStatus,
    ProjectUpdate,
    Task,
    TaskType,
)

router = APIGatewayHttpRouter()
TAGS = ["projects"]
ProjectId = Annotated[str, Path(description="The project's id or its name.", max_length=63)]


@router.get("/projects", summary="List projects", tags=TAGS)
def list_projects() -> list[Project]:
    caller = principal(router)
    with transaction() as session:
        stmt = select(ProjectRow).order_by(ProjectRow.created_at)
        if not caller.sees_all():
            stmt = stmt.where(ProjectRow.owner_id == caller.user_id)
        return [Project.model_validate(p) for p in session.execute(stmt).scalars()]


@router.post("/projects", summary="Create a project", tags=TAGS, responses={201: {"description": "Created"}})
def create_project(body: ProjectCreate, idempotency_key: IdempotencyKeyHeader = None) -> Response[Project]:
    caller = principal(router)
    with transaction() as session:
        claim = idempotency_claim(router, session, idempotency_key, body)
        if claim.replay:
            return created(claim.replay.body, claim.replay.status)
        if session.execute(select(ProjectRow.id).where(ProjectRow.name == body.name)).first():
            # names are unique across owners: the answer must not tell whose it is, or that it is a project
            raise Conflict(f"the name {body.name!r} is not available", ["name"])
        limits.check_new_project(session, get_deps().settings, caller)
        now = utcnow()
        row = ProjectRow(
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
        dto = Project.model_validate(row)
        claim.remember(session, dto, 201)
        return created(dto)


@router.get("/projects/<project_id>", summary="Show a project", tags=TAGS)
def get_project(project_id: ProjectId) -> Project:
    with transaction() as session:
        return Project.model_validate(lookup.project(session, principal(router), project_id))


@router.patch("/projects/<project_id>", summary="Update a project", tags=TAGS)
def update_project(project_id: ProjectId, body: ProjectUpdate) -> Project:
    with transaction() as session:
        row = lookup.project(session, principal(router), project_id, for_update=True)
        changes = body.model_dump(exclude_unset=True)
        if row.status == ProjectStatus.ARCHIVED.value and changes and set(changes) != {"status"}:
            raise Conflict(f"project {row.name!r} is archived: set its status back first", list(changes))
        for key, value in changes.items():
            setattr(row, key, value.value if isinstance(value, ProjectStatus) else value)
        row.updated_at = utcnow()
        session.flush()
        return Project.model_validate(row)


@router.delete("/projects/<project_id>", summary="Archive a project", tags=TAGS)
def archive_project(project_id: ProjectId) -> Project:
    with transaction() as session:
        row = lookup.project(session, principal(router), project_id, for_update=True)
        active = [
            t for t in (TaskType.ENGINEERING, TaskType.DEPLOY) if tasks.active_of_type(session, row.id, t)
        ]
        if active:
            raise Conflict(
                f"project {row.name!r} has running {' and '.join(active)} tasks: cancel them first"
            )
        row.status = ProjectStatus.ARCHIVED.value
        row.updated_at = utcnow()
        session.flush()
        return Project.model_validate(row)


@router.post(
    "/projects/<project_id>/engineering",
    summary="Start engineering on a project",
    tags=TAGS,
    responses={202: {"description": "Accepted: the task is queued"}},
)
def start_engineering(
    project_id: ProjectId, body: EngineeringStart, idempotency_key: IdempotencyKeyHeader = None
) -> Response[Task]:
    caller = principal(router)
    with transaction() as session:
        claim = idempotency_claim(router, session, idempotency_key, body)
        if claim.replay:
            return created(claim.replay.body, claim.replay.status)
        project = lookup.project(session, caller, project_id, for_update=True)
        limits.check_new_task(session, get_deps().settings, caller)
        params: dict[str, object] = {"agent": body.agent or project.agent}
        if body.base_ref:
            params["base_ref"] = body.base_ref
        if body.parent_task_id:
            parent = lookup.task(session, caller, body.parent_task_id)
            if parent.project_id != project.id or parent.type != TaskType.DEPLOY.value:
                raise Unprocessable(
                    "parent_task_id must be a deploy task of this project", ["parent_task_id"]
                )
            params["parent_task_id"] = parent.id
            params["deploy_fix_attempt"] = body.deploy_fix_attempt
        task, _message = tasks.create(session, caller, project, TaskType.ENGINEERING, body.spec, params)
        dto = Task.model_validate(task)
        claim.remember(session, dto, 202)
    return created(dto, 202)


@router.post(
    "/projects/<project_id>/deploy",
    summary="Deploy a project to a server",
    tags=TAGS,
    responses={
        202: {"description": "Accepted: the task is queued"},
        409: {"description": "A deploy already runs"},
    },
)
def start_deploy(
    project_id: ProjectId, body: DeployStart, idempotency_key: IdempotencyKeyHeader = None
) -> Response[Task]:
    caller = principal(router)
    with transaction() as session:
        claim = idempotency_claim(router, session, idempotency_key, body)
        if claim.replay:
            return created(claim.replay.body, claim.replay.status)
        project = lookup.project(session, caller, project_id, for_update=True)
        server = lookup.server(session, caller, body.server)
        _refuse_concurrent_deploys(session, project)
        limits.check_new_task(session, get_deps().settings, caller)
        if not limits.holds_port(session, server, project):  # fail now, not in the graph
            limits.check_new_port(session, get_deps().settings, server, project)
        params = {"server": body.server} | ({"ref": body.ref} if body.ref else {})
        task, _message = tasks.create(session, caller, project, TaskType.DEPLOY, None, params)
        dto = Task.model_validate(task)
        claim.remember(session, dto, 202)
    return created(dto, 202)


def _refuse_concurrent_deploys(session: Session, project: ProjectRow) -> None:
    """The project row is locked by the caller: two requests cannot both pass this check."""
    for kind in (TaskType.DEPLOY, TaskType.UNDEPLOY):
        running = tasks.active_of_type(session, project.id, kind)
        if running is not None:
            raise Conflict(
                f"project {project.name!r} already has a {kind.value} in progress (task {running.id})"
            )


@router.post(
    "/projects/<project_id>/undeploy",
    summary="Stop a deployed project and free its port",
    tags=TAGS,
    responses={
        202: {"description": "Accepted: the task is queued"},
        404: {"description": "Never deployed"},
        409: {"description": "A deploy or undeploy already runs"},
    },
)
def start_undeploy(project_id: ProjectId) -> Response[Task]:
    caller = principal(router)
    with transaction() as session:
        project = lookup.project(session, caller, project_id, for_update=True)
        current = deployments.get_for(session, caller, project.id)
        _refuse_concurrent_deploys(session, project)
        task, _message = tasks.create(
            session, caller, project, TaskType.UNDEPLOY, None, {"server": current.server_handle}
        )
        dto = Task.model_validate(task)
    return created(dto, 202)
