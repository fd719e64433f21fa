"""The bot's behaviour: an aiogram 3 Dispatcher over the API client, the queue and the claim store.

Who may talk to it: admins (ORCH_TELEGRAM_ADMINS, or API users flagged admin) and API users
whose `telegram_id` is the sender's. Anyone else gets one polite refusal per cool-down (a claim
in the idempotency store) and nothing else happens. Commands answer from the API (the service
key sees every row, so each answer is filtered to the sender's own projects and tasks); any other
text goes to the sender's Product Owner as a `ProductOwnerMessage` on `po:inbox`, except a secret's
value (`/secret PROJECT NAME`, see `secret_command`), which goes to the API and nowhere else. A task
waiting for its person is answered here too (see `answers`): the [Approve] / [Reject] buttons of its
status message (callback queries, from known senders only) and a reply to that message with guidance.

aiogram only dispatches updates here; every answer goes through the shared `TelegramClient`
(handed to the handlers as `telegram`), which retries 429 (waiting `retry_after`), 5xx and
network errors; when the attempts run out the error propagates, the record fails and the update
is redelivered, so nothing is dropped silently. The client is synchronous, like the API client:
the runtime handles one update at a time, so nothing else waits on the loop meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import CallbackQuery, Message, TelegramObject, Update

from functions.telegram_bot import answers, secret_command, texts
from shared.api_client import ApiClient, ConflictError, NotFoundError
from shared.contracts.api import Task, TaskEvent, User
from shared.contracts.registry import PO_INBOX
from shared.contracts.telegram import ProductOwnerMessage, TelegramUpdateMessage
from shared.idempotency import IdempotencyPort
from shared.observability import get_logger
from shared.queues.port import QueuePort
from shared.telegram.client import BotApiError, BotApiUnreachable, TelegramClient
from shared.telegram.settings import TelegramSettings

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
EVENTS_PAGE = 500


@dataclass
class BotDeps:
    """What the handlers use: built from settings in handler.py; tests hand in real ports on temp files."""

    api: ApiClient
    queue: QueuePort
    claims: IdempotencyPort
    settings: TelegramSettings


@dataclass(frozen=True)
class Viewer:
    """The sender, as the bot knows them."""

    telegram_id: int
    user: User | None
    is_admin: bool

    def owns(self, task: Task) -> bool:
        return self.is_admin or (self.user is not None and task.user_id == self.user.id)


# -- who is writing ----------------------------------------------------------------------------


def refusal_key(telegram_id: int) -> str:
    return f"tg:refused:{telegram_id}"


def find_user(api: ApiClient, telegram_id: int) -> User | None:
    return next((u for u in api.list_users() if u.telegram_id == telegram_id), None)


class AccessMiddleware(BaseMiddleware):
    """Resolves the sender to a `Viewer`; strangers get one refusal per cool-down and stop here."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if (
            not isinstance(event, (Message, CallbackQuery))
            or event.from_user is None
            or event.from_user.is_bot
        ):
            return None
        deps: BotDeps = data["deps"]
        telegram: TelegramClient = data["telegram"]
        sender = event.from_user.id
        chat_id = _chat_of(event)

        # a paused database: say so once, while the client waits; past its wait the update is redelivered
        def waking(_text: str) -> None:
            telegram.send_text(chat_id, texts.WAKING)

        deps.api.on_waking = waking
        user = find_user(deps.api, sender)
        is_admin = sender in deps.settings.admin_ids or bool(user and user.is_admin)
        if user is None and not is_admin:
            if isinstance(event, CallbackQuery):  # a button on a forwarded message: answer the press only
                telegram.answer_callback(event.id, texts.REFUSAL.format(telegram_id=sender), alert=True)
                get_logger().info("stranger's button press refused", extra={"telegram_user_id": sender})
            else:
                await refuse_once(event, deps, telegram)
            return None
        data["viewer"] = Viewer(sender, user, is_admin)
        return await handler(event, data)


def _chat_of(event: Message | CallbackQuery) -> int:
    """Where to talk back: the message's chat; for a button press, the chat of the message it was on."""
    if isinstance(event, Message):
        return event.chat.id
    message = event.message
    return message.chat.id if message is not None else event.from_user.id


async def refuse_once(message: Message, deps: BotDeps, telegram: TelegramClient) -> None:
    assert message.from_user is not None
    key = refusal_key(message.from_user.id)
    if not deps.claims.claim(key, deps.settings.telegram_refusal_cooldown_s):
        get_logger().info(
            "stranger ignored (refused recently)", extra={"telegram_user_id": message.from_user.id}
        )
        return
    try:
        _reply(telegram, message, texts.REFUSAL.format(telegram_id=message.from_user.id))
    except BaseException:
        deps.claims.release(key)  # the refusal was not delivered: the redelivery may send it
        raise
    get_logger().info("stranger refused", extra={"telegram_user_id": message.from_user.id})


# -- commands ----------------------------------------------------------------------------------


def _reply(telegram: TelegramClient, message: Message, text: str) -> None:
    telegram.send_text(message.chat.id, text)


