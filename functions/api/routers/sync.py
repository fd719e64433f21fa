"""/incidents (what the owner is told) and the repository sync the scheduler reports."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api.routers._common import new_router, principal, transaction
from functions.api.services import incidents, projects
from shared.contracts.api import Incident, Project, RepoSync, RepoSyncResult

router = new_router()
ProjectId = Annotated[str, Path(description="The project's id or its name.", max_length=63)]


@router.get("/incidents", summary="Recent incidents of the caller's projects and servers", tags=["incidents"])
def list_incidents(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[Incident]:
    with transaction() as session:
        return [Incident.model_validate(r) for r in incidents.list_for(session, principal(router), limit)]


@router.post(
    "/internal/projects/<project_id>/repo-sync",
    summary="Record the repository's head and pull requests (github_sync); changed=true once per flip",
    tags=["internal"],
)
def repo_sync(project_id: ProjectId, body: RepoSync) -> RepoSyncResult:
    caller = principal(router)
    caller.require_service()
    with transaction() as session:
        row, changed = projects.record_repo_sync(session, caller, project_id, body)
        return RepoSyncResult(project=Project.model_validate(row), changed=changed)
