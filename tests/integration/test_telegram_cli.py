"""`orchestrator telegram ...` against the fake Bot API: the secret is sent, never printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from functions.telegram_bot.texts import BOT_COMMANDS
from shared.secrets.local import LocalSecrets
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "777:cli-token_for-tests"
SECRET = "cli-webhook-secret_0123"
URL = "https://orchestrator.example/telegram/webhook"


@pytest.fixture
def telegram(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegram]:
    with FakeTelegram(TOKEN) as fake:
        monkeypatch.setenv("ORCH_TELEGRAM_API_BASE", fake.url)
        monkeypatch.setenv("ORCH_TELEGRAM_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("ORCH_TELEGRAM_WEBHOOK_SECRET", SECRET)
        yield fake


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["orchestrator", "telegram", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    assert TOKEN.split(":")[1] not in out + err and SECRET not in out + err, "a secret was printed"
    return int(exit_.value.code or 0), out, err


def test_set_webhook_registers_the_url_with_the_secret(
    telegram: FakeTelegram, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, monkeypatch, "set-webhook", "--url", URL, "--json")
    assert code == 0
    assert json.loads(out) == {
        "url": URL,
        "webhook_set": True,
        "secret_token": "set",
        "allowed_updates": ["message", "callback_query"],
        "drop_pending_updates": False,
        "max_connections": 40,
        "commands": len(BOT_COMMANDS),
    }
    [menu] = telegram.calls_to("setMyCommands")  # the "/" menu, /secret in it
    assert {c["command"] for c in menu.params["commands"]} >= {"secret", "cancel", "projects"}
    [call] = telegram.calls_to("setWebhook")
    assert call.params["url"] == URL and call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == ["message", "callback_query"]
    code, out, _ = run(capsys, monkeypatch, "set-webhook", "--url", URL, "--drop-pending")
    assert code == 0 and out.startswith(f"webhook set to {URL}")


def test_info_shows_telegrams_view(
    telegram: FakeTelegram, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, monkeypatch, "info", "--json")
    assert code == 0 and json.loads(out) == {
        "url": "",
        "has_custom_certificate": False,
        "pending_update_count": 0,
    }
    assert run(capsys, monkeypatch, "set-webhook", "--url", URL)[0] == 0
    code, out, _ = run(capsys, monkeypatch, "info", "--json")
    info = json.loads(out)
    assert (
        info["url"] == URL
        and info["allowed_updates"] == ["message", "callback_query"]
        and "secret_token" not in info
    )
    code, out, _ = run(capsys, monkeypatch, "info")
    assert code == 0 and f"@{telegram.username}" in out and URL in out and "pending_update_count" in out
    code, out, _ = run(capsys, monkeypatch, "delete-webhook", "--json")
    assert code == 0 and json.loads(out) == {"webhook_set": False, "drop_pending_updates": False}
    assert "(none: long polling)" in run(capsys, monkeypatch, "info")[1]


def test_the_token_and_secret_come_from_the_secrets_store(
    telegram: FakeTelegram,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = LocalSecrets(Path(os.environ["ORCH_HOME"]) / "secrets.json")
    secrets.put("secret://telegram/bot_token", TOKEN)
    monkeypatch.delenv("ORCH_TELEGRAM_BOT_TOKEN")
    monkeypatch.delenv("ORCH_TELEGRAM_WEBHOOK_SECRET")
    monkeypatch.setenv("ORCH_TELEGRAM_BOT_TOKEN_REF", "secret://telegram/bot_token")
    monkeypatch.setenv("ORCH_TELEGRAM_WEBHOOK_SECRET_REF", "secret://telegram/webhook_secret")
    code, _, err = run(capsys, monkeypatch, "set-webhook", "--url", URL)
    assert code == 3 and "no secret stored at secret://telegram/webhook_secret" in err
    code, out, _ = run(capsys, monkeypatch, "set-webhook", "--url", URL, "--new-secret")
    assert code == 0
    generated = secrets.get("secret://telegram/webhook_secret")
    assert len(generated) >= 32 and generated not in out
    assert telegram.calls_to("setWebhook")[-1].params["secret_token"] == generated


@pytest.mark.parametrize(
    ("env", "args", "code", "message"),
    [
        ({}, ("set-webhook", "--url", "http://plain.example/hook"), 2, "only to https:// URLs"),
        ({"ORCH_TELEGRAM_WEBHOOK_SECRET": None}, ("set-webhook", "--url", URL), 2, "no webhook secret"),
        ({"ORCH_TELEGRAM_BOT_TOKEN": None}, ("info",), 2, "no Telegram bot token"),
        (
            {"ORCH_TELEGRAM_BOT_TOKEN": "777:revoked"},
            ("info",),
            1,
            "Unauthorized (error 401) (check the bot token)",
        ),
        ({"ORCH_TELEGRAM_API_BASE": "http://127.0.0.1:9"}, ("info",), 5, "cannot reach the Telegram Bot API"),
        (
            {"ORCH_TELEGRAM_WEBHOOK_SECRET": "bad secret!"},
            ("set-webhook", "--url", URL),
            2,
            "invalid Telegram settings",
        ),
    ],
)
def test_failures_are_one_line_with_an_exit_code(
    telegram: FakeTelegram,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str | None],
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key)
        else:
            monkeypatch.setenv(key, value)
    got, out, err = run(capsys, monkeypatch, *args)
    assert (got, out) == (code, "") and err.startswith("error: ") and message in err, err
    assert err.count("\n") == 1 and "bad secret!" not in err
    assert telegram.calls_to("setWebhook") == []


def test_the_console_script_has_the_telegram_group(telegram: FakeTelegram) -> None:
    env = {k: v for k, v in os.environ.items()}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "telegram", "info", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["url"] == ""
