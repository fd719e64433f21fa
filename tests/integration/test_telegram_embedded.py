"""The bot on the embedded stack, all real but Telegram: long polling -> telegram:updates -> the bot
function's own `lambda_handler` (runtime built from settings) -> the stack's HTTP API -> fake Bot API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.local.stack import EmbeddedStack
from cli.local.telegram_polling import TelegramPoller
from functions.telegram_bot import handler as bot
from shared.api_client import ApiClient
from shared.contracts import PO_INBOX, TELEGRAM_UPDATES
from shared.queues.local import LocalQueue
from shared.queues.local_runner import QueuePoller
from shared.secrets.local import LocalSecrets
from tests.factories import drain
from tests.fakes.telegram_server import FakeTelegram, message_update

TOKEN = "31337:embedded-token_for-tests"
BOT_KEY_REF = "secret://local/telegram_api_key"
ALICE_TG = 4242


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmbeddedStack, FakeTelegram]]:
    home = Path(os.environ["ORCH_HOME"])
    saved = dict(os.environ)
    running = EmbeddedStack(home, port=0, tick_s=30, consumers=[])
    running.start()
    try:
        with FakeTelegram(TOKEN) as telegram:
            secrets = LocalSecrets(home / "secrets.json")
            secrets.put("secret://telegram/bot_token", TOKEN)
            with ApiClient(os.environ["ORCH_API_URL"], running.admin_key) as admin:
                # The bot lists and adds users, which the API allows admins only (see the report).
                user = admin.add_user("telegram-bot", is_admin=True)
                secrets.put(BOT_KEY_REF, admin.create_api_key(user.id, "telegram", ["service", "admin"]).key)
            for key, value in {
                "ORCH_TELEGRAM_BOT_TOKEN_REF": "secret://telegram/bot_token",
                "ORCH_TELEGRAM_API_BASE": telegram.url,
                "ORCH_TELEGRAM_ADMINS": "1,2",
                "ORCH_SERVICE_API_KEY_REF": BOT_KEY_REF,
            }.items():
                monkeypatch.setenv(key, value)
            bot.reset()
            yield running, telegram
            bot.reset()
    finally:
        running.stop()
        os.environ.clear()
        os.environ.update(saved)


def test_projects_from_the_embedded_stack_reach_telegram_by_long_polling(
    stack: tuple[EmbeddedStack, FakeTelegram],
) -> None:
    running, telegram = stack
    with ApiClient(os.environ["ORCH_API_URL"], running.admin_key) as admin:
        alice = admin.add_user("alice", telegram_id=ALICE_TG)
        key = admin.create_api_key(alice.id, scopes=["user"]).key
    with ApiClient(os.environ["ORCH_API_URL"], key) as as_alice:
        as_alice.create_project("blog", "my blog")
        as_alice.create_project("shop")
    queue = LocalQueue(running.home / "queue.db")
    poller = TelegramPoller(poll_timeout_s=1)
    consumer = QueuePoller(queue, TELEGRAM_UPDATES, bot.lambda_handler)
    poller.start()
    try:
        telegram.push_update(message_update(ALICE_TG, "/projects"))
        telegram.push_update(message_update(ALICE_TG, "build me a shop"))
        telegram.wait_for(lambda: poller.queued == 2)
        assert consumer.run_once() == (2, 0)
    finally:
        poller.stop()
    assert telegram.sent_texts() == ["Your projects (2):\n- blog: draft\n- shop: draft"]
    [po] = drain(queue, PO_INBOX)
    assert (po.text, po.user_id) == ("build me a shop", alice.id)
    assert [c.method for c in telegram.calls if c.method != "getUpdates"] == [
        "setMyCommands",  # the "/" menu, published when polling starts
        "sendMessage",
        "sendChatAction",
    ]
