"""/projects/{id}/releases and /rollback: a project's release history and going back to an earlier one.
/internal/releases: the deploy graph starts and finishes releases (service scope). Also freeing every port
a project holds on a server (its stable port and both release slots'), what an undeploy does."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api.deps import get_deps
from functions.api.routers._common import (
    IdempotencyKeyHeader,
    create_once,
    created,
    new_router,
    principal,
    transaction,
)
from functions.api.services import releases, servers
from shared.contracts.api import (
    Id,
    Page,
    PortAllocation,
    Release,
    ReleaseFinish,
    ReleaseStart,
    ReleaseStatus,
    RollbackRequest,
    Task,
)

router = new_router()
TAGS = ["releases"]
ProjectId = Annotated[str, Path(description="The project's id or its name.", max_length=63)]


@router.get(
    "/projects/<project_id>/releases",
    summary="A project's releases, newest first (cursor pagination)",
    tags=TAGS,
    responses={404: {"description": "No such project (or someone else's)"}},
)
def list_releases(
    project_id: ProjectId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=20)] = None,
    status: Annotated[ReleaseStatus | None, Query(description="Only this status.")] = None,
) -> Page[Release]:
    caller = principal(router)
    with transaction() as session:
        items, next_cursor = releases.list_page(session, caller, project_id, limit, cursor, status)
    return Page[Release](items=items, next_cursor=next_cursor)


@router.get(
    "/projects/<project_id>/releases/<number>",
    summary="One release of a project, by its number",
    tags=TAGS,
    responses={404: {"description": "No such project or release"}},
)
def get_release(project_id: ProjectId, number: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Release:
    with transaction() as session:
        return releases.get(session, principal(router), project_id, number)


@router.post(
    "/projects/<project_id>/rollback",
    summary="Deploy an earlier release's commit again (default: the release before the current one)",
    tags=TAGS,
    responses={
        202: {"description": "Accepted: the deploy task is queued"},
        404: {"description": "No such project, no such release, or no earlier release (`to`)"},
        409: {"description": "The release never served or serves now (`to`), or a deploy already runs"},
    },
)
def rollback(
    project_id: ProjectId, body: RollbackRequest, idempotency_key: IdempotencyKeyHeader = None
) -> Response[Task]:
    settings = get_deps().settings
    return create_once(
        router,
        idempotency_key,
        body,
        202,
        lambda session, caller: Task.model_validate(
            releases.rollback(session, settings, caller, project_id, body.to)
        ),
    )


@router.post(
    "/internal/releases",
    summary="Start (or resume) the release of a deploy task; one per task",
    tags=["internal"],
    responses={
        200: {"description": "The task's release already existed (updated while still deploying)"},
        201: {"description": "Created with the project's next number"},
        422: {"description": "task_id is not a deploy task of the project"},
    },
)
def start_release(body: ReleaseStart) -> Response[Release]:
    caller = principal(router)
    with transaction() as session:
        release, is_new = releases.start(session, caller, body)
    return created(release, 201 if is_new else 200)


@router.post(
    "/internal/releases/<release_id>/finish",
    summary="Finish a release: serving (supersedes the previous one) or failed; compare-and-set",
    tags=["internal"],
    responses={
        404: {"description": "No such release"},
        409: {"description": "It finished otherwise already (`status`)"},
    },
)
def finish_release(release_id: Annotated[str, Path(max_length=36)], body: ReleaseFinish) -> Release:
    with transaction() as session:
        return releases.finish(session, principal(router), release_id, body)


@router.delete(
    "/servers/<handle>/ports",
    summary="Free every port a project holds on a server (its stable port and its slots'; an undeploy)",
    tags=["servers"],
    responses={404: {"description": "No such server or project"}},
)
def free_project_ports(
    handle: Annotated[str, Path(max_length=63)],
    project_id: Annotated[Id, Query(description="The project's id or name.")],
) -> list[PortAllocation]:
    caller = principal(router)
    with transaction() as session:
        return servers.free_project_ports(session, caller, handle, project_id)
