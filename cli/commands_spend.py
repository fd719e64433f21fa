"""`orchestrator usage`, `orchestrator budget set|show|clear` and `orchestrator project set --approval`:
what the agents and workers cost, the hard budgets that stop them, and what waits for the owner's
approval (issue 21). `project set` is registered on the `project` group of cli.commands_projects."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from cli.context import JsonFlag, client, resolve_project, short_id
from cli.errors import CliError, ExitCode
from cli.output import print_json, print_table

if TYPE_CHECKING:
    from shared.contracts.spend import BudgetStatus, UsageGroup, UsageTotals

budget_app = typer.Typer(
    help="Budgets: hard limits on what a task, a project or a person may spend.", no_args_is_help=True
)

ProjectOption = Annotated[
    str | None, typer.Option("--project", help="A project (name, id or id prefix) of yours.")
]
UserOption = Annotated[str | None, typer.Option("--user", help="A person's user id (admins only).")]
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Period(StrEnum):
    TASK = "task"
    MONTH = "month"


def money(usd: float | None) -> str:
    """Dollars to the cent; below a cent, enough digits that a small run does not read as free."""
    value = usd or 0.0
    return f"${value:.4f}" if 0 < abs(value) < 0.01 else f"${value:.2f}"


def parse_since(value: str | None) -> date | None:
    """`--since YYYY-MM-DD` (exit 2 naming the flag otherwise)."""
    if value is None:
        return None
    try:
        if not DATE.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise CliError(f"--since {value!r} is not a date: give it as YYYY-MM-DD", ExitCode.USAGE) from None


def usage(
    ctx: typer.Context,
    project: ProjectOption = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only spend from this day on (YYYY-MM-DD, UTC).")
    ] = None,
    user: UserOption = None,
    json_output: JsonFlag = False,
) -> None:
    """What your agents and workers cost: the total, by month, by project, the most expensive tasks, and
    what is left of each budget that applies."""
    day = parse_since(since)
    with client(ctx) as api:
        found = api.usage(project=resolve_project(api, project) if project else None, since=day, user=user)
    if json_output:
        print_json(found)
        return
    scope = f"project {project}" if project else f"user {user}" if user else "you"
    typer.echo(f"spend of {scope}{f' since {day}' if day else ''}: {_totals(found.total)}")
    for title, groups in (
        ("by month", found.by_month),
        ("by project", found.by_project),
        ("most expensive tasks", found.by_task),
    ):
        if groups:
            _groups_table(title, groups, ids=groups is found.by_task)
    if found.budgets:
        _budgets_table(found.budgets)


def _totals(total: UsageTotals) -> str:
    return (
        f"{money(total.cost_usd)} (agents {money(total.agent_cost_usd)} in {total.runs} runs, "
        f"workers {money(total.worker_cost_usd)} over {total.worker_seconds:.0f} s; tokens "
        f"{total.input_tokens:,} in, {total.output_tokens:,} out, {total.cache_tokens:,} cached)"
    )


def _groups_table(title: str, groups: list[UsageGroup], ids: bool) -> None:
    print_table(
        title,
        ["what", "cost", "agents", "workers", "runs", "tokens in/out"],
        [
            (
                " ".join(filter(None, (short_id(g.key) if ids else g.key, g.label))),
                money(g.cost_usd),
                money(g.agent_cost_usd),
                money(g.worker_cost_usd),
                g.runs,
                f"{g.input_tokens:,}/{g.output_tokens:,}",
            )
            for g in groups
        ],
    )


def _budgets_table(budgets: list[BudgetStatus]) -> None:
    print_table(
        "budgets",
        ["for", "per", "limit", "spent", "left", "source"],
        [
            (
                f"{b.scope} {short_id(b.scope_id)}",
                b.period,
                money(b.usd),
                money(b.spent_usd),
                money(b.remaining_usd),
                b.source,
            )
            for b in budgets
        ],
    )


def _one_scope(project: str | None, user: str | None, required: bool) -> None:
    if project is not None and user is not None:
        raise CliError("give --project or --user, not both", ExitCode.USAGE)
    if required and project is None and user is None:
        raise CliError("give --project PROJECT or --user USER_ID: whose budget", ExitCode.USAGE)


@budget_app.command("set")
def budget_set(
    ctx: typer.Context,
    usd: Annotated[float, typer.Option("--usd", min=0, help="The limit in US dollars (0 stops all spend).")],
    per: Annotated[
        Period,
        typer.Option("--per", case_sensitive=False, help="task: each task's; month: each calendar month's."),
    ],
    project: ProjectOption = None,
    user: UserOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Set a hard budget for a project of yours, or (admins) a person: work that would pass it stops and
    its task FAILS with reason `budget`, naming the budget and what was spent."""
    from shared.contracts.spend import BudgetSet

    _one_scope(project, user, required=True)
    with client(ctx) as api:
        name = resolve_project(api, project) if project else None
        budget = api.set_budget(BudgetSet(project=name, user=user, usd=usd, per=per.value))
    if json_output:
        print_json(budget)
        return
    whose = f"project {project}" if project else f"user {user}"
    typer.echo(f"budget of {whose}: {money(budget.usd)} per {budget.period}")


