"""/projects: a person's projects, and starting engineering / deploy tasks on them."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api.deps import get_deps
from functions.api.routers._common import (
    IdempotencyKeyHeader,
    create_once,
    created,
    idempotent_request,
    new_router,
    principal,
    replied,
    transaction,
)
from functions.api.services import idempotency, lookup, projects
from shared.contracts.api import (
    PROJECTS_PAGE_MAX,
    DeployStart,
    EngineeringStart,
    Page,
    Project,
    ProjectCreate,
    ProjectUpdate,
    Task,
)
from shared.contracts.projects import ProjectDeleted

router = new_router()
TAGS = ["projects"]
ProjectId = Annotated[str, Path(description="The project's id or its name.", max_length=63)]


@router.get("/projects", summary="List projects, oldest first (cursor pagination)", tags=TAGS)
def list_projects(
    limit: Annotated[int, Query(ge=1, le=PROJECTS_PAGE_MAX)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[Project]:
    caller = principal(router)
    with transaction() as session:
        items, next_cursor = projects.list_page(session, caller, limit, cursor)
    return Page[Project](items=items, next_cursor=next_cursor)


@router.post("/projects", summary="Create a project", tags=TAGS, responses={201: {"description": "Created"}})
def create_project(body: ProjectCreate, idempotency_key: IdempotencyKeyHeader = None) -> Response[Project]:
    caller = principal(router)
    request = idempotent_request(router, idempotency_key, body)
    settings = get_deps().settings
    with transaction() as session:
        return replied(
            idempotency.once(
                session,
                request,
                201,
                lambda: Project.model_validate(projects.create(session, settings, caller, body)),
            )
        )


@router.get("/projects/<project_id>", summary="Show a project", tags=TAGS)
def get_project(project_id: ProjectId) -> Project:
    with transaction() as session:
        return Project.model_validate(lookup.project(session, principal(router), project_id, shown=True))


@router.patch("/projects/<project_id>", summary="Update a project", tags=TAGS)
def update_project(project_id: ProjectId, body: ProjectUpdate) -> Project:
    with transaction() as session:
        return Project.model_validate(projects.change(session, principal(router), project_id, body))


@router.delete("/projects/<project_id>", summary="Archive a project (its data and name stay)", tags=TAGS)
def archive_project(project_id: ProjectId) -> Project:
    with transaction() as session:
        return Project.model_validate(projects.archive(session, principal(router), project_id))


@router.post(
    "/projects/<project_id>/delete",
    summary="Delete a project: its ports, secrets and tasks go, its name is free again, its repository stays",
    tags=TAGS,
    responses={
        404: {"description": "No such project (or someone else's)"},
        409: {"description": "A task of the project runs, or it is still deployed (stop it first)"},
    },
)
def delete_project(project_id: ProjectId) -> ProjectDeleted:
    with transaction() as session:
        deleted, secret_references = projects.delete_project(session, principal(router), project_id)
    secrets = get_deps().secrets
    for reference in secret_references:  # after the commit: a failed delete leaves a row-less value
        secrets.delete(reference)
    return deleted


@router.post(
    "/projects/<project_id>/engineering",
    summary="Start engineering on a project",
    tags=TAGS,
    responses={202: {"description": "Accepted: the task is queued"}},
)
def start_engineering(
    project_id: ProjectId, body: EngineeringStart, idempotency_key: IdempotencyKeyHeader = None
) -> Response[Task]:
    settings = get_deps().settings
    return create_once(
        router,
        idempotency_key,
        body,
        202,
        lambda session, caller: Task.model_validate(
            projects.start_engineering(session, settings, caller, project_id, body)
        ),
    )


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
    settings = get_deps().settings
    return create_once(
        router,
        idempotency_key,
        body,
        202,
        lambda session, caller: Task.model_validate(
            projects.start_deploy(session, settings, caller, project_id, body)
        ),
    )


@router.post(
    "/projects/<project_id>/undeploy",
    summary="Stop a deployed project and free its port",
    tags=TAGS,
    responses={
        200: {"description": "Already stopped: the undeploy task that stopped it (nothing is redone)"},
        202: {"description": "Accepted: the task is queued"},
        404: {"description": "Never deployed"},
        409: {"description": "A deploy or undeploy already runs"},
    },
)
def start_undeploy(project_id: ProjectId) -> Response[Task]:
    caller = principal(router)
    with transaction() as session:
        task, queued = projects.start_undeploy(session, caller, project_id)
        dto = Task.model_validate(task)
    return created(dto, 202 if queued else 200)