def _owned_task(deps: BotDeps, viewer: Viewer, task_id: str) -> Task | None:
    if not _TASK_ID.fullmatch(task_id):
        return None
    try:
        task = deps.api.get_task(task_id)
    except NotFoundError:
        return None
    return task if viewer.owns(task) else None


def _own_projects(deps: BotDeps, viewer: Viewer) -> list[Any]:
    if viewer.user is None:
        return []
    user_id = viewer.user.id
    return [p for p in deps.api.list_projects() if p.owner_id == user_id]


async def start(message: Message, viewer: Viewer, telegram: TelegramClient) -> None:
    name = viewer.user.name if viewer.user else (message.from_user.first_name if message.from_user else None)
    _reply(telegram, message, texts.greeting(name, viewer.is_admin))


async def help_(message: Message, viewer: Viewer, telegram: TelegramClient) -> None:
    _reply(telegram, message, texts.help_text(viewer.is_admin))


async def projects(message: Message, deps: BotDeps, viewer: Viewer, telegram: TelegramClient) -> None:
    _reply(telegram, message, texts.format_projects(_own_projects(deps, viewer)))


def _latest_tasks_text(deps: BotDeps, projects: dict[str, str]) -> str:
    latest: list[Task] = []
    for project_id in projects:
        latest.extend(deps.api.list_tasks(project=project_id, limit=texts.LATEST_TASKS).items)
    latest.sort(key=lambda t: (t.created_at, t.id), reverse=True)
    return texts.format_task_list(latest[: texts.LATEST_TASKS], projects)


def _all_events(deps: BotDeps, task_id: str) -> list[TaskEvent]:
    events: list[TaskEvent] = []
    while True:  # the API pages from the start; the answer shows the last few
        page = deps.api.task_events(task_id, after=events[-1].seq if events else 0, limit=EVENTS_PAGE)
        events.extend(page)
        if len(page) < EVENTS_PAGE:
            return events


def _task_status_text(deps: BotDeps, viewer: Viewer, projects: dict[str, str], task_id: str) -> str:
    task = _owned_task(deps, viewer, task_id)
    if task is None:
        return f"I can't find a task {task_id} of yours. Your tasks: /status"
    events = _all_events(deps, task.id)
    name = projects.get(task.project_id)
    if name is None and viewer.is_admin:
        try:
            name = deps.api.get_project(task.project_id).name
        except NotFoundError:
            name = None
    return texts.format_task(task, name, events)


async def status(
    message: Message, command: CommandObject, deps: BotDeps, viewer: Viewer, telegram: TelegramClient
) -> None:
    task_id = (command.args or "").strip()
    projects = {p.id: p.name for p in _own_projects(deps, viewer)}
    if task_id:
        _reply(telegram, message, _task_status_text(deps, viewer, projects, task_id))
    else:
        _reply(telegram, message, _latest_tasks_text(deps, projects))


def _cancel_text(deps: BotDeps, viewer: Viewer, task_id: str, chat_id: int) -> str:
    if not task_id:
        if secret_command.cancel_wait(deps, viewer, chat_id):
            return secret_command.CANCELLED
        return "Which task? Use /cancel <task>; /status lists your tasks."
    task = _owned_task(deps, viewer, task_id)
    if task is None:
        return f"I can't find a task {task_id} of yours. Your tasks: /status"
    try:
        cancelled = deps.api.cancel_task(task.id)
    except ConflictError as exc:
        return f"Task {task.id} can't be cancelled: {exc.message}"
    return f"Task {cancelled.id} is {cancelled.status.value}."


async def cancel(
    message: Message, command: CommandObject, deps: BotDeps, viewer: Viewer, telegram: TelegramClient
) -> None:
    _reply(telegram, message, _cancel_text(deps, viewer, (command.args or "").strip(), message.chat.id))


def _adduser_text(deps: BotDeps, viewer: Viewer, args: str) -> str:
    if not viewer.is_admin:
        return "Only an administrator can add users."
    telegram_id, _, name = args.partition(" ")
    if not telegram_id.isdigit() or int(telegram_id) <= 0:
        return "Usage: /adduser <telegram id> [name], e.g. /adduser 123456789 Alice"
    name = name.strip()[:200] or f"telegram-{telegram_id}"
    try:
        user = deps.api.add_user(name, telegram_id=int(telegram_id))
    except ConflictError:
        return f"A user with Telegram id {telegram_id} already exists."
    get_logger().info("user added from telegram", extra={"user_id": user.id, "by": viewer.telegram_id})
    return f"Added {user.name} (Telegram id {telegram_id}). They can write to me now."


async def adduser(
    message: Message, command: CommandObject, deps: BotDeps, viewer: Viewer, telegram: TelegramClient
) -> None:
    _reply(telegram, message, _adduser_text(deps, viewer, (command.args or "").strip()))


async def secret(
    message: Message, command: CommandObject, deps: BotDeps, viewer: Viewer, telegram: TelegramClient
) -> None:
    secret_command.ask(deps, viewer, telegram, message, command.args or "")


