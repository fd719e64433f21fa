"""Budgets: limits on what the ledger may reach, per task and per calendar month (UTC), for a person
(an admin sets it) and for a project (its owner sets it). Unset ones fall back to the settings' defaults.

Which budgets apply to a task:
- per task: the person's (set, or `budget_task_usd`) and, when its owner set one, the project's; spent =
  everything the task ever cost (all attempts, rounds and retries: keyed by task id, so a retry or a
  redelivery starts from what was already spent, never from zero);
- the project's monthly budget (set, or `budget_project_month_usd`) against the project's month;
- the person's monthly budget (set, or `budget_user_month_usd`) against the person's month.
The tightest (least remaining) binds. A project's budget can only make things tighter: a person cannot
lift the limit an admin set for them by giving their project a larger one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import added
from functions.api.errors import Forbidden, NotFound, Unprocessable
from functions.api.models import Budget as BudgetRow
from functions.api.models import Project, Task, UsageEntry, User
from functions.api.services import lookup, usage
from shared.contracts.dto import TaskStatus
from shared.contracts.spend import (
    Budget,
    BudgetCheck,
    BudgetPeriod,
    BudgetScope,
    BudgetSet,
    BudgetStatus,
    to_micros,
    to_usd,
)
from shared.spend_settings import SpendControlSettings

NOTE_MAX = 300
"""WorkerMessage.budget_note's column size."""


def usd_text(micros: int) -> str:
    """$1.02, or more digits when the amount has them ($0.0123): a note never rounds spend away."""
    usd = micros / 1_000_000
    if micros % 10_000 == 0:
        return f"${usd:,.2f}"
    return "$" + f"{usd:,.6f}".rstrip("0")


@dataclass(frozen=True)
class Applied:
    """A budget that applies, with what its period has spent and the words that name it to a person."""

    scope: BudgetScope
    scope_id: str
    period: BudgetPeriod
    limit_micros: int
    spent_micros: int
    is_set: bool

    @property
    def remaining_micros(self) -> int:
        return self.limit_micros - self.spent_micros

    def status(self) -> BudgetStatus:
        return BudgetStatus(
            scope=self.scope,
            scope_id=self.scope_id,
            period=self.period,
            usd=to_usd(self.limit_micros),
            source="set" if self.is_set else "default",
            spent_usd=to_usd(self.spent_micros),
            remaining_usd=to_usd(self.remaining_micros),
        )

    def note(self, session: Session) -> str:
        """E.g. "the monthly budget of project blog $5.00 (spent $4.80)" (names read only for the one
        a note is made of)."""
        owner = (
            f"project {_name(session, Project, self.scope_id)}"
            if self.scope == "project"
            else _name(session, User, self.scope_id)
        )
        what = f"the {'task' if self.period == 'task' else 'monthly'} budget"
        if self.is_set or self.period == "month":
            what += f" of {owner}"
        return f"{what} {usd_text(self.limit_micros)} (spent {usd_text(self.spent_micros)})"[:NOTE_MAX]


def _rows(session: Session, user_id: str | None, project_id: str | None) -> dict[tuple[str, str], BudgetRow]:
    """The set budgets of a person and a project, by (scope, period): one query."""
    scopes = []
    if user_id is not None:
        scopes.append(and_(BudgetRow.scope == "user", BudgetRow.scope_id == user_id))
    if project_id is not None:
        scopes.append(and_(BudgetRow.scope == "project", BudgetRow.scope_id == project_id))
    if not scopes:
        return {}
    found = session.execute(select(BudgetRow).where(or_(*scopes))).scalars()
    return {(row.scope, row.period): row for row in found}


def _limit(row: BudgetRow | None, default_usd: float | None) -> tuple[int, bool] | None:
    if row is not None:
        return row.limit_micros, True
    if default_usd is None:
        return None
    return to_micros(default_usd), False


