"""The progress notifier on the embedded stack: the stack's own consumer thread runs the notifier's
`lambda_handler` (runtime built from settings), against the stack's HTTP API and a fake Bot API."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.local.stack import EmbeddedStack
from functions.telegram_notifier import handler as notifier
from shared.api_client import ApiClient
from shared.secrets.local import LocalSecrets
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "31337:notifier-token_for-tests"
ALICE_TG = 4343


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EmbeddedStack, FakeTelegram]]:
    home = Path(os.environ["ORCH_HOME"])
    saved = dict(os.environ)
    with FakeTelegram(TOKEN) as telegram:
        LocalSecrets(home / "secrets.json").put("secret://telegram/bot_token", TOKEN)
        monkeypatch.setenv("ORCH_TELEGRAM_BOT_TOKEN_REF", "secret://telegram/bot_token")
        monkeypatch.setenv("ORCH_TELEGRAM_API_BASE", telegram.url)
        running = EmbeddedStack(home, port=0, tick_s=30, consumers=["telegram_notifier"])
        running.start()
        try:
            yield running, telegram
        finally:
            running.stop()
            notifier.reset()
            os.environ.clear()
            os.environ.update(saved)


def test_a_telegram_users_task_is_told_in_one_status_message_and_one_final_message(
    stack: tuple[EmbeddedStack, FakeTelegram],
) -> None:
    running, telegram = stack
    url = os.environ["ORCH_API_URL"]
    with ApiClient(url, running.admin_key) as admin:
        alice = admin.add_user("alice", telegram_id=ALICE_TG)
        alice_key = admin.create_api_key(alice.id, scopes=["user"]).key
        worker = admin.add_user("test-worker", is_admin=True)
        service_key = admin.create_api_key(worker.id, "worker", ["service"]).key
    with ApiClient(url, alice_key) as as_alice, ApiClient(url, service_key) as service:
        as_alice.create_project("blog")
        task_id = as_alice.start_engineering("blog", "build a blog").id
        service.claim_task(task_id, worker="test")
        telegram.wait_for(lambda: telegram.sent_texts(), timeout=10)
        service.append_events(
            task_id,
            [{"type": "progress", "message": "make test", "progress_pct": 50, "current_step": "tester"}],
        )
        telegram.wait_for(lambda: telegram.calls_to("editMessageText"), timeout=10)
        service.complete_task(task_id, {"pr_url": "https://github.com/o/blog/pull/2"})
        telegram.wait_for(lambda: len(telegram.sent_texts()) == 2, timeout=10)
    assert telegram.sent_texts() == [
        "blog · engineering · started (attempt 1)",
        "✅ blog: the change is done.\nPull request: https://github.com/o/blog/pull/2",
    ]
    edits = [c.params["text"] for c in telegram.calls_to("editMessageText")]
    assert edits == ["blog · engineering · 50% [tester] make test", "blog · engineering · completed"]
    assert all(c.params["chat_id"] == ALICE_TG for c in telegram.calls)
