"""The one Telegram client every sender uses: the bot consumer's replies, the notifier, the Product
Owner's chat, the CLI and the long poller.

A synchronous facade over the stdlib transport (`shared.telegram.botapi`): plain-text messages
(no parse mode, so nothing a user, a project or an agent writes can break one), split at 4096
characters, and every call retried in one place (`shared.retry.http_transient`) on 429 (after
its `retry_after`), 5xx and network errors. A `retry_after` longer than `max_delay_s` is not
waited for: the error propagates, the queue record fails and is redelivered, nothing is dropped.

Why not aiogram's Bot: `import aiogram` costs seconds of cold start (see the README's decision
log), which the notifier and the Product Owner must not pay to send a message; the bot consumer
keeps aiogram for dispatching updates only. One transport (one connection) per thread, so one
client may be shared by a consumer's threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from shared.retry import Sleep, http_transient, is_transient_status
from shared.telegram.botapi import BotApi, BotApiClosed, BotApiError, BotApiUnreachable, check_base_url
from shared.telegram.settings import DEFAULT_API_BASE, TelegramSettings
from shared.telegram.texts import split_text

__all__ = [
    "BotApiClosed",
    "BotApiError",
    "BotApiUnreachable",
    "MessageGone",
    "TelegramClient",
    "inline_keyboard",
]


class MessageGone(Exception):
    """The message cannot be edited any more (deleted by the user, too old)."""


def is_transient(exc: BaseException) -> bool:
    """Worth another try: no answer, or a 429 / 5xx answer."""
    if isinstance(exc, BotApiUnreachable):
        return True
    return isinstance(exc, BotApiError) and is_transient_status(exc.error_code)


def _retry_after(exc: BaseException) -> float | None:
    return float(exc.retry_after) if isinstance(exc, BotApiError) and exc.retry_after is not None else None


MAX_TOAST_CHARS = 200
"""answerCallbackQuery's text limit."""


def _short_toast(text: str) -> str:
    return text if len(text) <= MAX_TOAST_CHARS else text[: MAX_TOAST_CHARS - 1].rstrip() + "…"