def _name(session: Session, model: type[User] | type[Project], row_id: str) -> str:
    found = session.execute(select(model.name).where(model.id == row_id)).scalar_one_or_none()
    return (found or row_id)[:60]


def _monthly(
    session: Session,
    scope: BudgetScope,
    scope_id: str,
    rows: dict[tuple[str, str], BudgetRow],
    default_usd: float | None,
) -> list[Applied]:
    """A person's or a project's monthly budget (set, or the default; none: []), against this
    calendar month's spend (UTC)."""
    found = _limit(rows.get((scope, "month")), default_usd)
    if found is None:
        return []
    column = UsageEntry.user_id if scope == "user" else UsageEntry.project_id
    spent = usage.spent_micros(session, column == scope_id, UsageEntry.created_at >= usage.month_start())
    limit, is_set = found
    return [Applied(scope, scope_id, "month", limit, spent, is_set)]


def _person(
    session: Session,
    rows: dict[tuple[str, str], BudgetRow],
    user_id: str,
    settings: SpendControlSettings,
    task_spent: int,
) -> list[Applied]:
    applied = []
    task_limit = _limit(rows.get(("user", "task")), settings.budget_task_usd)
    if task_limit is not None:
        limit, is_set = task_limit
        applied.append(Applied("user", user_id, "task", limit, task_spent, is_set))
    month = _monthly(session, "user", user_id, rows, settings.budget_user_month_usd)
    return applied + month


def _project(
    session: Session,
    rows: dict[tuple[str, str], BudgetRow],
    project_id: str,
    settings: SpendControlSettings,
    task_spent: int,
) -> list[Applied]:
    applied = []
    task_row = rows.get(("project", "task"))
    if task_row is not None:
        applied.append(Applied("project", project_id, "task", task_row.limit_micros, task_spent, True))
    return applied + _monthly(session, "project", project_id, rows, settings.budget_project_month_usd)


def applying(
    session: Session,
    settings: SpendControlSettings,
    user_id: str | None,
    project_id: str | None = None,
    task_spent: int = 0,
) -> list[Applied]:
    """Every budget that applies to a task that has spent `task_spent` (or, without a task, to a
    person's / a project's next one). Task budgets first, so a tie names the task's."""
    rows = _rows(session, user_id, project_id)
    project = [] if project_id is None else _project(session, rows, project_id, settings, task_spent)
    person = [] if user_id is None else _person(session, rows, user_id, settings, task_spent)
    return sorted(project + person, key=lambda a: a.period != "task")


def tightest(applied: list[Applied]) -> Applied | None:
    """The budget with the least left (the first of equals)."""
    return min(applied, key=lambda a: a.remaining_micros, default=None)