async def secret_value(
    message: Message, deps: BotDeps, viewer: Viewer, telegram: TelegramClient, bot: Bot
) -> None:
    secret_command.receive(deps, viewer, telegram, message, bot)


async def held_back(message: Message, deps: BotDeps, viewer: Viewer, telegram: TelegramClient) -> None:
    secret_command.hold_back(deps, viewer, telegram, message)


async def usage(message: Message, deps: BotDeps, viewer: Viewer, telegram: TelegramClient) -> None:
    _reply(telegram, message, answers.usage_text(deps, viewer))


async def gate_button(query: CallbackQuery, deps: BotDeps, viewer: Viewer, telegram: TelegramClient) -> None:
    """[Approve] / [Reject] on a status message: answer the gate for the sender, then the press."""
    parsed = answers.parse_gate_callback(query.data)
    if parsed is None:
        telegram.answer_callback(query.id, texts.STALE_BUTTON)
        return
    outcome = answers.answer_gate(deps, viewer, *parsed)
    telegram.answer_callback(query.id, outcome.text, alert=not outcome.settled)
    if outcome.settled and query.message is not None:
        # the notifier's next edit drops them too; nothing is left to press meanwhile
        telegram.drop_keyboard(query.message.chat.id, query.message.message_id)


async def other_button(query: CallbackQuery, telegram: TelegramClient) -> None:
    telegram.answer_callback(query.id, texts.STALE_BUTTON)


async def guidance(
    message: Message, deps: BotDeps, viewer: Viewer, telegram: TelegramClient, review_task: Task
) -> None:
    """A reply to the status message of a task waiting for review: its text is the guidance."""
    _reply(telegram, message, answers.take_guidance(deps, review_task, message.text or "", viewer))


async def unknown_command(message: Message, telegram: TelegramClient) -> None:
    _reply(telegram, message, "I don't know that command. /help lists what I can do.")


async def to_product_owner(
    message: Message,
    deps: BotDeps,
    viewer: Viewer,
    event_update: Update,
    telegram: TelegramClient,
    correlation_id: str | None = None,
) -> None:
    po = ProductOwnerMessage(
        request_id=f"tg:{event_update.update_id}",
        telegram_user_id=viewer.telegram_id,
        chat_id=message.chat.id,
        message_id=message.message_id,
        text=message.text or "",
        user_id=viewer.user.id if viewer.user else None,
        language_code=message.from_user.language_code if message.from_user else None,
        **({"correlation_id": correlation_id} if correlation_id else {}),
    )
    deps.queue.publish(PO_INBOX, po)
    try:
        telegram.typing(message.chat.id)
    except (BotApiError, BotApiUnreachable) as exc:  # cosmetic: the message is already with the PO
        get_logger().warning("typing indicator not shown", extra={"error": type(exc).__name__})


async def not_text(message: Message, telegram: TelegramClient) -> None:
    _reply(telegram, message, "I can only read text messages for now.")


def build_router() -> Router:
    """The handlers, in the order aiogram tries them: a secret's value (a reply to the bot's question),
    commands, anything while a secret is owed, guidance (a reply to a status message waiting for review),
    unknown commands, text, the rest; and the buttons (gate answers)."""
    router = Router(name="orchestrator")
    router.message(secret_command.answers_question)(secret_value)
    router.message(CommandStart())(start)
    router.message(Command("help"))(help_)
    router.message(Command("projects"))(projects)
    router.message(Command("status"))(status)
    router.message(Command("cancel"))(cancel)
    router.message(Command("adduser"))(adduser)
    router.message(Command("secret"))(secret)
    router.message(Command("usage"))(usage)
    router.message(secret_command.owes_value)(held_back)
    router.message(F.text, answers.replies_to_review)(guidance)
    router.message(F.text.startswith("/"))(unknown_command)
    router.message(F.text)(to_product_owner)
    router.message()(not_text)
    router.callback_query(F.data.startswith("gate:"))(gate_button)
    router.callback_query()(other_button)
    return router


def build_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()
    dispatcher.message.outer_middleware(AccessMiddleware())
    dispatcher.callback_query.outer_middleware(AccessMiddleware())
    dispatcher.include_router(build_router())
    return dispatcher


class PoisonUpdate(ValueError):
    """An update that can never be handled: it goes to the DLQ after its receives."""


async def process_update(
    dispatcher: Dispatcher, bot: Bot, message: TelegramUpdateMessage, deps: BotDeps, telegram: TelegramClient
) -> None:
    """Handle one queued update; raises (so the record fails) when it cannot be handled now."""
    if message.update.get("update_id") != message.update_id:
        raise PoisonUpdate(f"update_id {message.update_id} does not match the update it carries")
    try:
        update = Update.model_validate(message.update, context={"bot": bot})
    except ValueError as exc:
        raise PoisonUpdate(f"not a Bot API Update: {str(exc).splitlines()[0]}") from None
    await dispatcher.feed_update(
        bot, update, deps=deps, telegram=telegram, correlation_id=message.correlation_id
    )
