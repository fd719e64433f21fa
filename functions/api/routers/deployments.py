"""/deployments: where projects run. The deploy graph and the health checker write them (service scope)."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api.routers._common import new_router, principal, transaction
from functions.api.services import deployments
from shared.contracts.api import Deployment, DeploymentRecord, HealthChange, HealthReport

router = new_router()
TAGS = ["deployments"]
ProjectId = Annotated[str, Path(description="The project's id or its name.", max_length=63)]


@router.get("/deployments", summary="Deployments of the caller's projects", tags=TAGS)
def list_deployments(
    status: Annotated[Literal["deployed", "stopped"] | None, Query(description="Only this status.")] = None,
) -> list[Deployment]:
    with transaction() as session:
        return deployments.list_for(session, principal(router), status)


@router.get("/projects/<project_id>/deployment", summary="Where a project runs", tags=TAGS)
def get_deployment(project_id: ProjectId) -> Deployment:
    with transaction() as session:
        return deployments.get_for(session, principal(router), project_id)


@router.put("/internal/deployments/<project_id>", summary="Record a deploy or undeploy", tags=["internal"])
def record_deployment(project_id: ProjectId, body: DeploymentRecord) -> Deployment:
    caller = principal(router)
    caller.require_service()
    with transaction() as session:
        return deployments.record(session, caller, project_id, body)


@router.post(
    "/internal/deployments/<project_id>/health",
    summary="Report a health check; changed=true for exactly one reporter of a flip",
    tags=["internal"],
)
def report_health(project_id: ProjectId, body: HealthReport) -> HealthChange:
    caller = principal(router)
    caller.require_service()
    with transaction() as session:
        return deployments.report_health(session, caller, project_id, body)
