"""Lambda entry point for `progress:events`: each record makes the task's Telegram messages current.

A record whose handling raises (Telegram down, 5xx, a 429 longer than we wait, another invocation
holding the task) fails alone (partial batch response) and is redelivered; nothing is dropped.
"""

from __future__ import annotations

import threading
from typing import Any

from functions.telegram_bot.settings import TelegramSettings
from functions.telegram_notifier.notifier import BotApiTelegram, Notifier
from shared.contracts import PROGRESS_EVENTS, ProgressEvent
from shared.queues.consume import process_queue_event
from shared.service_client import ServiceApiSettings


class NotifierSettings(TelegramSettings, ServiceApiSettings):
    """The notifier's configuration: Telegram plus how it reaches the API as the service."""


class NotifierRuntime:
    """One per process: the API client and the bot token; a Bot API connection per thread."""

    def __init__(self, settings: NotifierSettings, token: str, api: Any) -> None:
        self.settings, self._token, self.api = settings, token, api
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    def notifier(self) -> Notifier:
        found: Notifier | None = getattr(self._local, "notifier", None)
        if found is None:
            from functions.telegram_bot.botapi import BotApi

            bot = BotApi(self._token, self.settings.telegram_api_base, timeout=30.0)
            with self._lock:
                self._clients.append(bot)
            telegram = BotApiTelegram(bot, self.settings.telegram_send_attempts, self.settings.telegram_retry_base_s,
                                      self.settings.telegram_retry_max_s)  # fmt: skip
            found = self._local.notifier = Notifier(self.api, telegram)
        return found

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for bot in clients:
            bot.close()
        self.api.close()


def build_runtime(settings: NotifierSettings | None = None) -> NotifierRuntime:
    from shared.secrets import build_secrets
    from shared.service_client import build_service_client

    settings = settings or NotifierSettings()
    token = settings.resolve_bot_token(build_secrets(settings, settings))
    return NotifierRuntime(settings, token, build_service_client(settings))


_runtime: NotifierRuntime | None = None
_lock = threading.Lock()


def get_runtime() -> NotifierRuntime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime()
        return _runtime


def reset() -> None:
    """Close and forget the per-process runtime (tests; the embedded stack on start and stop)."""
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()


def lambda_handler(event: dict[str, Any], context: Any, notifier: Notifier | None = None) -> dict[str, Any]:
    def handle(message: ProgressEvent, _record: Any) -> None:
        (notifier or get_runtime().notifier()).handle(message)

    return process_queue_event(event, PROGRESS_EVENTS, handle, context)
