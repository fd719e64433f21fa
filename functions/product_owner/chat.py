"""The PO's chat adapter: the shared Telegram client (plain text, split at 4096, retried on 429 / 5xx)."""

from __future__ import annotations

from typing import Any

from shared.telegram.client import TelegramClient


class TelegramChat:
    """Sends as the bot. Plain text: nothing the agent writes (Markdown, HTML, `<`...) can break a
    message or be rejected by Telegram's parser. Safe to share between threads."""

    def __init__(self, token: str, base_url: str, **client_options: Any) -> None:
        self.client = TelegramClient(token, base_url, **client_options)

    def send_text(self, chat_id: int, text: str) -> None:
        self.client.send_text(chat_id, text)

    def typing(self, chat_id: int) -> None:
        self.client.typing(chat_id)
