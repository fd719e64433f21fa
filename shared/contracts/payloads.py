"""What a task carries: its type-specific inputs (`Task.params`) and its outcome (`Task.result`), and
the context a worker is created with (`CreateWorkerCommand.context`).

On the wire and in the database these stay JSON objects (no migration); the models below are how
code reads and writes them. The API validates params on task creation (`parse_params`); readers get
a model from `Task.typed_params()` / `Task.typed_result()` (by the task's type) or, where the type is
known, `Task.params_as(DeployParams)` / `Task.result_as(EngineeringTaskResult)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final, TypeVar

from pydantic import Field, SerializerFunctionWrapHandler, field_serializer, model_serializer

from shared.contracts.base import Contract, ResultStatus, SeedList
from shared.contracts.dto import GitRef, Handle, TaskType
from shared.contracts.jobs import FixAttempt

# -- params ---------------------------------------------------------------------------------------


class TaskParams(Contract):
    """Inputs of a task whose type takes none of its own (scaffold, provision). Unknown keys are kept:
    rows written by a newer API stay readable."""


class EngineeringParams(TaskParams):
    agent: Annotated[
        str | None,
        Field(
            max_length=64, description='Coding agent (project default if unset); "none" skips the developer.'
        ),
    ] = None
    base_ref: Annotated[GitRef | None, Field(description="Branch or commit to start from (None: main).")] = (
        None
    )
    parent_task_id: Annotated[
        str | None,
        Field(max_length=64, description="The deploy task waiting for this fix (deploy -> engineering)."),
    ] = None
    deploy_fix_attempt: FixAttempt = 0
    no_merge: Annotated[
        bool,
        Field(
            description="Leave the work on its branch (on GitHub its pull request open): no merge into main."
        ),
    ] = False


class DeployParams(TaskParams):
    server: Handle
    ref: Annotated[
        GitRef | None,
        Field(description="Commit or branch to deploy (a branch ships its head); None: the head of main."),
    ] = None
    rollback_of: Annotated[
        int | None, Field(ge=1, description="A rollback: the release number whose commit `ref` is.")
    ] = None
    recovery: Annotated[
        bool,
        Field(
            description="Started by a server's recovery to bring back its serving release (no approval gate: "
            "the person approved that release when it first went out)."
        ),
    ] = False


class UndeployParams(TaskParams):
    server: Handle


PARAMS: Final[Mapping[TaskType, type[TaskParams]]] = {
    TaskType.ENGINEERING: EngineeringParams,
    TaskType.DEPLOY: DeployParams,
    TaskType.UNDEPLOY: UndeployParams,
    TaskType.SCAFFOLD: TaskParams,
    TaskType.PROVISION: TaskParams,
}
"""The params model of each task type."""


# -- results --------------------------------------------------------------------------------------


class TaskResult(Contract):
    """A task's stored outcome: BaseResult's fields, all optional here so that any stored row reads
    (a task completed by hand, an older writer). Unknown keys are kept."""

    request_id: str | None = None
    status: ResultStatus | None = None
    error: str | None = None
    duration_ms: Annotated[int | None, Field(ge=0)] = None
    cost_usd: float | None = Field(
        default=None,
        description="Added (issue 21): what the task had cost when it ended (its agent runs and the workers "
        "stopped by then); `task show` has the running total.",
    )


class EngineeringTaskResult(TaskResult):
    """EngineeringResult as stored, plus `repo_url`."""

    files_changed: SeedList[str] = Field(default_factory=list, description="Paths changed by the work.")
    commit_sha: str | None = Field(default=None, description="Commit holding the work.")
    branch: str | None = Field(default=None, description="Branch the commit was pushed to.")
    pr_url: str | None = Field(default=None, description="Pull request, where the repo host has them.")
    repo_url: str | None = Field(default=None, description="The project's repository.")
    merge_commit: str | None = Field(
        default=None,
        description="The commit on main that holds the work (None: not merged, e.g. --no-merge).",
    )


class DeployTaskResult(TaskResult):
    """DeployResult as stored by a deploy or an undeploy, plus what the CLI and the bot show."""

    deployed_url: str | None = Field(default=None, description="Where the service answers.")
    server_ip: str | None = Field(default=None, description="Address of the server.")
    port: Annotated[int | None, Field(ge=1, le=65535, description="Port the service listens on.")] = None
    health_url: str | None = None
    ref: str | None = Field(default=None, description="The commit or branch deployed.")
    deploy_fix_attempt: Annotated[int | None, Field(ge=0)] = None
    stopped_url: str | None = Field(default=None, description="Undeploy: the URL that no longer answers.")


RESULTS: Final[Mapping[TaskType, type[TaskResult]]] = {
    TaskType.ENGINEERING: EngineeringTaskResult,
    TaskType.DEPLOY: DeployTaskResult,
    TaskType.UNDEPLOY: DeployTaskResult,
    TaskType.SCAFFOLD: TaskResult,
    TaskType.PROVISION: TaskResult,
}
"""The result model of each task type."""

P = TypeVar("P", bound=TaskParams)
R = TypeVar("R", bound=TaskResult)


def parse_params(task_type: TaskType | str, raw: Mapping[str, Any] | TaskParams | None) -> TaskParams:
    """The params model of `task_type`; raises pydantic's ValidationError naming the bad field."""
    model = PARAMS[TaskType(task_type)]
    if isinstance(raw, TaskParams):
        raw = raw.model_dump(mode="json", exclude_unset=True)
    return model.model_validate(dict(raw or {}))


