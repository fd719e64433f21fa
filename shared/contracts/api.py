"""API bodies (DTOs): what the HTTP API accepts and returns. The ORM never leaves functions/api.

The CLI, the bot and the consumers use these through `shared.api_client.ApiClient`.
"""

from __future__ import annotations

from datetime import datetime
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


class Dto(BaseModel):
    model_config = ConfigDict(extra="forbid", from_attributes=True)


class Out(BaseModel):
    """Responses: tolerant of fields added by newer servers."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)


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
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


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


# -- projects -----------------------------------------------------------------------------


class ProjectCreate(Dto):
    name: Slug
    description: Annotated[str, Field(max_length=4000)] = ""
    modules: list[Module] = Field(default_factory=lambda: ["backend"], max_length=16)
    agent: Annotated[
        str | None, Field(max_length=64, description="Default coding agent for this project.")
    ] = None


class ProjectUpdate(Dto):
    """Omit a field to keep it. Only `agent` and `repo_url` may be cleared with null.

    The others default to None without being nullable: pydantic does not validate defaults,
    so an omitted field is left out of `model_dump(exclude_unset=True)` while an explicit
    null is a 422 naming the field.
    """

    description: Annotated[str, Field(max_length=4000)] = None  # type: ignore[assignment]
    modules: Annotated[list[Module], Field(max_length=16)] = None  # type: ignore[assignment]
    agent: Annotated[str | None, Field(max_length=64)] = None
    repo_url: Annotated[str | None, Field(max_length=1000)] = None
    status: ProjectStatus = None  # type: ignore[assignment]


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


# -- tasks --------------------------------------------------------------------------------


GitRef = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._/-]+$")]


class EngineeringStart(Dto):
    spec: Annotated[str, Field(min_length=1, max_length=100_000, description="What to build.")]
    agent: Annotated[
        str | None, Field(max_length=64, description='Coding agent; "none" skips the developer step.')
    ] = None
    base_ref: Annotated[
        GitRef | None, Field(description="Branch or commit to start from (default main).")
    ] = None
    parent_task_id: Annotated[
        str | None,
        Field(max_length=64, description="A deploy task waiting for this fix (deploy -> engineering)."),
    ] = None
    deploy_fix_attempt: Annotated[int, Field(ge=0, le=2)] = 0


class DeployStart(Dto):
    server: Handle
    ref: Annotated[
        GitRef | None,
        Field(description="Commit or branch to deploy; default: the last engineering result, else main."),
    ] = None


class Task(Out):
    id: str
    project_id: str
    user_id: str
    type: TaskType
    status: TaskStatus
    spec: str | None
    attempt: int
    result: dict[str, Any] | None
    error: str | None
    correlation_id: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    params: dict[str, Any] = Field(
        default_factory=dict, description="Type-specific inputs, e.g. server, agent."
    )


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next page.")


class TaskEvent(Out):
    seq: int = Field(description="Order within the task; pass the last one as ?after=.")
    task_id: str
    type: Literal["started", "progress", "completed", "failed"]
    message: str
    progress_pct: int | None
    current_step: str | None
    error: str | None
    error_type: str | None
    timestamp: datetime


# -- internal (service scope) ------------------------------------------------------------


class TaskClaim(Dto):
    worker: Annotated[str | None, Field(max_length=200, description="Who claims it (function, host).")] = None


class TaskComplete(Dto):
    result: dict[str, Any] = Field(default_factory=dict)


class TaskFail(Dto):
    error: Annotated[str, Field(min_length=1, max_length=20_000)]
    result: dict[str, Any] | None = None


class TaskLease(Dto):
    holder: Annotated[str, Field(min_length=1, max_length=200, description="Who takes the lease.")]
    seconds: Annotated[int, Field(gt=0, le=3600)] = 120


class TaskLeaseState(Out):
    task_id: str
    holder: str | None
    until: datetime | None
    acquired: bool


class NotificationClaim(Dto):
    holder: Annotated[
        str, Field(min_length=1, max_length=200, description="The notifier invocation claiming.")
    ]
    seconds: Annotated[int, Field(gt=0, le=600, description="How long the claim lasts unless released.")] = 60


class NotificationRecord(Dto):
    holder: Annotated[str, Field(min_length=1, max_length=200, description="Must hold the claim.")]
    message_id: Annotated[
        int | None,
        Field(
            ge=1, le=INT64_MAX, description="The status message Telegram accepted (first send, or a re-send)."
        ),
    ] = None
    text: Annotated[str | None, Field(max_length=20000, description="What the status message says now.")] = (
        None
    )
    final_sent: Annotated[
        bool, Field(description="Telegram accepted the final message: set once (409 if already set).")
    ] = False
    release: Annotated[bool, Field(description="Give the claim back after recording.")] = True


class TaskNotification(Out):
    """The Telegram status message of a task, as the notifier sees it after a claim."""

    task_id: str
    chat_id: int = Field(description="The owner's Telegram id (the private chat).")
    message_id: int | None = Field(description="The status message; None until one was sent.")
    text: str | None = Field(description="What the status message says now.")
    claim_holder: str | None
    claimed_until: datetime | None
    final_sent_at: datetime | None = Field(description="When Telegram accepted the final message.")


class TaskWait(Dto):
    reason: Annotated[str, Field(min_length=1, max_length=4000, description="What input is needed.")]


class EventBody(BaseModel):
    """A ProgressEvent body as sent: the API validates it as a ProgressEvent (task_id from the path);
    here only the fields stored in bounded columns are limited, so a 422 names them, not a 500."""

    model_config = ConfigDict(extra="allow")

    current_step: Annotated[str | None, Field(max_length=200)] = None
    error_type: Annotated[str | None, Field(max_length=200)] = None
    request_id: Annotated[str | None, Field(max_length=64)] = None


class EventAppend(Dto):
    events: list[EventBody] = Field(
        min_length=1, max_length=100, description="ProgressEvent bodies (task_id is taken from the path)."
    )


WorkerStatus = Literal["CREATED", "STARTING", "RUNNING", "STOPPED", "FAILED"]


class WorkerRecord(Dto):
    id: Id
    task_id: TaskRef | None = None
    agent: Annotated[str, Field(max_length=64)]
    runtime_handle: Annotated[str | None, Field(max_length=512)] = None
    status: WorkerStatus = "CREATED"
    config: dict[str, Any] = Field(
        default_factory=dict, description="WorkerConfig + context; references only."
    )
    create_request_id: Annotated[
        Id | None, Field(description="A redelivered create with this id finds this worker.")
    ] = None


class WorkerUpdate(Dto):
    status: WorkerStatus
    runtime_handle: Annotated[str | None, Field(max_length=512)] = None
    exit_reason: Annotated[str | None, Field(max_length=4000)] = None
    expected_status: WorkerStatus | None = Field(
        default=None, description="Compare-and-set: 409 if different."
    )


class WorkerStopped(Dto):
    status: Literal["STOPPED", "FAILED"] = "STOPPED"
    exit_code: Int32 | None = None
    reason: Annotated[str, Field(max_length=4000)] = "stopped"


class Worker(Out):
    id: str
    task_id: str | None
    agent: str
    runtime_handle: str | None
    status: str
    exit_reason: str | None
    exit_code: int | None = None
    started_at: datetime
    stopped_at: datetime | None
    last_seen_at: datetime | None = None


class WorkerDetail(Worker):
    config: dict[str, Any]
    create_request_id: str | None


class WorkerMessageCreate(Dto):
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Literal["message", "file"] = "message"
    body: Annotated[str, Field(max_length=1_000_000)]
    path: Annotated[str | None, Field(max_length=1000)] = None
    timeout_s: Annotated[int, Field(gt=0, le=86_400)] = 1800
    correlation_id: Annotated[str | None, Field(max_length=64)] = None


class WorkerMessage(Out):
    id: int
    worker_id: str
    request_id: str
    kind: str
    body: str
    path: str | None
    timeout_s: int
    status: Literal["PENDING", "RUNNING", "DONE", "FAILED"]
    result: dict[str, Any] | None
    error: str | None
    correlation_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class WorkerMessageResult(Dto):
    success: bool
    response: Annotated[str | None, Field(max_length=200_000)] = None
    error: Annotated[str | None, Field(max_length=20_000)] = None
    result: dict[str, Any] | None = None


class WorkerActivityAccepted(Out):
    """An `activity` response for a running message is queued (published right after the commit)."""

    message_id: int
    worker_id: str
    reply_queue: str = Field(description="Where the activity response goes (the worker's reply queue).")


# -- servers ------------------------------------------------------------------------------


class ServerCreate(Dto):
    handle: Handle
    host: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.:_-]+$")]
    ssh_user: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z_][a-z0-9_-]*$")
    ] = "root"
    ssh_key_ref: Annotated[
        str | None, Field(max_length=512, description="secret://... reference to the key.")
    ] = None
    ssh_private_key: Annotated[
        str | None,
        Field(max_length=20_000, description="Write-only: stored via the secrets port, never returned."),
    ] = None
    labels: dict[str, str] = Field(default_factory=dict)


class Server(Out):
    id: str
    handle: str
    host: str
    ssh_user: str
    ssh_key_ref: str | None
    status: str
    labels: dict[str, str]
    owner_id: str
    created_at: datetime
    facts: dict[str, Any] = Field(default_factory=dict)
    checked_at: datetime | None = None

    @property
    def connection(self) -> Literal["local", "ssh"]:
        return "local" if self.labels.get("connection") == "local" else "ssh"


class ServerCheck(Dto):
    """Internal: what a reachability run (server_sync, a deploy's readiness check) found."""

    status: Literal["up", "unreachable"]
    facts: dict[str, Any] = Field(default_factory=dict)


class ServerCheckResult(Out):
    server: Server
    previous_status: str
    changed: bool


class PortRequest(Dto):
    project_id: Annotated[Id, Field(description="The project's id or name.")]
    port: Annotated[
        int | None, Field(ge=1024, le=65535, description="A specific port; default: lowest free.")
    ] = None


class PortAllocation(Out):
    server_handle: str
    port: int
    project_id: str
    created_at: datetime


# -- deployments --------------------------------------------------------------------------

DeploymentStatus = Literal["deployed", "stopped"]
HealthState = Literal["unknown", "up", "down"]


class Deployment(Out):
    project_id: str
    project_name: str
    server_handle: str
    port: int
    url: str
    health_url: str
    ref: str | None
    status: DeploymentStatus
    health: HealthState
    health_changed_at: datetime | None
    checked_at: datetime | None
    task_id: str | None
    owner_id: str
    updated_at: datetime


class DeploymentRecord(Dto):
    """Internal: the deploy graph records a finished deploy or undeploy."""

    server_handle: Handle
    port: Annotated[int, Field(ge=1, le=65535)]
    url: Annotated[str, Field(max_length=1000)]
    health_url: Annotated[str, Field(max_length=1000)]
    ref: Annotated[str | None, Field(max_length=255)] = None
    status: DeploymentStatus = "deployed"
    task_id: TaskRef | None = None


class HealthReport(Dto):
    """Internal: one health check's outcome (health_checker)."""

    health: Literal["up", "down"]
    detail: Annotated[str, Field(max_length=1000)] = ""


class RepoSync(Dto):
    """Internal (github_sync): what the repository host says about a project's repository now."""

    missing: bool = False
    head: Annotated[str | None, Field(max_length=64)] = None
    pull_requests: list[dict[str, Any]] = Field(default_factory=list, max_length=500)


class RepoSyncResult(Out):
    project: Project
    changed: bool
    """True for exactly one reporter when the repository disappears or comes back."""


IncidentKind = Literal[
    "service_down", "service_up", "server_unreachable", "server_up", "repo_missing", "repo_back"
]


class Incident(Out):
    id: str
    owner_id: str
    project_id: str | None
    server_id: str | None
    kind: IncidentKind
    message: str
    created_at: datetime
    notified_at: datetime | None


class HealthChange(Out):
    deployment: Deployment
    previous: HealthState
    changed: bool
    """True for exactly one caller when the state flips: that caller tells the owner."""


# -- secrets ------------------------------------------------------------------------------


class SecretPut(Dto):
    value: Annotated[str, Field(min_length=1, max_length=64_000, description="Write-only; never returned.")]


class SecretInfo(Out):
    name: str
    reference: str
    updated_at: datetime


# -- users and keys -----------------------------------------------------------------------


class UserCreate(Dto):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    telegram_id: Annotated[int | None, Field(gt=0, le=INT64_MAX)] = None
    is_admin: bool = False


class User(Out):
    id: str
    name: str
    telegram_id: int | None
    is_admin: bool
    created_at: datetime


Scope = Literal["user", "admin", "service"]


def _default_scopes() -> list[Scope]:
    return ["user"]


class ApiKeyCreate(Dto):
    name: Annotated[str, Field(max_length=200)] = "cli"
    scopes: list[Scope] = Field(default_factory=_default_scopes, min_length=1)


class ApiKey(Out):
    id: str
    user_id: str
    name: str
    prefix: str = Field(
        description="First characters of the key, to recognise it; the key itself is never stored."
    )
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key. Shown once: store it now.")


# -- maintenance (service scope; the scheduler's repair jobs) -------------------------------


class StuckTaskReap(Dto):
    limit_s: Annotated[
        int,
        Field(ge=1, le=7 * 86_400, description="A RUNNING task with no heartbeat for this long is stuck."),
    ] = 900
    max_retries: Annotated[
        int,
        Field(ge=0, le=10, description="Requeue a stuck task instead while its attempt is at most this."),
    ] = 0
    batch: Annotated[int, Field(ge=1, le=500, description="At most this many tasks per call.")] = 50


class ReapedTask(Out):
    task_id: str
    action: Literal["failed", "requeued"]
    reason: Annotated[str, Field(description='Why, e.g. "no heartbeat for 17 min (limit 15 min)".')]
    attempt: int
    workers_stopped: list[str] = Field(default_factory=list, description="Delete commands queued for these.")


class StuckTaskReport(Out):
    examined: Annotated[int, Field(description="Stuck candidates found (at most `batch`).")]
    failed: int
    requeued: int
    workers_stopped: int
    skipped: Annotated[
        int, Field(description="Candidates another caller handled first, or that came alive meanwhile.")
    ]
    tasks: list[ReapedTask] = Field(default_factory=list)


class OrphanWorkerCollect(Dto):
    max_lifetime_s: Annotated[
        int, Field(ge=60, le=7 * 86_400, description="Stop any worker older than this (lifetime + grace).")
    ] = 2100
    unseen_s: Annotated[
        int,
        Field(
            ge=60, le=7 * 86_400, description="Stop an idle worker whose wrapper was not seen for this long."
        ),
    ] = 900
    ended_grace_s: Annotated[
        int,
        Field(ge=0, le=86_400, description="Leave a worker this long after its task ended (its own stop)."),
    ] = 60
    batch: Annotated[int, Field(ge=1, le=500, description="At most this many workers per call.")] = 50


OrphanCause = Literal["task_ended", "too_old", "unseen"]


class CollectedWorker(Out):
    worker_id: str
    task_id: str | None
    cause: OrphanCause
    reason: str


class OrphanWorkerReport(Out):
    examined: Annotated[int, Field(description="Orphan candidates found (at most `batch`).")]
    stopped: Annotated[int, Field(description="Delete commands queued (one per worker, ever).")]
    task_ended: int
    too_old: int
    unseen: int
    skipped: Annotated[
        int, Field(description="Candidates another caller handled first, or no longer orphans.")
    ]
    workers: list[CollectedWorker] = Field(default_factory=list)
