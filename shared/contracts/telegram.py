"""Telegram updates between the webhook (ack path) and the bot consumer."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from shared.contracts.base import BaseMessage


class TelegramUpdateMessage(BaseMessage):
    """Added (`telegram:updates`): one Bot API Update, as Telegram sent it, acknowledged by the webhook
    (or fetched by long polling) and handled by the bot consumer. `request_id` is `tg:<update_id>`."""

    update_id: Annotated[int, Field(description="Telegram's update_id; duplicates are dropped.")]
    update: Annotated[dict[str, Any], Field(description="The Update object, unchanged.")]