@budget_app.command("show")
def budget_show(
    ctx: typer.Context,
    project: ProjectOption = None,
    user: UserOption = None,
    json_output: JsonFlag = False,
) -> None:
    """The budgets that apply (set, or the settings' default) with what is spent and left; default:
    yours."""
    _one_scope(project, user, required=False)
    with client(ctx) as api:
        found = api.budgets(project=resolve_project(api, project) if project else None, user=user)
    if json_output:
        print_json(found)
    elif found:
        _budgets_table(found)
    else:
        typer.echo("no budget applies")


@budget_app.command("clear")
def budget_clear(
    ctx: typer.Context,
    per: Annotated[
        Period, typer.Option("--per", case_sensitive=False, help="Which one: the task or the month budget.")
    ],
    project: ProjectOption = None,
    user: UserOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Remove a budget you set: the settings' default applies again."""
    _one_scope(project, user, required=True)
    with client(ctx) as api:
        name = resolve_project(api, project) if project else None
        api.clear_budget(per.value, project=name, user=user)
    whose = f"project {project}" if project else f"user {user}"
    if json_output:
        print_json({"project": name, "user": user, "per": per.value, "cleared": True})
    else:
        typer.echo(f"{whose}'s {per.value} budget is the default again")


# -- project set --approval ----------------------------------------------------------------------

APPROVALS = {
    "none": "nothing waits for your approval",
    "deploy": "deploys to servers other than the built-in one wait for your approval",
    "plan": "every engineering plan waits for your approval",
    "deploy,plan": "deploys to servers other than the built-in one and every engineering plan wait for "
    "your approval",
}


def set_project(
    ctx: typer.Context,
    project: Annotated[
        str, typer.Argument(help="Project name, id, or the start of its id (at least 6 characters).")
    ],
    approval: Annotated[
        str,
        typer.Option(
            "--approval",
            help="What waits for your approval: deploy,plan | deploy | plan | none | default (the settings').",
        ),
    ],
    json_output: JsonFlag = False,
) -> None:
    """Change a project's settings: what waits for your approval (`task approve|reject` answers)."""
    policy = _approval(approval)
    with client(ctx) as api:
        changed = api.update_project(resolve_project(api, project), approval=policy)
    if json_output:
        print_json(changed)
    elif changed.approval is None:
        typer.echo(
            f"{changed.name}: approval is the default (deploys to servers other than the built-in one)"
        )
    else:
        typer.echo(f"{changed.name}: approval {changed.approval}: {APPROVALS.get(changed.approval, '')}")


def _approval(given: str) -> str | None:
    """The policy the API takes (None = the default), from what a person types (any order, any case)."""
    words = [w.strip() for w in given.lower().split(",") if w.strip()]
    if words == ["default"]:
        return None
    policy = ",".join(sorted(set(words)))
    if policy not in APPROVALS:
        raise CliError(
            f"--approval {given!r} is not a policy: give deploy,plan, deploy, plan, none or default",
            ExitCode.USAGE,
        )
    return policy


def register(project_app: typer.Typer) -> None:
    project_app.command("set")(set_project)
