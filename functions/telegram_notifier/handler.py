"""Lambda entry point for `progress:events`: each record makes the task's Telegram messages current,
or pushes an incident to its owner (once).

A record whose handling raises (Telegram down, 5xx, a 429 longer than we wait, another invocation
holding the task) fails alone (partial batch response) and is redelivered; nothing is dropped.
"""

from __future__ import annotations

from typing import Any

from functions.telegram_notifier.notifier import Notifier
from shared.contracts import PROGRESS_EVENTS, ProgressEvent
from shared.contracts.notices import IncidentNotice
from shared.handler_shell import PerContainer, lambda_entry
from shared.queues.consume import process_queue_event
from shared.service_client import ServiceApiSettings
from shared.telegram.client import TelegramClient
from shared.telegram.settings import TelegramSettings


class NotifierSettings(TelegramSettings, ServiceApiSettings):
    """The notifier's configuration: Telegram plus how it reaches the API as the service."""


class NotifierRuntime:
    """One per process: the API client and the Telegram client (a Bot API connection per thread)."""

    def __init__(self, settings: NotifierSettings, token: str, api: Any) -> None:
        self.settings, self.api = settings, api
        self.telegram = TelegramClient.from_settings(settings, token)
        self._notifier = Notifier(api, self.telegram)

    def notifier(self) -> Notifier:
        return self._notifier

    def close(self) -> None:
        self.telegram.close()
        self.api.close()


def build_runtime(settings: NotifierSettings | None = None) -> NotifierRuntime:
    from shared.secrets import build_secrets
    from shared.service_client import build_service_client

    settings = settings or NotifierSettings()
    token = settings.resolve_bot_token(build_secrets(settings, settings))
    return NotifierRuntime(settings, token, build_service_client(settings))


container = PerContainer(build_runtime, close=NotifierRuntime.close)
reset = container.reset
"""Close and forget the per-process runtime (tests; the embedded stack on start and stop)."""


def get_runtime() -> NotifierRuntime:
    return container.get()


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, notifier: Notifier | None = None) -> dict[str, Any]:
    def handle(message: ProgressEvent | IncidentNotice, _record: Any) -> None:
        # built at the first record: a runtime that cannot be built fails records, not the invocation
        (notifier or container.get().notifier()).handle(message)

    return process_queue_event(event, PROGRESS_EVENTS, handle, context)
