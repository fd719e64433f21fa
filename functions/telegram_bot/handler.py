"""Lambda entry point for `telegram:updates`: each record is one update for the aiogram Dispatcher.

The Lambda handler is synchronous and aiogram is not, so one `BotRuntime` per process owns an
event loop, the Bot the updates are bound to (it never sends: the shared `TelegramClient` does)
and the Dispatcher; records run on that loop one at a time. A record whose handling raises fails
alone (partial batch response) and is redelivered; a poison update ends in the DLQ.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties

from functions.telegram_bot import restore_hooks
from functions.telegram_bot.bot import BotDeps, build_dispatcher, process_update
from shared.contracts.registry import TELEGRAM_UPDATES
from shared.contracts.telegram import TelegramUpdateMessage
from shared.handler_shell import PerContainer, lambda_entry
from shared.queues.consume import process_queue_event
from shared.retry import Sleep
from shared.service_client import ServiceApiSettings
from shared.telegram.client import TelegramClient
from shared.telegram.settings import TelegramSettings


class TelegramBotSettings(TelegramSettings, ServiceApiSettings):
    """The consumer's configuration: Telegram plus how it reaches the API as the service."""


class BotRuntime:
    """One per process: an event loop, the Bot, the Dispatcher and the Telegram client. Thread-safe
    (serialised). `sleep` is the client's wait between retries (tests record it)."""

    def __init__(self, deps: BotDeps, token: str, sleep: Sleep = time.sleep, owns_api: bool = False) -> None:
        self.deps = deps
        self.loop = asyncio.new_event_loop()
        self.bot = Bot(token, default=DefaultBotProperties(parse_mode=None))
        self.telegram = TelegramClient.from_settings(deps.settings, token, sleep=sleep)
        self.dispatcher = build_dispatcher()
        self._owns_api = owns_api
        self._lock = threading.Lock()

    def process(self, message: TelegramUpdateMessage) -> None:
        with self._lock:
            if self.loop.is_closed():
                raise RuntimeError("the bot runtime is closed")
            self.loop.run_until_complete(
                process_update(self.dispatcher, self.bot, message, self.deps, self.telegram)
            )

    def close(self) -> None:
        with self._lock:
            if self.loop.is_closed():
                return
            try:
                self.telegram.close()
                self.loop.run_until_complete(self.bot.session.close())
            finally:
                self.loop.close()
                if self._owns_api:
                    self.deps.api.close()


def build_runtime(settings: TelegramBotSettings | None = None) -> BotRuntime:
    """The runtime from settings: the token from the secrets port, the API as the service."""
    from shared.idempotency import build_idempotency
    from shared.queues.factory import build_queue
    from shared.secrets import build_secrets
    from shared.service_client import build_service_client

    settings = settings or TelegramBotSettings()
    token = settings.resolve_bot_token(build_secrets(settings, settings))
    deps = BotDeps(
        api=build_service_client(settings),
        queue=build_queue(settings, settings),
        claims=build_idempotency(settings),
        settings=settings,
    )
    return BotRuntime(deps, token, owns_api=True)


container = PerContainer(build_runtime, close=BotRuntime.close)
reset = container.reset
"""Close and forget the per-process runtime (tests; the embedded stack on start and stop)."""


def get_runtime() -> BotRuntime:
    return container.get()


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, runtime: BotRuntime | None = None) -> dict[str, Any]:
    active = runtime or container.get()
    return process_queue_event(
        event, TELEGRAM_UPDATES, lambda message, _record: active.process(message), context
    )


restore_hooks.register()  # SnapStart in AWS: warm before the snapshot, start clean after each restore