def parse_result(task_type: TaskType | str, raw: Mapping[str, Any] | None) -> TaskResult | None:
    """The result model of `task_type`, or None when the task has no result yet."""
    return None if raw is None else RESULTS[TaskType(task_type)].model_validate(dict(raw))


def params_as(model: type[P], raw: Mapping[str, Any] | None) -> P:
    return model.model_validate(dict(raw or {}))


def result_as(model: type[R], raw: Mapping[str, Any] | None) -> R:
    """No result yet reads as an empty one (every field None or empty)."""
    return model.model_validate(dict(raw or {}))


# -- worker context -------------------------------------------------------------------------------


class WorkerContext(Contract):
    """`CreateWorkerCommand.context` and the `context` in a worker's stored config. On the wire it
    stays the seed's str -> str mapping: absent values are left out and `commit` is "true"/"false".
    Build one and pass `.to_wire()` as the command's context; read one with `WorkerContext.read()`."""

    task_id: str | None = Field(default=None, description="The task the worker works for.")
    step: str | None = Field(default=None, description="Its role in the graph: developer, tester, ...")
    repo_url: str | None = Field(default=None, description="Cloned before the first message.")
    branch: str | None = Field(default=None, description="Branch to work (and push) on.")
    base_branch: str | None = Field(default=None, description="Where a new branch starts (None: main).")
    commit: bool = Field(default=True, description="Commit and push the work after a successful message.")
    role: str | None = Field(default=None, description='"product_owner" for the chat worker.')
    user_id: str | None = None
    telegram_user_id: str | None = None
    chat_id: str | None = None
    first_request_id: str | None = None
    first_text: str | None = None
    language_code: str | None = None
    session_key: str | None = Field(default=None, description="Where the conversation's session is kept.")

    @field_serializer("commit")
    def _commit_as_text(self, commit: bool) -> str:
        return "true" if commit else "false"

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}

    @classmethod
    def read(cls, raw: Mapping[str, Any] | None) -> WorkerContext:
        """From the wire form (values read as text); empty strings (the seed's "unset") read as None."""
        return cls.model_validate({k: str(v) for k, v in (raw or {}).items() if v not in ("", None)})

    def to_wire(self) -> dict[str, str]:
        return {key: str(value) for key, value in self.model_dump(mode="json", exclude_unset=True).items()}