def check(session: Session, task_id: str, settings: SpendControlSettings) -> BudgetCheck:
    """What a task may still spend, and which budget says so (404: no such task)."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id!r} not found")
    task_spent = usage.task_spent_micros(session, task.id)
    binding = tightest(applying(session, settings, task.user_id, task.project_id, task_spent))
    status = TaskStatus(task.status)
    if binding is None:
        return BudgetCheck(
            task_id=task.id,
            remaining_usd=None,
            exhausted=False,
            task_spent_usd=to_usd(task_spent),
            task_status=status,
        )
    return BudgetCheck(
        task_id=task.id,
        remaining_usd=to_usd(binding.remaining_micros),
        exhausted=binding.remaining_micros <= 0,
        binding=binding.status(),
        note=binding.note(session),
        task_spent_usd=to_usd(task_spent),
        task_status=status,
    )


def for_message(
    session: Session, settings: SpendControlSettings, task_id: str | None, user_id: str | None
) -> tuple[int | None, str | None]:
    """(micro-USD, note) an agent may still spend on a message for this task / person (None: no limit).
    Never below zero: zero means "do not start"."""
    task = None if task_id is None else session.get(Task, task_id)
    if task is not None:
        task_spent = usage.task_spent_micros(session, task.id)
        applied = applying(session, settings, task.user_id, task.project_id, task_spent)
    else:  # a Product Owner conversation: no task, so only the person's month
        applied = [a for a in applying(session, settings, user_id) if a.period == "month"]
    binding = tightest(applied)
    if binding is None:
        return None, None
    return max(0, binding.remaining_micros), binding.note(session)


# -- setting and showing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    scope: BudgetScope
    scope_id: str
    owner_id: str | None
    """The person whose budgets also apply (a project's owner; the person themself)."""


def _one_of(project: str | None, user: str | None) -> None:
    """Setting or clearing names exactly one of them: 422 naming both otherwise."""
    if (project is None) == (user is None):
        raise Unprocessable("name either a project or a user (exactly one)", ["project", "user"])


def _target(session: Session, caller: Principal, project: str | None, user: str | None) -> Target:
    """The project or person a budget call names (exactly one): 422 naming both fields otherwise; a
    project that is not the caller's is 404; another person's budget is for admins only (403)."""
    if project is not None and user is not None:
        raise Unprocessable("name either project or user, not both", ["project", "user"])
    if project is not None:
        row = lookup.project(session, caller, project)
        return Target("project", row.id, row.owner_id)
    user_id = user or caller.user_id
    if user_id != caller.user_id and not caller.is_admin:
        raise Forbidden("only an admin may set or see another person's budget", ["user"])
    if session.get(User, user_id) is None:
        raise NotFound(f"user {user_id!r} not found", ["user"])
    return Target("user", user_id, user_id)


def _find(session: Session, target: Target, period: str) -> BudgetRow | None:
    return session.execute(
        select(BudgetRow).where(
            BudgetRow.scope == target.scope,
            BudgetRow.scope_id == target.scope_id,
            BudgetRow.period == period,
        )
    ).scalar_one_or_none()


def set_budget(session: Session, caller: Principal, body: BudgetSet) -> Budget:
    """A project's budget (its owner or an admin) or a person's (admins only: 403 for anyone else, even
    for themself, so a person cannot lift their own limit). Set again, it is replaced."""
    _one_of(body.project, body.user)
    if body.user is not None and not caller.is_admin:
        raise Forbidden("only an admin may set a person's budget", ["user"])
    target = _target(session, caller, body.project, body.user)
    limit = to_micros(body.usd)
    row = _find(session, target, body.per)
    if row is None:
        row = BudgetRow(
            scope=target.scope,
            scope_id=target.scope_id,
            period=body.per,
            limit_micros=limit,
            set_by=caller.user_id,
        )
        if not added(session, row):  # set at the same moment by another request: ours replaces it
            row = _find(session, target, body.per)
            assert row is not None
    row.limit_micros, row.set_by = limit, caller.user_id
    session.flush()
    return Budget(
        scope=target.scope, scope_id=target.scope_id, period=body.per, usd=to_usd(limit), source="set"
    )


def clear_budget(
    session: Session, caller: Principal, per: BudgetPeriod, project: str | None, user: str | None
) -> None:
    """Back to the default (idempotent: clearing an unset budget is fine). Same rights as setting it."""
    _one_of(project, user)
    if user is not None and not caller.is_admin:
        raise Forbidden("only an admin may change a person's budget", ["user"])
    row = _find(session, _target(session, caller, project, user), per)
    if row is not None:
        session.delete(row)
        session.flush()


def shown(
    session: Session, caller: Principal, settings: SpendControlSettings, project: str | None, user: str | None
) -> list[BudgetStatus]:
    """What applies (set or default) to a project's tasks (the project's and its owner's budgets) or to
    a person (theirs; the caller by default), with this month's spend."""
    target = _target(session, caller, project, user)
    project_id = target.scope_id if target.scope == "project" else None
    return [a.status() for a in applying(session, settings, target.owner_id, project_id)]
