"""Building blocks of the API bodies: constrained strings, the request / response bases, the
status enums, errors, health and pages."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

T = TypeVar("T")

Slug = Annotated[
    str,
    StringConstraints(min_length=2, max_length=63, pattern=r"^[a-z][a-z0-9-]*[a-z0-9]$"),
    Field(
        description="Lowercase letters, digits and '-', 2-63 chars, starting with a letter.",
        examples=["blog"],
    ),
]
Handle = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9._-]*$"),
    Field(description="Server handle: lowercase letters, digits, '.', '_' and '-'.", examples=["localhost"]),
]
SecretName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Z][A-Z0-9_]*$"),
    Field(description="Environment-variable style name, e.g. TELEGRAM_BOT_TOKEN."),
]
Module = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]

INT32_MAX = 2**31 - 1
"""Integer columns (seq, ports, exit codes) hold 32 bits on PostgreSQL: larger input is a 422, not a 500."""
INT64_MAX = 2**63 - 1
"""BIGINT columns (Telegram ids) and SQLite's integers hold 64 bits."""
Int32 = Annotated[int, Field(ge=-(2**31), le=INT32_MAX)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
TaskRef = Annotated[str, StringConstraints(min_length=1, max_length=36), Field(description="A task's id.")]
"""Task ids are UUIDs: columns that refer to one hold 36 characters."""


GitRef = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._/-]+$")]


class Dto(BaseModel):
    """Request bodies. Like every API model, built on first use (`defer_build`, see `Contract`)."""

    model_config = ConfigDict(extra="forbid", from_attributes=True, allow_inf_nan=False, defer_build=True)


class Out(BaseModel):
    """Responses: tolerant of fields added by newer servers."""

    model_config = ConfigDict(extra="ignore", from_attributes=True, defer_build=True)


class ProjectStatus(StrEnum):
    DRAFT = "draft"
    SCAFFOLDING = "scaffolding"
    SCAFFOLDED = "scaffolded"
    SCAFFOLD_FAILED = "scaffold_failed"
    ACTIVE = "active"
    ARCHIVED = "archived"


class TaskType(StrEnum):
    ENGINEERING = "engineering"
    DEPLOY = "deploy"
    UNDEPLOY = "undeploy"
    SCAFFOLD = "scaffold"
    PROVISION = "provision"


class TaskStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING_INPUT = "WAITING_INPUT"
    WAITING_APPROVAL = "WAITING_APPROVAL"
    """A gate (plan or deploy) waits for the owner's approve / reject (issue 21)."""
    WAITING_HUMAN_REVIEW = "WAITING_HUMAN_REVIEW"
    """The developer gave up or the fix rounds ran out: waits for `task resume --guidance` (issue 21)."""
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)

    @property
    def is_waiting(self) -> bool:
        """Parked until something outside the graph happens (a secret, an approval, a person's guidance)."""
        return self in WAITING_STATUSES


WAITING_STATUSES = (TaskStatus.WAITING_INPUT, TaskStatus.WAITING_APPROVAL, TaskStatus.WAITING_HUMAN_REVIEW)
ACTIVE_STATUSES = (TaskStatus.QUEUED, TaskStatus.RUNNING, *WAITING_STATUSES)
"""Not final: counted against a person's concurrent-task limit, cancellable."""


class ErrorBody(Out):
    """Every 4xx/5xx answer."""

    code: Annotated[
        str, Field(description="Stable machine code, e.g. not_found, conflict, validation_error.")
    ]
    message: Annotated[str, Field(description="What went wrong, for a person.")]
    fields: list[str] = Field(default_factory=list, description="Offending field names (validation errors).")
    details: list[dict[str, Any]] = Field(default_factory=list)


# -- health -------------------------------------------------------------------------------


class Health(Out):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable", "schema_out_of_date"]
    schema_revision: str | None = None
    expected_revision: str | None = None
    version: str
    ready: bool = Field(
        default=True,
        description="False while the embedded stack is still starting (503 until it is ready for work).",
    )


# -- pages -------------------------------------------------------------------------------

PROJECTS_PAGE_MAX = 500
"""The most projects one page of `GET /projects` holds (other lists hold 200). A person owns at most
`limit_projects_per_user` live projects (50 by default) plus the archived ones, so a page of 500 (~200 KB
of JSON) answers nearly every listing, an admin's included, in one request."""


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next page.")
