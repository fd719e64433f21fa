"""API bodies for releases (one per deploy task), rollbacks, release slots and project domains."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from shared.contracts.dto import Dto, GitRef, Handle, Out, TaskRef

ReleaseStatus = Literal["deploying", "serving", "failed", "superseded"]
"""`serving`: the project's current release (at most one); `superseded`: served once, replaced since."""
ReleaseSlot = Literal["a", "b"]
"""The two places a release runs side by side on its server."""
PortSlot = Literal["", "a", "b"]
"""A port allocation's slot: "" the project's stable port (its address), "a" / "b" a release slot's."""
CommitSha = Annotated[
    str, StringConstraints(pattern=r"^[0-9a-f]{40}$"), Field(description="A full commit sha (40 hex).")
]
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
Domain = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().lower().removesuffix(".") if isinstance(v, str) else v),
    StringConstraints(max_length=253, pattern=rf"^(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?$"),
    Field(
        description="A hostname such as blog.example.com (at least two labels; read in lowercase).",
        examples=["blog.example.com"],
    ),
]


class Release(Out):
    id: str
    project_id: str
    number: Annotated[int, Field(description="1, 2, 3... per project.")]
    task_id: str
    commit_sha: str
    ref: str | None = Field(default=None, description="What was asked: a branch or a sha.")
    server_handle: str | None = None
    slot: str
    port: int
    url: str | None = None
    status: ReleaseStatus
    error: str | None = Field(default=None, description="Why it failed, for a person.")
    requested_by: str | None = Field(default=None, description="The user who asked for the deploy.")
    rollback_of: int | None = Field(default=None, description="The release number this one rolled back to.")
    created_at: datetime
    finished_at: datetime | None = None


class ReleaseStart(Dto):
    """Internal (the deploy graph): a deploy task starts (or resumes) its release."""

    project_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    task_id: TaskRef
    commit_sha: CommitSha
    ref: GitRef | None = None
    server_handle: Handle
    slot: ReleaseSlot
    port: Annotated[int, Field(ge=1, le=65535)]
    rollback_of: Annotated[int | None, Field(ge=1, le=2**31 - 1)] = None


class ReleaseFinish(Dto):
    """Internal (the deploy graph): how a release ended. Compare-and-set from `deploying`."""

    status: Literal["serving", "failed"]
    url: Annotated[str | None, Field(max_length=1000)] = None
    error: Annotated[str | None, Field(max_length=20_000)] = None


class RollbackRequest(Dto):
    to: Annotated[
        int | None,
        Field(
            ge=1,
            le=2**31 - 1,
            description="The release number to go back to; null: the newest superseded release "
            "older than the current one.",
        ),
    ] = None
