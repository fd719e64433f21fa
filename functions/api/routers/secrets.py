"""/projects/{id}/secrets: names and references in the database; values only through the secrets port."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from sqlalchemy import select

from functions.api.deps import get_deps
from functions.api.errors import NotFound
from functions.api.models import ProjectSecret, new_id, utcnow
from functions.api.routers._common import principal, transaction
from functions.api.services import lookup, tasks
from shared.contracts.api import SecretInfo, SecretPut

router = APIGatewayHttpRouter()
TAGS = ["secrets"]
ProjectId = Annotated[str, Path(description="The project's id or its name.", max_length=63)]
Name = Annotated[
    str,
    Path(
        pattern=r"^[A-Z][A-Z0-9_]*$",
        max_length=128,
        description="Environment-variable style, e.g. BOT_TOKEN.",
    ),
]


def reference_for(project_id: str, name: str) -> str:
    return f"secret://projects/{project_id}/{name}"


@router.get(
    "/projects/<project_id>/secrets", summary="Names of a project's secrets (never values)", tags=TAGS
)
def list_secrets(project_id: ProjectId) -> list[SecretInfo]:
    with transaction() as session:
        project = lookup.project(session, principal(router), project_id)
        rows = session.execute(
            select(ProjectSecret).where(ProjectSecret.project_id == project.id).order_by(ProjectSecret.name)
        ).scalars()
        return [SecretInfo(name=r.name, reference=r.reference, updated_at=r.updated_at) for r in rows]


@router.put("/projects/<project_id>/secrets/<name>", summary="Set a secret (value is write-only)", tags=TAGS)
def put_secret(project_id: ProjectId, name: Name, body: SecretPut) -> SecretInfo:
    with transaction() as session:
        project = lookup.project(session, principal(router), project_id)
        reference = reference_for(project.id, name)
        get_deps().secrets.put(reference, body.value)
        row = session.execute(
            select(ProjectSecret).where(ProjectSecret.project_id == project.id, ProjectSecret.name == name)
        ).scalar_one_or_none()
        now = utcnow()
        if row is None:
            row = ProjectSecret(
                id=new_id(), project_id=project.id, name=name, reference=reference, created_at=now
            )
            session.add(row)
        row.updated_at = now
        session.flush()
        tasks.wake_waiting_deploys(session, project.id, f"secret {name} set")
        return SecretInfo(name=row.name, reference=row.reference, updated_at=row.updated_at)


@router.delete("/projects/<project_id>/secrets/<name>", summary="Delete a secret", tags=TAGS)
def delete_secret(project_id: ProjectId, name: Name) -> SecretInfo:
    with transaction() as session:
        project = lookup.project(session, principal(router), project_id)
        row = session.execute(
            select(ProjectSecret).where(ProjectSecret.project_id == project.id, ProjectSecret.name == name)
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"project {project.name!r} has no secret {name!r}")
        info = SecretInfo(name=row.name, reference=row.reference, updated_at=row.updated_at)
        session.delete(row)
    get_deps().secrets.delete(info.reference)
    return info
