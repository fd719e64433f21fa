"""The bot's behaviour: an aiogram 3 Dispatcher over the API client, the queue and the claim store.

Who may talk to it: admins (ORCH_TELEGRAM_ADMINS, or API users flagged admin) and API users
whose `telegram_id` is the sender's. Anyone else gets one polite refusal per cool-down (a claim
in the idempotency store) and nothing else happens. Commands answer from the API (the service
key sees every row, so each answer is filtered to the sender's own projects and tasks); any other
text goes to the sender's Product Owner as a `ProductOwnerMessage` on `po:inbox`.

Every Bot API call goes through `SendRetry`: 429 (waiting `retry_after`), 5xx and network errors
are retried with backoff; when the attempts run out the error propagates, the record fails and
the update is redelivered, so nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ChatAction
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramEntityTooLarge,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Message, TelegramObject, Update

from functions.telegram_bot import texts
from functions.telegram_bot.settings import TelegramSettings
from shared.api_client import ApiClient, ConflictError, NotFoundError
from shared.contracts.api import Task, TaskEvent, User
from shared.contracts.registry import PO_INBOX
from shared.contracts.telegram import ProductOwnerMessage, TelegramUpdateMessage
from shared.idempotency import IdempotencyPort
from shared.observability import get_logger
from shared.queues.port import QueuePort

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


# -- sending -----------------------------------------------------------------------------------


class SendRetry(BaseRequestMiddleware):
    """Retries a Bot API call on 429 (after `retry_after`), 5xx and network errors."""

    def __init__(self, attempts: int = 4, base_delay_s: float = 0.5, max_delay_s: float = 20.0,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:  # fmt: skip
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                delay: float = exc.retry_after
                error: TelegramAPIError = exc
            except TelegramEntityTooLarge:
                raise
            except (TelegramServerError, TelegramNetworkError) as exc:
                delay, error = self.base_delay_s * 2 ** (attempt - 1), exc
            if attempt == self.attempts or delay > self.max_delay_s:
                raise error
            get_logger().warning(
                "telegram call failed; retrying",
                extra={"method": method.__api_method__, "attempt": attempt, "delay_s": delay,
                       "error": type(error).__name__},
            )  # fmt: skip
            await self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover


def make_bot(
    token: str, settings: TelegramSettings, sleep: Callable[[float], Awaitable[Any]] | None = None
) -> Bot:
    """A Bot on the configured API server, plain-text messages, every call through `SendRetry`."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    session.middleware(
        SendRetry(
            settings.telegram_send_attempts,
            settings.telegram_retry_base_s,
            settings.telegram_retry_max_s,
            sleep or asyncio.sleep,
        )
    )
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=None))


async def send_text(bot: Bot, chat_id: int, text: str) -> None:
    """Send `text`, split into messages of at most 4096 characters."""
    for piece in texts.split_text(text):
        await bot.send_message(chat_id=chat_id, text=piece)


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
        if not isinstance(event, Message) or event.from_user is None or event.from_user.is_bot:
            return None
        deps: BotDeps = data["deps"]
        sender = event.from_user.id
        user = find_user(deps.api, sender)
        is_admin = sender in deps.settings.admin_ids or bool(user and user.is_admin)
        if user is None and not is_admin:
            await refuse_once(event, deps)
            return None
        data["viewer"] = Viewer(sender, user, is_admin)
        return await handler(event, data)


async def refuse_once(message: Message, deps: BotDeps) -> None:
    assert message.from_user is not None
    key = refusal_key(message.from_user.id)
    if not deps.claims.claim(key, deps.settings.telegram_refusal_cooldown_s):
        get_logger().info(
            "stranger ignored (refused recently)", extra={"telegram_user_id": message.from_user.id}
        )
        return
    try:
        await _reply(message, texts.REFUSAL.format(telegram_id=message.from_user.id))
    except BaseException:
        deps.claims.release(key)  # the refusal was not delivered: the redelivery may send it
        raise
    get_logger().info("stranger refused", extra={"telegram_user_id": message.from_user.id})


# -- commands ----------------------------------------------------------------------------------


def _bot(message: Message) -> Bot:
    if message.bot is None:  # only a Message built by hand has no bot; the Dispatcher always mounts it
        raise RuntimeError("the message is not bound to a Bot")
    return message.bot


def _reply(message: Message, text: str) -> Awaitable[None]:
    return send_text(_bot(message), message.chat.id, text)


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


