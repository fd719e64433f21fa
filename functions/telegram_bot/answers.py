"""A person answers a waiting task from chat: the [Approve] / [Reject] buttons on its status message, a
reply to that message with guidance while it waits for review, and `/usage`.

The bot reaches the API with the service key, as for every command: it answers only for the sender's
own tasks (an admin: any), and says so politely otherwise (the API refuses strangers too). Answers go
through the API's compare-and-set: a second press, or a redelivered update, gets its 409 and is told
that nothing waits any more. Plain functions over the API client and aiogram's objects; bot.py wires
them to the dispatcher.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.types import Message

from functions.telegram_bot import texts
from shared.api_client import AuthError, ConflictError, NotFoundError
from shared.contracts.api import Task, TaskStatus
from shared.observability import get_logger

if TYPE_CHECKING:
    from functions.telegram_bot.bot import BotDeps, Viewer

GATE_CALLBACK = re.compile(r"gate:(?P<action>approve|reject):(?P<task_id>[A-Za-z0-9_-]{1,64})")
REVIEW_CANDIDATES = 200
"""Tasks waiting for review at once, looked at when a reply might be guidance (there are a handful)."""


@dataclass(frozen=True)
class GateOutcome:
    text: str
    settled: bool
    """The gate no longer waits (answered now, or before): the buttons can go."""


def parse_gate_callback(data: str | None) -> tuple[str, str] | None:
    """(action, task id) of a gate button's callback_data, or None for anything else."""
    match = GATE_CALLBACK.fullmatch(data or "")
    return (match["action"], match["task_id"]) if match else None


def _own_task(deps: BotDeps, viewer: Viewer, task_id: str) -> Task | None:
    try:
        task = deps.api.get_task(task_id)
    except NotFoundError:
        return None
    return task if viewer.owns(task) else None


def answer_gate(deps: BotDeps, viewer: Viewer, action: str, task_id: str) -> GateOutcome:
    """Approve or reject the task's pending gate for the sender; what to tell them."""
    task = _own_task(deps, viewer, task_id)
    if task is None:
        get_logger().info("gate button refused", extra={"task_id": task_id, "by": viewer.telegram_id})
        return GateOutcome(texts.NOT_YOURS, settled=False)
    try:
        who = viewer.user.id if viewer.user is not None else None
        call = deps.api.approve_task if action == "approve" else deps.api.reject_task
        answered = call(task.id, on_behalf_of=who)
    except ConflictError as exc:
        return GateOutcome(texts.gate_refused(exc.message), settled=True)
    except (NotFoundError, AuthError):
        return GateOutcome(texts.NOT_YOURS, settled=False)
    get_logger().info(
        "gate answered from telegram", extra={"task_id": task.id, "action": action, "by": viewer.telegram_id}
    )
    return GateOutcome(texts.gate_answered(action, answered), settled=True)


def review_task_of(message: Message, deps: BotDeps, viewer: Viewer, bot: Bot) -> Task | None:
    """The task whose status message `message` replies to, when that task waits for review: the reply's
    message id is the task's status message id (the notifier records it) in this chat."""
    asked = message.reply_to_message
    if asked is None or asked.from_user is None or asked.from_user.id != bot.id:
        return None
    if not (message.text or "").strip() or (message.text or "").startswith("/"):
        return None
    waiting = deps.api.list_tasks(status=TaskStatus.WAITING_HUMAN_REVIEW.value, limit=REVIEW_CANDIDATES)
    for task in waiting.items:
        if not viewer.owns(task):
            continue
        try:
            note = deps.api.task_notification(task.id)
        except NotFoundError:
            continue
        if note.chat_id == message.chat.id and note.message_id == asked.message_id:
            return task
    return None


def replies_to_review(message: Message, deps: BotDeps, viewer: Viewer, bot: Bot) -> bool | dict[str, Task]:
    """aiogram filter: a reply to the status message of a task waiting for review (hands the task on)."""
    task = review_task_of(message, deps, viewer, bot)
    return {"review_task": task} if task is not None else False


def take_guidance(deps: BotDeps, task: Task, guidance: str, viewer: Viewer | None = None) -> str:
    """Resume the task with `guidance` for the person who replied; what to tell them."""
    who = viewer.user.id if viewer is not None and viewer.user is not None else None
    try:
        resumed = deps.api.resume_task(task.id, guidance=guidance.strip(), on_behalf_of=who)
    except ConflictError as exc:
        return texts.guidance_refused(task.id, exc.message)
    except (NotFoundError, AuthError):
        return texts.NOT_YOURS
    get_logger().info("review resumed from telegram", extra={"task_id": task.id})
    return texts.guidance_taken(resumed)


def usage_text(deps: BotDeps, viewer: Viewer, now: datetime | None = None) -> str:
    """`/usage`: the sender's spend this calendar month (UTC)."""
    if viewer.user is None:
        return "You have no account of your own here, so nothing is spent in your name."
    now = now or datetime.now(UTC)
    month_start = now.date().replace(day=1)
    usage = deps.api.usage(user=viewer.user.id, since=month_start)
    names = {p.id: p.name for p in deps.api.list_projects() if p.owner_id == viewer.user.id}
    return texts.format_usage(usage, month_start.strftime("%Y-%m"), names)
