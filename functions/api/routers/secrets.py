"""/projects/{id}/secrets: names and references in the database; values only through the secrets port."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path

from functions.api.deps import get_deps
from functions.api.routers._common import new_router, principal, transaction
from functions.api.services import secrets
from shared.contracts.api import SecretInfo, SecretPut

router = new_router()
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


@router.get(
    "/projects/<project_id>/secrets", summary="Names of a project's secrets (never values)", tags=TAGS
)
def list_secrets(project_id: ProjectId) -> list[SecretInfo]:
    with transaction() as session:
        return secrets.list_for(session, principal(router), project_id)


@router.put("/projects/<project_id>/secrets/<name>", summary="Set a secret (value is write-only)", tags=TAGS)
def put_secret(project_id: ProjectId, name: Name, body: SecretPut) -> SecretInfo:
    with transaction() as session:
        return secrets.put(session, get_deps(), principal(router), project_id, name, body.value)


@router.delete("/projects/<project_id>/secrets/<name>", summary="Delete a secret", tags=TAGS)
def delete_secret(project_id: ProjectId, name: Name) -> SecretInfo:
    with transaction() as session:
        info = secrets.forget(session, principal(router), project_id, name)
    get_deps().secrets.delete(info.reference)  # after the commit: a failed delete leaves a row-less value
    return info
