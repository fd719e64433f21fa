"""The PO's chat adapter against the fake Bot API: plain text (no parse mode), split at 4096."""

from __future__ import annotations

from functions.product_owner.chat import TelegramChat
from tests.fakes.telegram_server import FakeTelegram


def test_the_chat_sends_plain_text_split_at_4096() -> None:
    token = "4242:unit-test-token_for-the-po-chat"
    with FakeTelegram(token) as telegram:
        chat = TelegramChat(token, telegram.url)
        chat.send_text(5, "<b>x</b> *y* _z_ [a](b) & " + "word " * 1000)
        chat.typing(5)
        sends = telegram.calls_to("sendMessage")
        assert len(sends) == 2 and all(len(c.params["text"]) <= 4096 for c in sends)
        assert sends[0].params["text"].startswith("<b>x</b> *y* _z_ [a](b) & word")
        assert all("parse_mode" not in c.params for c in sends)
        assert [c.params["action"] for c in telegram.calls_to("sendChatAction")] == ["typing"]
