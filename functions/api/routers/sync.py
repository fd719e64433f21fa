"""/incidents (what the owner is told) and the repository sync the scheduler reports."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from sqlalchemy import update

from functions.api.models import Project as ProjectRow
from functions.api.models import utcnow
from functions.api.routers._common import principal, transaction
from functions.api.services import incidents, lookup
from shared.contracts.api import Incident, Project, RepoSync, RepoSyncResult

router = APIGatewayHttpRouter()
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
        row = lookup.project(session, caller, project_id)
        previous = row.repo_missing
        result = session.execute(
            update(ProjectRow)
            .where(ProjectRow.id == row.id, ProjectRow.repo_missing == previous)
            .values(repo_missing=body.missing, repo_head=None if body.missing else body.head,
                    repo_pull_requests=[] if body.missing else body.pull_requests, repo_checked_at=utcnow())
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        changed = result.rowcount == 1 and previous != body.missing
        session.refresh(row)
        if changed:
            if body.missing:
                text = f"the repository of {row.name} ({row.repo_url}) is gone from its host"
            else:
                text = f"the repository of {row.name} is back"
            incidents.record(session, row.owner_id, "repo_missing" if body.missing else "repo_back", text,
                             project_id=row.id)  # fmt: skip
        return RepoSyncResult(project=Project.model_validate(row), changed=changed)
