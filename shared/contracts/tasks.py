"""API bodies for tasks: starting one, reading it and its events, and the service-scope calls
that drive it (claim, complete, fail, lease, notification, reaping)."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.dto import INT64_MAX, Dto, GitRef, Handle, Out, TaskStatus, TaskType
from shared.contracts.payloads import (
    TaskParams,
    TaskResult,
    params_as,
    parse_params,
    parse_result,
    result_as,
)
from shared.contracts.projects import SPEC_MAX_CHARS
from shared.contracts.spend import FailureReason, Gate

P = TypeVar("P", bound=TaskParams)
R = TypeVar("R", bound=TaskResult)


class EngineeringStart(Dto):
    spec: Annotated[str, Field(min_length=1, max_length=SPEC_MAX_CHARS, description="What to build.")]
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
    no_merge: Annotated[
        bool, Field(description="Leave the work on its branch (on GitHub its pull request open), not merged.")
    ] = False


class DeployStart(Dto):
    server: Handle
    ref: Annotated[
        GitRef | None,
        Field(description="Commit or branch to deploy (a branch ships its head); default: the head of main."),
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
    failure_reason: FailureReason | None = Field(
        default=None,
        description="Why a FAILED task failed, for scripts: budget, rejected, approval_timeout...",
    )
    cost_usd: float | None = Field(
        default=None, description="What the task's agents and workers cost so far (single reads only)."
    )
    gate: Gate | None = Field(
        default=None, description="What the task waits for (WAITING_APPROVAL / WAITING_HUMAN_REVIEW)."
    )

    def typed_params(self) -> TaskParams:
        """`params` as the model of this task's type (see shared.contracts.payloads.PARAMS)."""
        return parse_params(self.type, self.params)

    def typed_result(self) -> TaskResult | None:
        """`result` as the model of this task's type; None while there is none."""
        return parse_result(self.type, self.result)

    def params_as(self, model: builtins.type[P]) -> P:
        """`params` as `model`, for a reader that knows the task's type (e.g. DeployParams)."""
        return params_as(model, self.params)

    def result_as(self, model: builtins.type[R]) -> R:
        """`result` as `model` (e.g. EngineeringTaskResult); no result yet reads as an empty one."""
        return result_as(model, self.result)


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
    reason: FailureReason | None = Field(
        default=None, description="Added (issue 21): the machine-readable reason, e.g. budget."
    )


class TaskLease(Dto):
    holder: Annotated[str, Field(min_length=1, max_length=200, description="Who takes the lease.")]
    seconds: Annotated[int, Field(gt=0, le=3600)] = 120


class TaskLeaseState(Out):
    task_id: str
    holder: str | None
    until: datetime | None
    acquired: bool
    status: TaskStatus | None = Field(
        default=None,
        description="The task's status as the lease was taken (a graph resuming it needs no second request "
        "to learn it ended); absent from APIs older than this field.",
    )


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
    running: Annotated[
        int, Field(description="RUNNING tasks when the call began; the scheduler stops looking at 0.")
    ] = 0
    tasks: list[ReapedTask] = Field(default_factory=list)
