"""/usage and /budgets: what a person's agents and workers cost, and the limits that stop them.
/internal/tasks/{id}/budget: what a task may still spend (the graphs ask before a worker starts)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from functions.api.deps import get_deps
from functions.api.errors import Forbidden, Unprocessable
from functions.api.routers._common import new_router, principal, service_or_worker, transaction
from functions.api.services import budgets, lookup, usage, workers
from shared.contracts.spend import Budget, BudgetCheck, BudgetPeriod, BudgetSet, BudgetStatus, Usage

router = new_router()
TAGS = ["spend"]
ProjectQuery = Annotated[str | None, Query(description="Project id or name.", max_length=63)]
UserQuery = Annotated[
    str | None, Query(description="User id (another person's: admins only).", max_length=64)
]


def _day(raw: str | None) -> date | None:
    """`since` as a day (YYYY-MM-DD); anything else is a 422 naming it."""
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise Unprocessable(
            f"invalid request: since: {raw!r} is not a date (YYYY-MM-DD)", ["since"]
        ) from None


@router.get(
    "/usage",
    summary="What your agents and workers cost: in all, per month, per project, the top tasks; and budgets",
    tags=TAGS,
)
def get_usage(
    project: ProjectQuery = None,
    since: Annotated[
        str | None,
        Query(description="Only spend from this day on (YYYY-MM-DD, UTC).", pattern=r"^\d{4}-\d{2}-\d{2}$"),
    ] = None,
    user: UserQuery = None,
) -> Usage:
    caller = principal(router)
    day = _day(since)
    if user is not None and user != caller.user_id and not caller.is_admin:
        raise Forbidden("only an admin may see another person's usage", ["user"])
    settings = get_deps().settings
    with transaction() as session:
        project_id = None if project is None else lookup.project(session, caller, project).id
        user_id = user if user is not None or project_id is not None else caller.user_id
        found = usage.summary(session, user_id, project_id, day)
        shown = budgets.shown(session, caller, settings, project, user if project is None else None)
    return Usage(
        user_id=user_id,
        project_id=project_id,
        since=day,
        total=found.total,
        by_month=found.by_month,
        by_project=found.by_project,
        by_task=found.by_task,
        budgets=shown,
    )


@router.put(
    "/budgets",
    summary="Set a project's budget (its owner) or a person's (admins), per task or per month",
    tags=TAGS,
)
def set_budget(body: BudgetSet) -> Budget:
    caller = principal(router)
    with transaction() as session:
        return budgets.set_budget(session, caller, body)


@router.get(
    "/budgets",
    summary="The budgets that apply (set or default) to a project or a person, with what is spent",
    tags=TAGS,
)
def list_budgets(project: ProjectQuery = None, user: UserQuery = None) -> list[BudgetStatus]:
    caller = principal(router)
    with transaction() as session:
        return budgets.shown(session, caller, get_deps().settings, project, user)


@router.delete(
    "/budgets",
    summary="Clear a project's or a person's budget: back to the default",
    tags=TAGS,
    responses={204: {"description": "Cleared (or was not set)", "content": {}}},
)
def clear_budget(
    per: Annotated[BudgetPeriod, Query(description="task or month.")],
    project: ProjectQuery = None,
    user: UserQuery = None,
) -> Response[None]:
    caller = principal(router)
    with transaction() as session:
        budgets.clear_budget(session, caller, per, project, user)
    return Response(status_code=204, content_type="application/json", body=None)


@router.get(
    "/internal/tasks/<task_id>/budget",
    summary="What a task may still spend, and which budget binds (service, or the task's own worker)",
    tags=TAGS,
)
def task_budget(task_id: Annotated[str, Path(max_length=64)]) -> BudgetCheck:
    caller = service_or_worker(router)
    with transaction() as session:
        workers.act_for_task(session, caller, task_id)
        return budgets.check(session, task_id, get_deps().settings)
