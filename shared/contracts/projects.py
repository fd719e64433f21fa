"""API bodies for projects, their repository's state and their secrets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from shared.contracts.dto import Dto, Module, Out, ProjectStatus, Slug
from shared.contracts.releases import Domain
from shared.contracts.spend import ApprovalPolicy

SPEC_MAX_CHARS = 100_000
"""The longest spec the API takes (`EngineeringStart.spec`): the CLI checks it before creating anything."""


class ProjectCreate(Dto):
    name: Slug
    description: Annotated[str, Field(max_length=4000)] = ""
    modules: list[Module] = Field(default_factory=lambda: ["backend"], max_length=16)
    agent: Annotated[
        str | None, Field(max_length=64, description="Default coding agent for this project.")
    ] = None


class ProjectUpdate(Dto):
    """Omit a field to keep it. Only `agent`, `repo_url` and `domain` may be cleared with null.

    The others default to None without being nullable: pydantic does not validate defaults,
    so an omitted field is left out of `model_dump(exclude_unset=True)` while an explicit
    null is a 422 naming the field.
    """

    description: Annotated[str, Field(max_length=4000)] = None  # type: ignore[assignment]
    modules: Annotated[list[Module], Field(max_length=16)] = None  # type: ignore[assignment]
    agent: Annotated[str | None, Field(max_length=64)] = None
    repo_url: Annotated[str | None, Field(max_length=1000)] = None
    status: ProjectStatus = None  # type: ignore[assignment]
    domain: Domain | None = None
    approval: ApprovalPolicy | Literal["default"] | None = None
    """Null or "default": back to the settings' default."""


class Project(Out):
    id: str
    name: str
    description: str
    modules: list[str]
    agent: str | None
    repo_url: str | None
    status: ProjectStatus
    owner_id: str
    created_at: datetime
    updated_at: datetime
    deployed_url: str | None = None
    repo_head: str | None = None
    repo_pull_requests: list[dict[str, Any]] = Field(default_factory=list)
    repo_missing: bool = False
    repo_checked_at: datetime | None = None
    domain: str | None = Field(default=None, description="The hostname it is served under, if any.")
    approval: str | None = Field(
        default=None,
        description='What waits for the owner\'s approval ("deploy", "plan", "deploy,plan", "none"); '
        "null: the default (deploys to servers other than the built-in one).",
    )


class ProjectDeleted(Out):
    """What deleting a project removed. Its repository is kept: the API never deletes code."""

    id: str
    name: Annotated[str, Field(description="Free to use again from now on.")]
    freed_ports: Annotated[
        list[str], Field(default_factory=list, description="`server:port` allocations given back.")
    ]
    removed_secrets: Annotated[list[str], Field(default_factory=list, description="Secret names deleted.")]
    deleted_tasks: Annotated[int, Field(description="Finished tasks deleted with their events.")] = 0
    repo_url: Annotated[str | None, Field(description="The repository, kept.")] = None


class RepoSync(Dto):
    """Internal (github_sync): what the repository host says about a project's repository now."""

    missing: bool = False
    head: Annotated[str | None, Field(max_length=64)] = None
    pull_requests: list[dict[str, Any]] = Field(default_factory=list, max_length=500)


class RepoSyncResult(Out):
    project: Project
    changed: bool
    """True for exactly one reporter when the repository disappears or comes back."""


# -- secrets ------------------------------------------------------------------------------


class SecretPut(Dto):
    value: Annotated[str, Field(min_length=1, max_length=64_000, description="Write-only; never returned.")]


class SecretInfo(Out):
    name: str
    reference: str
    updated_at: datetime
