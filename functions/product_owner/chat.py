"""The PO's chat adapter: the stdlib Bot API client, plain text (no parse mode), split at 4096."""

from __future__ import annotations

import threading

from functions.telegram_bot.botapi import BotApi
from functions.telegram_bot.texts import split_text


class TelegramChat:
    """Sends as the bot. Plain text: nothing the agent writes (Markdown, HTML, `<`...) can break a
    message or be rejected by Telegram's parser. One BotApi per thread (it owns one connection)."""

    def __init__(self, token: str, base_url: str) -> None:
        self._token = token
        self._base_url = base_url
        self._local = threading.local()

    def _api(self) -> BotApi:
        api: BotApi | None = getattr(self._local, "api", None)
        if api is None:
            api = BotApi(self._token, self._base_url)
            self._local.api = api
        return api

    def send_text(self, chat_id: int, text: str) -> None:
        for piece in split_text(text):
            self._api().call("sendMessage", {"chat_id": chat_id, "text": piece})

    def typing(self, chat_id: int) -> None:
        self._api().call("sendChatAction", {"chat_id": chat_id, "action": "typing"})
