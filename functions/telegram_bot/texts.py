"""What the bot says: plain text (no parse mode, so nothing a user or a project name holds can
break formatting); `TelegramClient.send_text` cuts it to Telegram's 4096-character limit. Pure
functions, no aiogram."""

from __future__ import annotations

from collections.abc import Sequence

from shared.contracts.api import Project, Task, TaskEvent
from shared.contracts.spend import Usage

STATUS_EVENTS = 5
LATEST_TASKS = 5

HELP = """I turn what you want into working software: just tell me, in your own words, what to build or change.

Commands:
/projects - your projects and their status
/status [task] - a task's status and last events; without a task, your latest tasks
/cancel <task> - cancel a queued, running or waiting task
/usage - what your work cost this month, per project, and the budgets left
/secret <project> <NAME> - give a project a secret: I ask for the value, store it and delete your message (the Product Owner never sees it)
/cancel - stop waiting for a secret's value
/help - this message

When a task needs you:
- Approval (a deploy to your server, a big plan): its status message shows what is to be done with [Approve] and [Reject] buttons. Only you (or an admin) can press them.
- Review (the developer is stuck, or the tests still fail): reply to its status message with guidance and the next round starts with it; /cancel <task> ends it instead."""

BOT_COMMANDS: tuple[tuple[str, str], ...] = (
    ("projects", "Your projects and their status"),
    ("status", "A task's status, or your latest tasks"),
    ("cancel", "Cancel a task, or stop waiting for a secret"),
    ("usage", "What your work cost this month, and the budgets left"),
    ("secret", "Give a project a secret: /secret <project> <NAME>"),
    ("help", "What I can do"),
)
"""The command menu (Bot API setMyCommands), in the order Telegram shows it."""

ADMIN_HELP = """
Admin:
/adduser <telegram id> [name] - let someone use this bot"""

REFUSAL = (
    "Sorry, this bot is private and I don't know you yet. "
    "If you should have access, ask an administrator to add your Telegram id: {telegram_id}."
)


def greeting(name: str | None, is_admin: bool) -> str:
    hello = f"Hi {name}!" if name else "Hi!"
    return f"{hello} {help_text(is_admin)}"


def help_text(is_admin: bool) -> str:
    return HELP + (ADMIN_HELP if is_admin else "")


def format_projects(projects: Sequence[Project]) -> str:
    if not projects:
        return "You have no projects yet. Tell me what you'd like to build."
    lines = [f"Your projects ({len(projects)}):"]
    for p in sorted(projects, key=lambda p: p.name):
        line = f"- {p.name}: {p.status.value}"
        if p.repo_url:
            line += f" ({p.repo_url})"
        lines.append(line)
    return "\n".join(lines)


def _when(task: Task) -> str:
    return task.created_at.strftime("%Y-%m-%d %H:%M UTC")


def format_task(task: Task, project_name: str | None, events: Sequence[TaskEvent]) -> str:
    lines = [
        f"Task {task.id}",
        f"{task.type.value} of {project_name or task.project_id}: {task.status.value}"
        + (f" (attempt {task.attempt})" if task.attempt > 1 else ""),
        f"Created {_when(task)}",
    ]
    if task.error:
        lines.append(f"Error: {task.error}")
    if events:
        lines.append("Last events:")
        for e in events[-STATUS_EVENTS:]:
            detail = e.message + (f" ({e.progress_pct}%)" if e.progress_pct is not None else "")
            lines.append(f"- {e.timestamp.strftime('%H:%M:%S')} {e.type}: {detail}")
    else:
        lines.append("No events yet.")
    return "\n".join(lines)


def format_task_list(tasks: Sequence[Task], project_names: dict[str, str]) -> str:
    if not tasks:
        return "You have no tasks yet."
    lines = ["Your latest tasks:"]
    for t in tasks:
        project = project_names.get(t.project_id, t.project_id)
        lines.append(f"- {t.id} {t.type.value} of {project}: {t.status.value} ({_when(t)})")
    lines.append("Details: /status <task>")
    return "\n".join(lines)


WAKING = "⏳ Waking up (I sleep when nobody works) — I'll answer in a few seconds."
"""Sent once while the API's database resumes from its pause; the answer follows (or the update is retried)."""


# -- gates and usage ---------------------------------------------------------------------------

NOT_YOURS = "Only the task's owner (or an admin) can answer this."
STALE_BUTTON = "This button no longer does anything."


def gate_answered(action: str, task: Task) -> str:
    """The toast after a button press: what happens now."""
    if action == "approve":
        return f"Approved: the {task.type.value} goes on."
    return f"Rejected: the {task.type.value} stops (task {task.id})."


def gate_refused(reason: str) -> str:
    return f"Nothing to answer: {reason}"


def guidance_taken(task: Task) -> str:
    return f"Thanks — task {task.id} goes on with your guidance. I'll keep its status message current."


def guidance_refused(task_id: str, reason: str) -> str:
    return f"Task {task_id} can't take guidance now: {reason}"


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def format_usage(usage: Usage, month: str, project_names: dict[str, str]) -> str:
    """`/usage`: the month's total, per project, and what each monthly budget leaves; brief."""
    project_names = {g.key: g.label for g in usage.by_project if g.label} | project_names
    total = usage.total
    lines = [f"Your spend in {month}: {_usd(total.cost_usd)} ({total.runs} agent runs)"]
    projects = [g for g in usage.by_project if g.cost_usd > 0]
    if projects:
        lines.append("By project:")
        for group in sorted(projects, key=lambda g: -g.cost_usd)[:10]:
            name = group.label or project_names.get(group.key, group.key)
            lines.append(f"- {name}: {_usd(group.cost_usd)}")
    budgets = [b for b in usage.budgets if b.period == "month"]
    per_task = [b for b in usage.budgets if b.period == "task"]
    if budgets or per_task:
        lines.append("Budgets:")
    for budget in budgets:
        whose = "you" if budget.scope == "user" else project_names.get(budget.scope_id, budget.scope_id)
        lines.append(
            f"- {whose}, per month {_usd(budget.usd)}: {_usd(max(budget.remaining_usd, 0.0))} left"
            + (" (spent)" if budget.remaining_usd <= 0 else "")
        )
    for budget in per_task[:3]:
        whose = (
            "each task"
            if budget.scope == "user"
            else f"each task of {project_names.get(budget.scope_id, budget.scope_id)}"
        )
        lines.append(f"- {whose}: up to {_usd(budget.usd)}")
    lines.append("More: orchestrator usage")
    return "\n".join(lines)
