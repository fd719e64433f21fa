"""Telegram updates between the webhook (ack path) and the bot consumer."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from shared.contracts.base import BaseMessage

TelegramId = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""Telegram's ids (users, chats, messages, updates) fit a signed 64-bit integer."""


class TelegramUpdateMessage(BaseMessage):
    """Added (`telegram:updates`): one Bot API Update, as Telegram sent it, acknowledged by the webhook
    (or fetched by long polling) and handled by the bot consumer. `request_id` is `tg:<update_id>`."""

    update_id: Annotated[TelegramId, Field(ge=0, description="Telegram's update_id; duplicates are dropped.")]
    update: Annotated[dict[str, Any], Field(description="The Update object, unchanged.")]


class ProductOwnerMessage(BaseMessage):
    """Added (`po:inbox`): a person's free text for their Product Owner agent, from the bot consumer.

    `request_id` is `tg:<update_id>`, so a redelivered update yields the same request and the PO
    worker can drop the duplicate."""

    telegram_user_id: Annotated[TelegramId, Field(description="Telegram id of the person who wrote.")]
    chat_id: Annotated[TelegramId, Field(description="Where the PO's answers go.")]
    message_id: Annotated[TelegramId, Field(description="The Telegram message this carries (for replies).")]
    text: Annotated[str, Field(description="What the person wrote, unchanged.")]
    user_id: Annotated[
        str | None, Field(description="The API user with this telegram_id; None for an admin without one.")
    ] = None
    language_code: Annotated[
        str | None, Field(description="The sender's Telegram client language (IETF tag), if known.")
    ] = None
