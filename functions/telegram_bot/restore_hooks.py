"""The bot consumer's SnapStart hooks (`shared.snapstart`).

What SnapStart saves here is aiogram's import (seconds: `aiogram.types` alone is over a second on a laptop
core), done at module import before the snapshot. Before the snapshot the hook also imports what
`build_runtime` imports lazily, builds a Dispatcher and validates one text-message Update, which runs
aiogram's routers and pydantic models through their first use. It builds no runtime: that reads the bot
token (a credential) and opens an event loop and an HTTP session, none of which may be shared by copies of
a snapshot. After a restore the per-process runtime is closed and forgotten, should one exist.
"""

from __future__ import annotations

import importlib

from shared import snapstart

LAZY_IMPORTS = ("shared.idempotency", "shared.queues.factory", "shared.secrets", "shared.service_client")
"""What `functions.telegram_bot.handler.build_runtime` imports on first use."""

WARM_UPDATE = {
    "update_id": 1,
    "message": {
        "message_id": 1,
        "date": 0,
        "chat": {"id": 1, "type": "private"},
        "from": {"id": 1, "is_bot": False, "first_name": "snapstart"},
        "text": "/start",
    },
}


def warm() -> None:
    from aiogram.types import Update

    from functions.telegram_bot.bot import build_dispatcher

    for module in LAZY_IMPORTS:
        importlib.import_module(module)
    build_dispatcher()
    Update.model_validate(WARM_UPDATE)


def start_clean() -> None:
    from functions.telegram_bot.handler import reset

    reset()


def register() -> bool:
    """Register the hooks; hand them to the Lambda runtime when it offers SnapStart (see `shared.snapstart`)."""
    snapstart.on_snapshot(warm)
    snapstart.on_restore(start_clean)
    return snapstart.install()
