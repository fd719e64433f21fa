"""API bodies for spend and control (issue 21): the usage ledger, budgets, and gates (approvals and
human review). Money crosses the API as USD floats rounded to the micro-dollar; the ledger keeps
integers (micro-USD), so sums are exact."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from shared.contracts.dto import Dto, Out, TaskStatus

FailureReason = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$"),
    Field(
        description="A FAILED task's machine-readable reason: budget (a budget is spent), rejected (a person "
        "rejected a gate), approval_timeout / review_timeout (nobody answered in time).",
        examples=["budget"],
    ),
]
BUDGET: Literal["budget"] = "budget"
REJECTED: Literal["rejected"] = "rejected"
APPROVAL_TIMEOUT: Literal["approval_timeout"] = "approval_timeout"
REVIEW_TIMEOUT: Literal["review_timeout"] = "review_timeout"

ApprovalPolicy = Annotated[
    str,
    StringConstraints(pattern=r"^(none|deploy|plan|deploy,plan|plan,deploy)$"),
    Field(
        description='What waits for the owner\'s approval: "deploy" (deploys to servers other than the '
        'built-in one), "plan" (every engineering plan), "deploy,plan", or "none".',
        examples=["deploy,plan"],
    ),
]
GateKind = Literal["plan", "deploy", "review"]
GateStatus = Literal["pending", "approved", "rejected", "resumed", "expired", "cancelled"]
BudgetScope = Literal["user", "project"]
BudgetPeriod = Literal["task", "month"]
Usd = Annotated[float, Field(ge=0, le=1_000_000, description="US dollars.")]


def to_micros(usd: float) -> int:
    """USD -> integer micro-USD (the ledger's unit), to the nearest micro-dollar."""
    return round(usd * 1_000_000)


def to_usd(micros: int | None) -> float:
    return round((micros or 0) / 1_000_000, 6)


# -- the ledger ---------------------------------------------------------------------------------


class UsageReport(Dto):
    """Internal: what one agent run cost, as its wrapper saw it (sent inside the message result too)."""

    agent: Annotated[str | None, Field(max_length=64)] = None
    model: Annotated[str | None, Field(max_length=128)] = None
    input_tokens: Annotated[int | None, Field(ge=0)] = None
    output_tokens: Annotated[int | None, Field(ge=0)] = None
    cache_tokens: Annotated[int | None, Field(ge=0)] = None
    cost_usd: Usd | None = None
    duration_ms: Annotated[int | None, Field(ge=0)] = None


class UsageTotals(Out):
    cost_usd: float = 0.0
    agent_cost_usd: float = Field(default=0.0, description="What the agent CLIs reported.")
    worker_cost_usd: float = Field(default=0.0, description="Worker running time, priced from settings.")
    input_tokens: int = 0
    output_tokens: int = 0
    cache_tokens: int = 0
    runs: int = Field(default=0, description="Agent runs counted.")
    worker_seconds: float = 0.0


class UsageGroup(UsageTotals):
    key: str = Field(description="The project id, the task id or the month (YYYY-MM).")
    label: str | None = Field(default=None, description="The project's name, the task's type, ...")


class Usage(Out):
    """`GET /usage`: the caller's spend (an admin may ask for anyone's)."""

    user_id: str | None
    project_id: str | None = None
    since: date | None = None
    total: UsageTotals
    by_month: list[UsageGroup] = Field(default_factory=list)
    by_project: list[UsageGroup] = Field(default_factory=list)
    by_task: list[UsageGroup] = Field(default_factory=list, description="The 50 most expensive tasks.")
    budgets: list[BudgetStatus] = Field(
        default_factory=list, description="The budgets that apply, and what is left."
    )


# -- budgets ------------------------------------------------------------------------------------


class BudgetSet(Dto):
    """`PUT /budgets`: exactly one of `project` / `user`. A person sets their projects' budgets; an admin
    sets a person's (`user`)."""

    project: Annotated[str | None, Field(max_length=64, description="Project id or name.")] = None
    user: Annotated[str | None, Field(max_length=64, description="User id (admins only).")] = None
    usd: Usd
    per: BudgetPeriod


class Budget(Out):
    scope: BudgetScope
    scope_id: str
    period: BudgetPeriod
    usd: float
    source: Literal["set", "default"] = Field(description="Set explicitly, or the settings' default.")


class BudgetStatus(Budget):
    spent_usd: float = Field(description="Spent in this budget's period (this task / this calendar month).")
    remaining_usd: float


class BudgetCheck(Out):
    """`GET /internal/tasks/{id}/budget`: what the task may still spend, and which budget binds."""

    task_id: str
    remaining_usd: float | None = Field(description="Null: no budget applies.")
    exhausted: bool
    binding: BudgetStatus | None = Field(default=None, description="The tightest budget.")
    note: str | None = Field(
        default=None, description='E.g. "the project\'s monthly budget $5.00 (spent $4.80)".'
    )
    task_spent_usd: float = Field(default=0.0, description="What the task cost so far (all its attempts).")
    task_status: TaskStatus | None = Field(
        default=None,
        description="The task's status as the budget was read: a graph checks both before a round in one "
        "call (null from an API older than the field).",
    )


# -- gates --------------------------------------------------------------------------------------


class Gate(Out):
    id: str
    task_id: str
    kind: GateKind
    round: int
    status: GateStatus
    summary: str
    details: dict[str, object] = Field(default_factory=dict)
    comment: str | None = None
    answered_by: str | None = None
    requested_at: datetime
    expires_at: datetime | None = None
    answered_at: datetime | None = None


class GateNeed(Out):
    """`GET /internal/tasks/{id}/gate-needed?kind=plan|deploy[&server=H]`: must the graph stop here?"""

    required: bool
    reason: str = Field(description='Why (or why not), e.g. "the project\'s policy is deploy,plan".')
    estimate_usd: float | None = Field(default=None, description="A plan's cost estimate, when there is one.")
    task_status: TaskStatus | None = Field(
        default=None,
        description="The task's status as the need was read: a graph checks both before its plan in one call "
        "(null from an API older than the field).",
    )


class GateRequest(Dto):
    """Internal (a graph): park the task at a gate. Idempotent per (task, kind, round)."""

    kind: GateKind
    round: Annotated[int, Field(ge=0, le=1000)] = 0
    summary: Annotated[str, Field(min_length=1, max_length=20_000)]
    details: dict[str, object] = Field(default_factory=dict)


OnBehalfOf = Annotated[
    str | None,
    Field(
        max_length=64,
        description="Service keys only (the Telegram bot): the user who answered; the API checks the task is "
        "theirs (or they are an admin) and records them as the one who answered.",
    ),
]


class GateAnswer(Dto):
    """`POST /tasks/{id}/approve` and `/reject`."""

    comment: Annotated[str | None, Field(max_length=4000)] = None
    on_behalf_of: OnBehalfOf = None


class GateResume(Dto):
    """`POST /tasks/{id}/resume`: the guidance goes into the next developer round's TASK.md."""

    guidance: Annotated[str, Field(min_length=1, max_length=20_000)]
    on_behalf_of: OnBehalfOf = None
