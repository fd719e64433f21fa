"""The one Telegram client against the fake Bot API: retries, give-ups, edits, threads, interrupt."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.telegram.client import BotApiClosed, BotApiError, MessageGone, TelegramClient
from shared.telegram.settings import TelegramSettings
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "4711:client-token_for-tests"


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN) as fake:
        yield fake


def _client(telegram: FakeTelegram, sleeps: list[float], **options: float) -> TelegramClient:
    return TelegramClient(TOKEN, telegram.url, sleep=sleeps.append, **options)  # type: ignore[arg-type]


def test_a_long_retry_after_is_not_waited_for(telegram: FakeTelegram) -> None:
    sleeps: list[float] = []
    telegram.fail("sendMessage", status=429, retry_after=60)
    with pytest.raises(BotApiError) as limited:
        _client(telegram, sleeps, max_delay_s=20).send_message(5, "hi")
    assert limited.value.retry_after == 60 and sleeps == [], "the queue's redelivery is the better wait"
    assert len(telegram.calls_to("sendMessage")) == 1


def test_a_client_error_is_not_retried_and_attempts_one_means_one(telegram: FakeTelegram) -> None:
    sleeps: list[float] = []
    telegram.fail("sendMessage", status=400, description="Bad Request: chat not found")
    with pytest.raises(BotApiError, match="chat not found"):
        _client(telegram, sleeps).send_message(5, "hi")
    telegram.fail("sendMessage", status=502)
    with pytest.raises(BotApiError):
        _client(telegram, sleeps, attempts=1).send_message(5, "hi")
    assert sleeps == [] and len(telegram.calls_to("sendMessage")) == 2


def test_edits_tell_an_unchanged_message_from_a_gone_one(telegram: FakeTelegram) -> None:
    client = _client(telegram, [])
    message_id = client.send_message(5, "first", link_preview=False)
    assert telegram.calls_to("sendMessage")[0].params["link_preview_options"] == {"is_disabled": True}
    telegram.fail("editMessageText", status=400, description="Bad Request: message is not modified")
    client.edit_text(5, message_id, "first")  # already says this: success
    telegram.fail("editMessageText", status=400, description="Bad Request: message to edit not found")
    with pytest.raises(MessageGone, match="not found"):
        client.edit_text(5, message_id, "second")


def test_the_settings_choose_the_server_and_the_retries(telegram: FakeTelegram, tmp_path: Path) -> None:
    settings = TelegramSettings(
        home=tmp_path, telegram_api_base=telegram.url, telegram_send_attempts=2, telegram_retry_base_s=0
    )
    sleeps: list[float] = []
    client = TelegramClient.from_settings(settings, TOKEN, sleep=sleeps.append)
    telegram.fail("sendChatAction", status=500, times=2)
    with pytest.raises(BotApiError):
        client.typing(5)
    assert len(telegram.calls_to("sendChatAction")) == 2 and len(sleeps) == 1


def test_threads_share_one_client_and_close_refuses_further_calls(telegram: FakeTelegram) -> None:
    client = _client(telegram, [])
    sent: list[int] = []
    threads = [
        threading.Thread(target=lambda i=i: sent.extend(client.send_text(i, f"hello {i}"))) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(sent) == 4 and sorted(c.params["chat_id"] for c in telegram.calls_to("sendMessage")) == [
        0,
        1,
        2,
        3,
    ]
    client.close()
    with pytest.raises(BotApiClosed):
        client.send_message(5, "after close")
    fresh = _client(telegram, [])
    fresh.interrupt()  # before this thread ever connected: still refused
    with pytest.raises(BotApiClosed):
        fresh.call("getMe")


def test_an_invalid_server_url_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="http"):
        TelegramClient(TOKEN, "ftp://example.test")


def test_delete_tells_a_deleted_message_from_a_transient_failure_and_the_menu_is_sent(
    telegram: FakeTelegram,
) -> None:
    from functions.telegram_bot.texts import BOT_COMMANDS

    sleeps: list[float] = []
    client = _client(telegram, sleeps)
    telegram.fail("deleteMessage", status=502)
    assert client.delete_message(5, 77) is True and sleeps, "a 5xx is retried"
    assert client.delete_message(5, 77) is True, "already gone (Telegram's 400 'not found') is gone"
    telegram.fail("deleteMessage", status=400, description="Bad Request: message can't be deleted")
    assert client.delete_message(5, 78) is False
    assert telegram.deleted == {(5, 77)}
    client.send_message(5, "which value?", reply_markup={"force_reply": True})
    assert telegram.calls_to("sendMessage")[-1].params["reply_markup"] == {"force_reply": True}
    client.set_commands(BOT_COMMANDS)
    [menu] = telegram.calls_to("setMyCommands")
    assert menu.status == 200 and [c["command"] for c in menu.params["commands"]] == [
        c for c, _ in BOT_COMMANDS
    ]
