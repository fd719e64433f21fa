"""Long polling: getUpdates with an offset against the fake Bot API, into the webhook's own intake."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cli.local.telegram_polling import TelegramPoller
from functions.telegram_webhook.handler import WebhookPorts
from functions.telegram_webhook.handler import lambda_handler as webhook_handler
from shared.apigw import http_api_event
from shared.contracts import TELEGRAM_UPDATES
from shared.idempotency import SqliteIdempotency
from shared.queues.local import LocalQueue
from shared.queues.port import QueueError
from shared.telegram.botapi import BotApi, BotApiClosed, BotApiError, BotApiUnreachable
from shared.telegram.client import TelegramClient
from shared.telegram.settings import TelegramSettings
from tests.factories import drain
from tests.fakes.telegram_server import FakeTelegram, message_update

TOKEN = "42:poll-token_for-tests"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN) as fake:
        yield fake


@pytest.fixture
def ports(tmp_path: Path) -> Iterator[tuple[LocalQueue, SqliteIdempotency, TelegramSettings]]:
    queue = LocalQueue(tmp_path / "queue.db", visibility_timeout=0)
    claims = SqliteIdempotency(tmp_path / "claims.db")
    yield queue, claims, TelegramSettings(home=tmp_path)
    queue.close()
    claims.close()


def _client(telegram: FakeTelegram) -> TelegramClient:
    return TelegramClient(TOKEN, telegram.url, attempts=1)  # as the poller makes it: it backs off itself


def _poller(
    telegram: FakeTelegram, ports: tuple[LocalQueue, SqliteIdempotency, TelegramSettings], **kwargs: Any
) -> TelegramPoller:
    queue, claims, settings = ports
    return TelegramPoller(settings, queue=queue, claims=claims, api=_client(telegram), **kwargs)


def test_updates_are_queued_in_order_and_confirmed_with_the_offset(
    telegram: FakeTelegram, ports: Any
) -> None:
    updates = [message_update(1, f"m{i}", update_id=500 + i) for i in range(3)]
    for u in updates:
        telegram.push_update(u)
    poller = _poller(telegram, ports)
    assert poller.poll_once(timeout_s=0) == 3
    assert poller.offset == 503
    queued = drain(ports[0], TELEGRAM_UPDATES)
    assert [(m.update_id, m.request_id, m.update) for m in queued] == [
        (u["update_id"], f"tg:{u['update_id']}", u) for u in updates
    ]
    assert poller.poll_once(timeout_s=0) == 0
    first, second = telegram.calls_to("getUpdates")
    assert "offset" not in first.params and second.params["offset"] == 503
    assert (
        first.params["allowed_updates"] == ["message", "callback_query"]
        and first.content_type == "application/json"
    )
    assert telegram._m_getWebhookInfo({})[1]["result"]["pending_update_count"] == 0, "confirmed"


def test_after_a_restart_unconfirmed_updates_are_not_queued_twice(telegram: FakeTelegram, ports: Any) -> None:
    telegram.push_update(message_update(1, "hi", update_id=77))
    assert _poller(telegram, ports).poll_once(timeout_s=0) == 1
    restarted = _poller(telegram, ports)  # no offset: Telegram sends the unconfirmed update again
    assert restarted.poll_once(timeout_s=0) == 0
    assert (restarted.duplicates, restarted.offset) == (1, 78), "a duplicate still moves the offset on"
    assert len(drain(ports[0], TELEGRAM_UPDATES)) == 1


def test_polling_and_the_webhook_share_one_dedupe(telegram: FakeTelegram, ports: Any) -> None:
    queue, claims, _ = ports
    update = message_update(1, "hi", update_id=88)
    event = http_api_event(
        "POST", "/telegram/webhook", headers={"x-telegram-bot-api-secret-token": "s"}, body=json.dumps(update)
    )
    assert webhook_handler(event, None, WebhookPorts("s", queue, claims))["statusCode"] == 200
    telegram.push_update(update)
    assert _poller(telegram, ports).poll_once(timeout_s=0) == 0
    assert len(drain(queue, TELEGRAM_UPDATES)) == 1


def test_the_thread_long_polls_and_stop_interrupts_a_poll_in_flight(
    telegram: FakeTelegram, ports: Any
) -> None:
    poller = _poller(telegram, ports, poll_timeout_s=25)
    poller.start()
    try:
        telegram.wait_for(lambda: telegram.polls_waiting == 1)
        telegram.push_update(message_update(1, "while polling", update_id=901))
        telegram.wait_for(lambda: poller.queued == 1)
        assert [m.update_id for m in drain(ports[0], TELEGRAM_UPDATES)] == [901]
        telegram.wait_for(lambda: telegram.polls_waiting == 1)  # the next long poll is held open
        [menu] = telegram.calls_to("setMyCommands")  # published once, when polling starts
        assert "secret" in {c["command"] for c in menu.params["commands"]}
    finally:
        started = time.monotonic()
        poller.stop()
        stopped_in = time.monotonic() - started
    assert not poller.running and stopped_in < 1.5, f"stop() took {stopped_in:.1f} s"
    assert not [t for t in threading.enumerate() if t.name == "telegram-poller"]


def test_a_set_webhook_blocks_polling_until_it_is_deleted(telegram: FakeTelegram, ports: Any) -> None:
    telegram.webhook = {"url": "https://example.test/hook"}
    telegram.push_update(message_update(1, "hi", update_id=61))
    poller = _poller(telegram, ports, poll_timeout_s=0, max_backoff_s=0.05)
    with pytest.raises(BotApiError) as info:
        poller.poll_once()
    assert info.value.error_code == 409
    poller.start()
    try:
        telegram.wait_for(lambda: len(telegram.calls_to("getUpdates")) >= 3)
        assert telegram.calls_to("deleteWebhook") == [], "the poller never deletes a webhook by itself"
        assert drain(ports[0], TELEGRAM_UPDATES) == []
        telegram.webhook = {}
        telegram.wait_for(lambda: poller.queued == 1)
    finally:
        poller.stop()


class FlakyQueue:
    backend = "flaky"

    def __init__(self, inner: LocalQueue, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def publish(self, queue: str, message: BaseModel) -> str:
        if self.failures:
            self.failures -= 1
            raise QueueError("disk full")
        return self.inner.publish(queue, message)


def test_an_update_that_could_not_be_queued_is_fetched_again(telegram: FakeTelegram, ports: Any) -> None:
    queue, claims, settings = ports
    for i in (1, 2):
        telegram.push_update(message_update(1, f"m{i}", update_id=70 + i))
    poller = TelegramPoller(
        settings,
        queue=FlakyQueue(queue, failures=1),  # type: ignore[arg-type]
        claims=claims,
        api=_client(telegram),
        poll_timeout_s=0,
        max_backoff_s=0.05,
    )
    with pytest.raises(QueueError):
        poller.poll_once()
    assert poller.offset is None, "nothing confirmed"
    assert poller.poll_once() == 2
    assert [m.update_id for m in drain(queue, TELEGRAM_UPDATES)] == [71, 72]


def test_the_bot_api_client_reports_refusals_and_unreachability_without_the_token(
    telegram: FakeTelegram,
) -> None:
    with pytest.raises(BotApiError) as refused:
        BotApi("1:wrong", telegram.url).call("getMe")
    assert refused.value.error_code == 401 and "wrong" not in str(refused.value)
    telegram.fail("getMe", status=429, retry_after=7)
    with pytest.raises(BotApiError) as limited:
        BotApi(TOKEN, telegram.url).call("getMe")
    assert limited.value.retry_after == 7
    with pytest.raises(BotApiUnreachable) as down:
        BotApi(TOKEN, "http://127.0.0.1:9", timeout=2).call("getMe")
    assert TOKEN not in str(down.value) and "127.0.0.1:9" in str(down.value)
    api = BotApi(TOKEN, telegram.url)
    assert api.call("getMe")["username"] == telegram.username
    api.close()
    with pytest.raises(BotApiClosed):
        api.call("getMe")


def test_the_poller_needs_a_token(ports: Any) -> None:
    from shared.telegram.settings import TelegramConfigError

    queue, claims, settings = ports
    with pytest.raises(TelegramConfigError, match="ORCH_TELEGRAM_BOT_TOKEN_REF"):
        TelegramPoller(settings, queue=queue, claims=claims)