def build_router() -> Router:
    router = Router(name="orchestrator")

    @router.message(CommandStart())
    async def start(message: Message, viewer: Viewer) -> None:
        name = (
            viewer.user.name if viewer.user else (message.from_user.first_name if message.from_user else None)
        )
        await _reply(message, texts.greeting(name, viewer.is_admin))

    @router.message(Command("help"))
    async def help_(message: Message, viewer: Viewer) -> None:
        await _reply(message, texts.help_text(viewer.is_admin))

    @router.message(Command("projects"))
    async def projects(message: Message, deps: BotDeps, viewer: Viewer) -> None:
        await _reply(message, texts.format_projects(_own_projects(deps, viewer)))

    @router.message(Command("status"))
    async def status(message: Message, command: CommandObject, deps: BotDeps, viewer: Viewer) -> None:
        task_id = (command.args or "").strip()
        projects = {p.id: p.name for p in _own_projects(deps, viewer)}
        if not task_id:
            latest: list[Task] = []
            for project_id in projects:
                latest.extend(deps.api.list_tasks(project=project_id, limit=texts.LATEST_TASKS).items)
            latest.sort(key=lambda t: (t.created_at, t.id), reverse=True)
            await _reply(message, texts.format_task_list(latest[: texts.LATEST_TASKS], projects))
            return
        task = _owned_task(deps, viewer, task_id)
        if task is None:
            await _reply(message, f"I can't find a task {task_id} of yours. Your tasks: /status")
            return
        events: list[TaskEvent] = []
        while True:  # the API pages from the start; the answer shows the last few
            page = deps.api.task_events(task.id, after=events[-1].seq if events else 0, limit=EVENTS_PAGE)
            events.extend(page)
            if len(page) < EVENTS_PAGE:
                break
        name = projects.get(task.project_id)
        if name is None and viewer.is_admin:
            try:
                name = deps.api.get_project(task.project_id).name
            except NotFoundError:
                name = None
        await _reply(message, texts.format_task(task, name, events))

    @router.message(Command("cancel"))
    async def cancel(message: Message, command: CommandObject, deps: BotDeps, viewer: Viewer) -> None:
        task_id = (command.args or "").strip()
        if not task_id:
            await _reply(message, "Which task? Use /cancel <task>; /status lists your tasks.")
            return
        task = _owned_task(deps, viewer, task_id)
        if task is None:
            await _reply(message, f"I can't find a task {task_id} of yours. Your tasks: /status")
            return
        try:
            cancelled = deps.api.cancel_task(task.id)
        except ConflictError as exc:
            await _reply(message, f"Task {task.id} can't be cancelled: {exc.message}")
            return
        await _reply(message, f"Task {cancelled.id} is {cancelled.status.value}.")

    @router.message(Command("adduser"))
    async def adduser(message: Message, command: CommandObject, deps: BotDeps, viewer: Viewer) -> None:
        if not viewer.is_admin:
            await _reply(message, "Only an administrator can add users.")
            return
        telegram_id, _, name = (command.args or "").strip().partition(" ")
        if not telegram_id.isdigit() or int(telegram_id) <= 0:
            await _reply(message, "Usage: /adduser <telegram id> [name], e.g. /adduser 123456789 Alice")
            return
        name = name.strip()[:200] or f"telegram-{telegram_id}"
        try:
            user = deps.api.add_user(name, telegram_id=int(telegram_id))
        except ConflictError:
            await _reply(message, f"A user with Telegram id {telegram_id} already exists.")
            return
        get_logger().info("user added from telegram", extra={"user_id": user.id, "by": viewer.telegram_id})
        await _reply(message, f"Added {user.name} (Telegram id {telegram_id}). They can write to me now.")

    @router.message(F.text.startswith("/"))
    async def unknown_command(message: Message) -> None:
        await _reply(message, "I don't know that command. /help lists what I can do.")

    @router.message(F.text)
    async def to_product_owner(
        message: Message,
        deps: BotDeps,
        viewer: Viewer,
        event_update: Update,
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
            await _bot(message).send_chat_action(chat_id=message.chat.id, action=ChatAction.TYPING)
        except TelegramAPIError as exc:  # cosmetic: the message is already with the PO
            get_logger().warning("typing indicator not shown", extra={"error": type(exc).__name__})

    @router.message()
    async def not_text(message: Message) -> None:
        await _reply(message, "I can only read text messages for now.")

    return router


def build_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()
    dispatcher.message.outer_middleware(AccessMiddleware())
    dispatcher.include_router(build_router())
    return dispatcher


class PoisonUpdate(ValueError):
    """An update that can never be handled: it goes to the DLQ after its receives."""


async def process_update(
    dispatcher: Dispatcher, bot: Bot, message: TelegramUpdateMessage, deps: BotDeps
) -> None:
    """Handle one queued update; raises (so the record fails) when it cannot be handled now."""
    if message.update.get("update_id") != message.update_id:
        raise PoisonUpdate(f"update_id {message.update_id} does not match the update it carries")
    try:
        update = Update.model_validate(message.update, context={"bot": bot})
    except ValueError as exc:
        raise PoisonUpdate(f"not a Bot API Update: {str(exc).splitlines()[0]}") from None
    await dispatcher.feed_update(bot, update, deps=deps, correlation_id=message.correlation_id)