def inline_keyboard(*rows: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A Bot API InlineKeyboardMarkup from rows of (button text, callback_data) pairs; callback_data is
    at most 64 bytes (Telegram refuses longer)."""
    for row in rows:
        for _text, data in row:
            if len(data.encode("utf-8")) > 64:
                raise ValueError(f"callback_data longer than 64 bytes: {data!r}")
    return {"inline_keyboard": [[{"text": t, "callback_data": d} for t, d in row] for row in rows]}


class TelegramClient:
    """Bot API calls with retries, from any thread. `attempts=1` turns retries off (the poller has
    its own loop, which `interrupt()` can stop at once)."""

    def __init__(
        self,
        token: str,
        base_url: str = DEFAULT_API_BASE,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        base_delay_s: float = 0.5,
        max_delay_s: float = 20.0,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._token, self.base_url, self.timeout = token, check_base_url(base_url), timeout
        self.attempts, self.base_delay_s, self.max_delay_s = attempts, base_delay_s, max_delay_s
        self.sleep = sleep
        self._local = threading.local()
        self._transports: list[BotApi] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: TelegramSettings, token: str, **overrides: Any) -> TelegramClient:
        """A client on the configured API server with the configured retries."""
        options: dict[str, Any] = {
            "attempts": settings.telegram_send_attempts,
            "base_delay_s": settings.telegram_retry_base_s,
            "max_delay_s": settings.telegram_retry_max_s,
        }
        return cls(token, settings.telegram_api_base, **(options | overrides))

    def _transport(self) -> BotApi:
        transport: BotApi | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = BotApi(self._token, self.base_url, timeout=self.timeout)
            with self._lock:
                if self._closed:
                    raise BotApiClosed("closed")
                self._transports.append(transport)
            self._local.transport = transport
        return transport

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        """One Bot API method; its `result`. Raises `BotApiError` (refused, or retries exhausted),
        `BotApiUnreachable`, or `BotApiClosed` after `interrupt()`."""
        policy = http_transient(
            is_transient,
            attempts=self.attempts,
            base_delay_s=self.base_delay_s,
            max_delay_s=self.max_delay_s,
            retry_after=_retry_after,
            sleep=self.sleep,
            what="telegram call",
            context={"method": method},
        )
        return policy(self._transport().call, method, params, timeout)

    def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        link_preview: bool = True,
        reply_markup: dict[str, Any] | None = None,
    ) -> int:
        """One plain-text message (at most 4096 characters); its message_id. `reply_markup` is the
        Bot API object as is (e.g. `{"force_reply": True}`: the person's app opens a reply to it)."""
        params: dict[str, Any] = {"chat_id": chat_id, "text": text, "reply_markup": reply_markup}
        if not link_preview:
            params["link_preview_options"] = {"is_disabled": True}
        result = self.call("sendMessage", params)
        return int(result["message_id"])

    def send_text(self, chat_id: int, text: str) -> list[int]:
        """`text` as plain-text messages of at most 4096 characters; their message_ids."""
        return [self.send_message(chat_id, piece) for piece in split_text(text)]

    def edit_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        link_preview: bool = True,
        reply_markup: dict[str, Any] | None = None,
    ) -> None:
        """Replace a message's text; `MessageGone` when it can no longer be edited. An inline keyboard
        the message had goes unless `reply_markup` gives it (again): Telegram keeps none by itself."""
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "message_id": message_id,
            "text": text,
            "reply_markup": reply_markup,
        }
        if not link_preview:
            params["link_preview_options"] = {"is_disabled": True}
        try:
            self.call("editMessageText", params)
        except BotApiError as exc:
            if exc.error_code != 400:
                raise
            if "message is not modified" in exc.description.lower():
                return  # already says this: success
            raise MessageGone(exc.description) from None

    def delete_message(self, chat_id: int, message_id: int) -> bool:
        """Delete a message (a bot may delete what a person sent it in a private chat within 48 hours).
        True when it is gone (deleted now, or before: a redelivered update deletes again); False when
        Telegram refuses for good (too old, no right); 429 / 5xx are retried as usual."""
        try:
            self.call("deleteMessage", {"chat_id": chat_id, "message_id": message_id})
        except BotApiError as exc:
            if exc.error_code != 400:
                raise
            return "not found" in exc.description.lower()
        return True

    def drop_keyboard(self, chat_id: int, message_id: int) -> None:
        """Take a message's inline keyboard away (its buttons were answered); a message already without
        one, or gone, is fine."""
        params = {"chat_id": chat_id, "message_id": message_id, "reply_markup": {"inline_keyboard": []}}
        try:
            self.call("editMessageReplyMarkup", params)
        except BotApiError as exc:
            if exc.error_code != 400:
                raise

    def answer_callback(self, callback_query_id: str, text: str, *, alert: bool = False) -> None:
        """Answer a button press (answerCallbackQuery): the person's app stops its spinner and shows
        `text` (at most 200 characters; `alert` makes it a dialog instead of a toast). A press answered
        too late (Telegram allows about 15 s, a redelivered update) is refused with 400: nothing to do."""
        params = {"callback_query_id": callback_query_id, "text": _short_toast(text), "show_alert": alert}
        try:
            self.call("answerCallbackQuery", params)
        except BotApiError as exc:
            if exc.error_code != 400:
                raise

    def set_commands(self, commands: Sequence[tuple[str, str]]) -> None:
        """The command menu Telegram shows (setMyCommands): (command without "/", description) pairs."""
        self.call("setMyCommands", {"commands": [{"command": c, "description": d} for c, d in commands]})

    def typing(self, chat_id: int) -> None:
        """The "typing..." indicator (Telegram shows it for about five seconds)."""
        self.call("sendChatAction", {"chat_id": chat_id, "action": "typing"})

    def interrupt(self) -> None:
        """From any thread: end every call in flight now and refuse further ones."""
        with self._lock:
            self._closed = True
            transports = list(self._transports)
        for transport in transports:
            transport.interrupt()

    def close(self) -> None:
        """Interrupt, then close every connection; the client refuses further calls."""
        with self._lock:
            self._closed = True
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()
