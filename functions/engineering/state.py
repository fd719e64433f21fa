"""What the engineering graph remembers between its steps (checkpointed after every node), and how it
reads the answers that resume it.

The keys, their types and their meaning are those of the earlier `TypedDict` state, so a checkpoint
written before this model still resumes: LangGraph keeps one channel per key and builds the model from
them, and a key never written takes its default. Values stay plain (str, int, list, None), which both
checkpointers' serializer stores without an allow-list of classes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from shared.contracts.api import Task
from shared.contracts.payloads import EngineeringParams
from shared.contracts.spend import GateKind
from shared.contracts.workers import NO_AGENT

Outcome = Literal["completed", "failed", "cancelled"]
Role = Literal["developer", "tester"]


class EngState(BaseModel):
    """One engineering task on its way; None means "not known yet"."""

    task_id: Annotated[str, Field(description="The engineering task; also the checkpoint thread.")]
    project_id: str
    correlation_id: str | None = None
    spec: Annotated[str, Field(description="What to build, as the person asked for it.")] = ""
    agent: Annotated[str, Field(description=f"The developer's coding agent; {NO_AGENT!r}: no developer.")] = (
        ""
    )
    base_ref: Annotated[str, Field(description="The branch the work starts from (and the PR targets).")] = (
        "main"
    )
    project_name: str = ""
    project_status: Annotated[
        str,
        Field(description="The project's status as this task last saw or set it (finalize sets it active)."),
    ] = ""
    branch: Annotated[
        str, Field(description="Where the work is pushed; the base itself without a developer.")
    ] = ""
    repo_url: str | None = None
    repo_full_name: str = ""
    round: Annotated[int, Field(description="The developer round, from 1; a failed test run adds one.")] = 1
    last_failure: Annotated[
        str | None, Field(description="The failed test run's output, for the fix round.")
    ] = None
    worker_id: Annotated[
        str | None, Field(description="The task's worker: the developer's, and the tester's when it is kept.")
    ] = None
    worker_open: Annotated[
        bool,
        Field(
            description="`worker_id` still runs and takes the task's next round (the tester's command, a fix "
            "round): no second worker, no second clone. False: the next round starts a worker of its own "
            "(and a checkpoint from before issue 24, whose workers ended after each answer, reads False)."
        ),
    ] = False
    worker_busy_s: Annotated[
        float, Field(description="What the rounds on `worker_id` took so far (their answers' duration_ms).")
    ] = 0.0
    tester_id: Annotated[
        str | None, Field(description="A tester worker of its own (no developer), ended after its answer.")
    ] = None
    commit_sha: str | None = None
    files_changed: Annotated[list[str], Field(description="Every path changed, over all rounds.")] = []
    developer_answer: Annotated[str | None, Field(description="The developer's summary (the PR body).")] = (
        None
    )
    pr_url: str | None = None
    no_merge: Annotated[bool, Field(description="`--no-merge`: the work stays on its branch / open PR.")] = (
        False
    )
    merge_commit: Annotated[str | None, Field(description="The tip of main that holds the work.")] = None
    merge_conflicts: Annotated[
        list[str], Field(description="Paths main changed too, for the developer's rebase round.")
    ] = []
    merge_rounds: Annotated[int, Field(description="Rebase rounds given after a conflict with main.")] = 0
    gate: Annotated[
        GateKind | None, Field(description="The gate the task waits at for a person's answer, if any.")
    ] = None
    review: Annotated[
        str | None,
        Field(
            description="Why a person must look (the blocked reason, the last test output): a review is due."
        ),
    ] = None
    guidance: Annotated[
        str | None, Field(description="The person's guidance from the last review, for the developer rounds.")
    ] = None
    outcome: Outcome | None = None
    error: str | None = None
    failure_reason: Annotated[
        str | None, Field(description='The machine-readable reason a failure is recorded with ("budget").')
    ] = None

    @property
    def no_developer(self) -> bool:
        """`--agent none`: skip the developer; the template (or the base ref) alone is tested and delivered."""
        return self.agent == NO_AGENT

    @property
    def base(self) -> str:
        return self.base_ref or "main"

    @classmethod
    def starting(cls, task: Task, agent: str) -> EngState:
        """The state a task starts with, `agent` being the one it runs with (see `requested_agent`)."""
        params = task.params_as(EngineeringParams)
        return cls(
            task_id=task.id,
            project_id=task.project_id,
            spec=task.spec or "",
            agent=agent,
            correlation_id=task.correlation_id,
            base_ref=params.base_ref or "main",
            no_merge=params.no_merge,
        )


def requested_agent(task: Task) -> str | None:
    """The agent the task itself asks for (`--agent`), if any."""
    return task.params_as(EngineeringParams).agent or None


# -- the answers that resume the graph, read leniently: a missing or null field takes its default ---


class _Answer(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, value: Any) -> Any:
        return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


class ScaffoldAnswer(_Answer):
    """The scaffolder's result (`ScaffolderResult` as JSON)."""

    status: str = ""
    error: str | None = None
    repo_url: str | None = None
    commit_sha: str | None = None


class WorkerCreated(_Answer):
    """A `CreateWorkerResponse` as JSON."""

    success: bool = False
    error: str | None = None
    worker_id: str | None = None


class AgentRun(_Answer):
    """The wrapper's structured result of one message (`SendMessageResponse.result`)."""

    status: Annotated[
        str, Field(description="success, failed, blocked, or budget (stopped at the budget).")
    ] = ""
    reason: str | None = None
    commit_sha: str | None = None
    files_changed: list[str] = []
    output_tail: str | None = None
    duration_ms: int | None = None


class WorkerReply(_Answer):
    """A `SendMessageResponse` as JSON."""

    success: bool = False
    error: str | None = None
    response: str | None = None
    result: AgentRun = AgentRun()
