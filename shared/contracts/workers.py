"""`worker:commands` and `worker:responses`: the worker manager's contract."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from shared.contracts.base import Contract, QueueMeta, SeedDict, SeedList, new_id
from shared.contracts.payloads import WorkerContext

DEFAULT_WORKER_TIMEOUT_S = 1800

NO_AGENT = "none"
"""The agent value that skips the developer step (and the deploy's wait for engineering)."""


class WorkerConfig(Contract):
    """How to build a worker."""

    name: Annotated[str, Field(min_length=1, description="Human-readable worker name.")]
    agent: Annotated[
        str, Field(min_length=1, description="claude-code | factory-droid | codex | command (more allowed).")
    ]
    capabilities: SeedList[str] = Field(default_factory=list, description='e.g. ["git", "github", "python"].')
    env_vars: SeedDict[str] = Field(
        default_factory=dict, description="Environment for the worker: secret *references*, never values."
    )
    mount_session_volume: bool = False
    allowed_commands: SeedList[str] = Field(default_factory=list, description="Commands the agent may run.")
    instructions: str | None = Field(
        default=None, description="Injected as CLAUDE.md (Claude) or AGENTS.md (others)."
    )
    reply_queue: str | None = Field(
        default=None,
        description="Added: responses for this worker go to this logical queue instead of worker:responses "
        "(worker:responses | po:responses).",
    )
    activity_every_s: int | None = Field(
        default=None,
        ge=2,
        le=300,
        description="While the agent works on a message, the wrapper reports activity this often; the "
        "API passes it on to reply_queue as an `activity` response (a chat's typing indicator). "
        "None: no reports.",
    )


class _Command(QueueMeta):
    request_id: str = Field(default_factory=new_id)


class CreateWorkerCommand(_Command):
    command: Literal["create"] = "create"
    config: WorkerConfig
    context: SeedDict[str] = Field(
        default_factory=dict,
        description="str -> str, the wire form of shared.contracts.payloads.WorkerContext.",
    )

    def typed_context(self) -> WorkerContext:
        return WorkerContext.read(self.context)


SendKind = Literal["message", "command"]
"""How a worker takes a send_message: its agent's prompt, or a shell command (see SendMessageCommand.kind)."""


class SendMessageCommand(_Command):
    command: Literal["send_message"] = "send_message"
    worker_id: str
    message: str
    kind: SendKind = Field(
        default="message",
        description="Added (issue 24): `message` gives `message` to the worker's agent as its prompt; "
        "`command` runs it as a shell command in the worker's workspace (a tester round on the developer's "
        "worker). Either is answered with one send_message response.",
    )
    timeout: Annotated[int, Field(gt=0, description="Seconds the agent may work.")] = DEFAULT_WORKER_TIMEOUT_S


class SendFileCommand(_Command):
    command: Literal["send_file"] = "send_file"
    worker_id: str
    path: Annotated[str, Field(min_length=1, description="Path inside the worker.")]
    content: str


class DeleteWorkerCommand(_Command):
    command: Literal["delete"] = "delete"
    worker_id: str


WorkerCommand = Annotated[
    CreateWorkerCommand | SendMessageCommand | SendFileCommand | DeleteWorkerCommand,
    Field(discriminator="command"),
]


class _Response(QueueMeta):
    request_id: str
    success: bool
    error: str | None = None


class CreateWorkerResponse(_Response):
    """`command` is an added field: it lets consumers tell responses apart."""

    command: Literal["create"] = "create"
    worker_id: str | None = None


class SendMessageResponse(_Response):
    command: Literal["send_message"] = "send_message"
    worker_id: str | None = None
    response: str | None = Field(default=None, description="The agent's final answer.")
    result: dict[str, Any] | None = Field(
        default=None,
        description="Added: the wrapper's structured result (status success|failed|blocked, commit_sha, "
        "files_changed, tokens, cost_usd, duration_ms, reason, output_tail).",
    )


class SendFileResponse(_Response):
    """Added: acknowledges a send_file command."""

    command: Literal["send_file"] = "send_file"
    worker_id: str | None = None


class DeleteWorkerResponse(_Response):
    command: Literal["delete"] = "delete"
    worker_id: str | None = None


class WorkerActivity(_Response):
    """Added: the agent is still working on `request_id` (ephemeral; never the answer, which still comes
    once as a send_message response). Only for workers whose config sets `activity_every_s`."""

    command: Literal["activity"] = "activity"
    worker_id: str | None = None


def _response_kind(value: Any) -> str | None:
    """Legacy responses carry no `command`: infer it from the fields they do carry."""
    if isinstance(value, dict):
        if "command" in value:
            return str(value["command"])
        if "response" in value:
            return "send_message"
        if value.get("worker_id") is not None and "path" not in value:
            return "create"
        return "delete"
    return getattr(value, "command", None)


WorkerResponse = Annotated[
    Annotated[CreateWorkerResponse, Tag("create")]
    | Annotated[SendMessageResponse, Tag("send_message")]
    | Annotated[SendFileResponse, Tag("send_file")]
    | Annotated[DeleteWorkerResponse, Tag("delete")]
    | Annotated[WorkerActivity, Tag("activity")],
    Discriminator(_response_kind),
]
