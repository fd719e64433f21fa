"""`/secret PROJECT NAME`: a project secret given in the chat, never through the Product Owner.

1. `/secret blog API_TOKEN`: the project must be the sender's (or the sender an admin) and the name
   an environment-variable name. The bot asks for the value in a message with `force_reply` (the
   person's app opens a reply to it) and remembers that it waits, in the claim store it already has
   (SQLite locally, DynamoDB in AWS; durable across processes and Lambda containers):
   `tg:secret:ask:<chat>:<user>:<question id>:<project>:<NAME>` (this question) and
   `tg:secret:waiting:<chat>:<user>` (this person owes a value here), both for
   `telegram_secret_wait_s`.
2. The reply: the person's message is deleted first (whatever happens next, the value leaves the
   chat), then the value is stored through the API (`PUT /projects/<id>/secrets/<NAME>`, the path
   `orchestrator secret set PROJECT NAME` takes) and one line confirms the name. The project and the
   name come from the question replied to (Telegram puts it in the update); both claims must still
   be held, so an expired, cancelled or foreign question stores nothing.
3. Any other text while the person owes a value is deleted as well (it may be the value, sent
   without replying) and never reaches the Product Owner; `/cancel` stops waiting.

The value is never logged, never put in an event, a queue message of the bot's own or a reply.
The claim store holds flags only: its keys carry ids and names, never a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.types import Message

from shared.api_client import ApiError, NotFoundError
from shared.contracts.api import Project
from shared.idempotency import IdempotencyPort
from shared.observability import get_logger
from shared.telegram.client import TelegramClient

if TYPE_CHECKING:
    from functions.telegram_bot.bot import BotDeps, Viewer

SECRET_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,127}")
"""What the API accepts as a secret name (the route's path pattern)."""
PROJECT_NAME = re.compile(r"[a-z][a-z0-9-]{0,61}[a-z0-9]")
QUESTION_PREFIX = "🔒 Reply to this message with the value of "
QUESTION = re.compile(
    re.escape(QUESTION_PREFIX) + r"(?P<name>[A-Z][A-Z0-9_]*) for (?P<project>[a-z][a-z0-9-]*[a-z0-9])\.\n"
)

USAGE = "Usage: /secret <project> <NAME>, e.g. /secret blog API_TOKEN. I then ask for the value."
VALUE_IN_COMMAND = (
    "Please don't put the value in the command: I deleted your message. "
    "Send /secret <project> <NAME>, then the value as a reply to my question."
)
EXPIRED = (
    "That question has expired or was cancelled, so I stored nothing. Send /secret <project> <NAME> again."
)
STILL_WAITING = (
    "I'm waiting for a secret value: send it as a reply to my question, or /cancel. "
    "I deleted your message in case it held the value."
)
NOT_TEXT = "Send the value as a text reply to my question, or /cancel."
CANCELLED = "OK, I stopped waiting for the secret. Nothing was stored."


def question_text(project: str, name: str) -> str:
    return (
        f"{QUESTION_PREFIX}{name} for {project}.\n"
        "I store it as a secret of the project and delete your message; the Product Owner never sees it. "
        "/cancel to stop."
    )


def waiting_key(chat_id: int, telegram_id: int) -> str:
    return f"tg:secret:waiting:{chat_id}:{telegram_id}"


def question_key(chat_id: int, telegram_id: int, question_id: int, project: str, name: str) -> str:
    return f"tg:secret:ask:{chat_id}:{telegram_id}:{question_id}:{project}:{name}"


def held(claims: IdempotencyPort, key: str) -> bool:
    """Whether a claim on `key` lives, asked with the store's one primitive: a claim that succeeds
    means nobody held it (and is given back at once)."""
    if claims.claim(key, 1):
        claims.release(key)
        return False
    return True


def _say(telegram: TelegramClient, message: Message, text: str) -> None:
    telegram.send_text(message.chat.id, text)


def _project_of(deps: BotDeps, viewer: Viewer, name: str) -> Project | None:
    """The sender's project by name (any project for an admin); None for unknown and foreign alike."""
    if not PROJECT_NAME.fullmatch(name):
        return None
    try:
        project = deps.api.get_project(name)
    except NotFoundError:
        return None
    mine = viewer.user is not None and project.owner_id == viewer.user.id
    return project if mine or viewer.is_admin else None


# -- /secret PROJECT NAME ------------------------------------------------------------------------


def ask(deps: BotDeps, viewer: Viewer, telegram: TelegramClient, message: Message, args: str) -> None:
    words = args.split()
    if len(words) > 2:  # the value typed into the command itself: it must not stay in the chat
        telegram.delete_message(message.chat.id, message.message_id)
        _say(telegram, message, VALUE_IN_COMMAND)
        return
    if len(words) != 2:
        _say(telegram, message, USAGE)
        return
    project_name, name = words
    if not SECRET_NAME.fullmatch(name):
        _say(
            telegram,
            message,
            f"{name[:64]} is not a secret name: use capital letters, digits and _, starting with a letter "
            "(e.g. API_TOKEN).",
        )
        return
    project = _project_of(deps, viewer, project_name)
    if project is None:
        _say(
            telegram,
            message,
            f"I can't find a project {project_name[:64]} of yours. Your projects: /projects",
        )
        return
    question_id = telegram.send_message(
        message.chat.id,
        question_text(project.name, name),
        reply_markup={
            "force_reply": True,
            "selective": True,
            "input_field_placeholder": f"value of {name}"[:64],
        },
    )
    wait_s = deps.settings.telegram_secret_wait_s
    deps.claims.claim(
        question_key(message.chat.id, viewer.telegram_id, question_id, project.name, name), wait_s
    )
    waiting = waiting_key(message.chat.id, viewer.telegram_id)
    deps.claims.release(waiting)  # a newer question restarts the clock
    deps.claims.claim(waiting, wait_s)
    get_logger().info(
        "secret asked for",
        extra={"project_id": project.id, "secret_name": name, "telegram_user_id": viewer.telegram_id},
    )


# -- the reply with the value --------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """The bot's question a message replies to: which project and secret it asked for."""

    message_id: int
    project: str
    name: str


def question_of(message: Message, bot: Bot) -> Question | None:
    """The question `message` replies to, when it is one of this bot's secret questions."""
    asked = message.reply_to_message
    if asked is None or asked.from_user is None or asked.from_user.id != bot.id:
        return None
    match = QUESTION.match(asked.text or "")
    return Question(asked.message_id, match["project"], match["name"]) if match else None


def answers_question(message: Message, bot: Bot) -> bool:
    """aiogram filter: a reply to one of the bot's secret questions."""
    return question_of(message, bot) is not None


def receive(deps: BotDeps, viewer: Viewer, telegram: TelegramClient, message: Message, bot: Bot) -> None:
    question = question_of(message, bot)
    assert question is not None, "routed here by answers_question"
    if (message.text or "").strip().split("@")[0] == "/cancel":
        cancel_wait(deps, viewer, message.chat.id)
        _say(telegram, message, CANCELLED)
        return
    deleted = telegram.delete_message(message.chat.id, message.message_id)
    keys = (
        question_key(
            message.chat.id, viewer.telegram_id, question.message_id, question.project, question.name
        ),
        waiting_key(message.chat.id, viewer.telegram_id),
    )
    if not all(held(deps.claims, key) for key in keys):
        _say(telegram, message, EXPIRED)
        return
    value = (message.text or "").strip()
    if not value:
        _say(telegram, message, NOT_TEXT)
        return
    outcome = _store(deps, viewer, question, value)
    for key in keys:
        deps.claims.release(key)
    if deleted:
        outcome += " I deleted your message with the value."
    else:
        outcome += " I could not delete your message with the value: please delete it yourself."
    _say(telegram, message, outcome)


def _store(deps: BotDeps, viewer: Viewer, question: Question, value: str) -> str:
    """Store the value through the API; the line to send. A 5xx / unreachable API raises (the update is
    redelivered and the claims still wait for it)."""
    project = _project_of(deps, viewer, question.project)
    if project is None:
        return f"I can't find a project {question.project} of yours any more, so I stored nothing."
    try:
        info = deps.api.set_secret(project.id, question.name, value)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        # the API's own message is not repeated: nothing it might quote from the request goes to the chat
        get_logger().warning(
            "secret refused by the API",
            extra={"project_id": project.id, "secret_name": question.name, "code": exc.code},
        )
        return (
            f"The API refused to store {question.name} for {project.name} ({exc.code}); nothing was stored."
        )
    get_logger().info(
        "secret stored from telegram",
        extra={"project_id": project.id, "secret_name": info.name, "telegram_user_id": viewer.telegram_id},
    )
    return f"Saved {info.name} for {project.name}."


# -- waiting -------------------------------------------------------------------------------------


def owes_value(message: Message, deps: BotDeps, viewer: Viewer) -> bool:
    """aiogram filter: the sender was asked for a secret value in this chat and has not given it yet."""
    return held(deps.claims, waiting_key(message.chat.id, viewer.telegram_id))


def hold_back(deps: BotDeps, viewer: Viewer, telegram: TelegramClient, message: Message) -> None:
    """Text while a value is owed: it may be the value, so it is deleted and goes nowhere."""
    deleted = telegram.delete_message(message.chat.id, message.message_id)
    get_logger().info("message held back while a secret is owed", extra={"deleted": deleted})
    _say(telegram, message, STILL_WAITING)


def cancel_wait(deps: BotDeps, viewer: Viewer, chat_id: int) -> bool:
    """Stop waiting for a value; False when nothing was awaited."""
    key = waiting_key(chat_id, viewer.telegram_id)
    if not held(deps.claims, key):
        return False
    deps.claims.release(key)
    return True
