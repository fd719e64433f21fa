"""API bodies for workers (the records behind `worker:commands`), their messages, and the
scheduler's collection of orphan workers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from shared.contracts.dto import Dto, Id, Int32, Out, TaskRef
from shared.contracts.payloads import WorkerContext

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

    def typed_context(self) -> WorkerContext:
        """The context the worker was created with (`config["context"]`)."""
        return WorkerContext.read(self.config.get("context"))


WorkerMessageKind = Literal["message", "file", "command"]
"""What a worker does with a message: `message` hands the body to the worker's agent as its prompt (and
commits what it changed when the job says so); `file` writes the body to `path` in the workspace;
`command` (issue 24) runs the body as a shell command in the same workspace, whatever the worker's agent
(an engineering task's tester round on the developer's worker: no second worker, no second clone). A
command's answer is a `send_message` answer like a prompt's; it never commits."""


class WorkerMessageCreate(Dto):
    request_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Annotated[
        WorkerMessageKind, Field(description="message | file | command (see WorkerMessageKind).")
    ] = "message"
    body: Annotated[
        str, Field(max_length=1_000_000, description="The prompt, the file's text, or the command.")
    ]
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
    budget_usd: float | None = Field(
        default=None,
        description="Added (issue 21): what the agent may still spend on this message; the wrapper stops it "
        "past this. Null: no limit.",
    )
    budget_note: str | None = Field(default=None, description="Which budget that is, for a person.")


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
    live: Annotated[
        int, Field(description="Workers not ended when the call began; the scheduler stops looking at 0.")
    ] = 0
    workers: list[CollectedWorker] = Field(default_factory=list)


# -- a worker's own credentials (issue 20): its token, its secrets, its conversation's session -----------


class WorkerTokenRequest(Dto):
    ttl_s: Annotated[
        int,
        Field(ge=60, le=7 * 86_400, description="Seconds the token lives (the worker's lifetime + grace)."),
    ] = 2100
    claim_start: bool = Field(
        default=False,
        description="Added (issue 24): first move the worker CREATED -> STARTING, compare-and-set in the same "
        "transaction (409, and no token, when it is not CREATED: another delivery is starting it).",
    )


class WorkerToken(Out):
    """A worker's per-task bearer (`orchw_...`), shown once; minting again replaces the previous one."""

    worker_id: str
    token: str
    expires_at: datetime


SecretRef = Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^secret://")]


class WorkerSecretsRequest(Dto):
    refs: Annotated[
        list[SecretRef],
        Field(min_length=1, max_length=50, description="References the worker's own config names."),
    ]


class WorkerSecrets(Out):
    values: dict[str, str] = Field(description="Each requested reference's value (never logged).")


class WorkerSessionRequest(Dto):
    op: Literal["load", "save"]


class WorkerSessionAccess(Out):
    """Where the worker loads or saves its conversation's session archive: a presigned S3 URL for exactly
    that object, or (local store) the API's own `/internal/workers/{id}/session/archive`."""

    method: Literal["GET", "PUT"]
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    expires_at: datetime


class WorkerSessionArchive(Dto):
    """A session archive through the API (local store): base64 of the tar.gz bytes, null when none."""

    data_b64: Annotated[str | None, Field(max_length=90_000_000)] = None
