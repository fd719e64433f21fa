"""What the bot says and how its settings read the environment (no network, no aiogram)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from functions.telegram_bot.texts import format_projects, format_task
from shared.contracts.api import Project, Task, TaskEvent
from shared.telegram.settings import TelegramConfigError, TelegramSettings
from shared.telegram.texts import MAX_MESSAGE_CHARS, split_text


def test_short_text_is_one_message() -> None:
    assert split_text("hello") == ["hello"]


def test_long_text_is_cut_at_line_breaks_within_the_limit() -> None:
    lines = [f"line {i:05d} " + "x" * 80 for i in range(200)]
    text = "\n".join(lines)
    pieces = split_text(text)
    assert len(pieces) > 1 and all(len(p) <= MAX_MESSAGE_CHARS for p in pieces)
    assert "\n".join(pieces) == text, "cut only at line breaks: nothing lost, nothing reordered"


def test_text_without_breaks_is_cut_hard() -> None:
    pieces = split_text("y" * 10_000)
    assert [len(p) for p in pieces] == [4096, 4096, 1808]


def test_words_are_kept_whole_when_there_are_no_line_breaks() -> None:
    text = " ".join(["word"] * 3000)
    pieces = split_text(text, limit=100)
    assert all(len(p) <= 100 and not p.startswith(" ") for p in pieces)
    assert " ".join(pieces) == text


def test_empty_text_is_not_sent_empty() -> None:
    assert split_text("  \n ") == ["(empty)"]


def _project(name: str, status: str = "active") -> Project:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Project(
        id=name,
        name=name,
        description="",
        modules=[],
        agent=None,
        repo_url=None,
        status=status,
        owner_id="u",
        created_at=now,
        updated_at=now,
    )


def test_projects_are_listed_by_name_with_status_and_user_text_is_kept_verbatim() -> None:
    text = format_projects([_project("shop", "draft"), _project("<b>blog</b>")])
    assert text.splitlines() == ["Your projects (2):", "- <b>blog</b>: active", "- shop: draft"]
    assert "no projects" in format_projects([])


def test_a_task_shows_its_status_error_and_last_five_events() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    task = Task(
        id="t1",
        project_id="p1",
        user_id="u",
        type="engineering",
        status="FAILED",
        spec="s",
        attempt=2,
        result=None,
        error="tests failed",
        correlation_id="c",
        created_at=now,
        started_at=now,
        finished_at=now,
        heartbeat_at=None,
    )
    events = [
        TaskEvent(
            seq=i,
            task_id="t1",
            type="progress",
            message=f"step {i}",
            progress_pct=i * 10,
            current_step=None,
            error=None,
            error_type=None,
            timestamp=now,
        )
        for i in range(1, 8)
    ]
    text = format_task(task, "blog", events)
    assert "engineering of blog: FAILED (attempt 2)" in text and "Error: tests failed" in text
    assert "step 2 " not in text and "step 3 (30%)" in text and "step 7 (70%)" in text


def test_admins_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TELEGRAM_ADMINS", " 11, 22,,33 ")
    assert TelegramSettings().admin_ids == {11, 22, 33}
    monkeypatch.setenv("ORCH_TELEGRAM_ADMINS", "11,alice")
    with pytest.raises(ValidationError, match="comma-separated Telegram user ids"):
        TelegramSettings()
    monkeypatch.setenv("ORCH_TELEGRAM_ADMINS", "")
    assert TelegramSettings().admin_ids == frozenset()


def test_the_bot_token_is_required_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TelegramConfigError, match="ORCH_TELEGRAM_BOT_TOKEN_REF"):
        TelegramSettings().resolve_bot_token()
    monkeypatch.setenv("ORCH_TELEGRAM_BOT_TOKEN", "123:very-secret")
    settings = TelegramSettings()
    assert settings.resolve_bot_token() == "123:very-secret"
    assert "very-secret" not in repr(settings) and "very-secret" not in str(settings.model_dump())


def test_the_webhook_secret_must_be_what_telegram_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TelegramSettings().resolve_webhook_secret() is None
    monkeypatch.setenv("ORCH_TELEGRAM_WEBHOOK_SECRET", "ok_secret-1")
    assert TelegramSettings().resolve_webhook_secret() == "ok_secret-1"
    monkeypatch.setenv("ORCH_TELEGRAM_WEBHOOK_SECRET", "not ok!")
    with pytest.raises(ValidationError):
        TelegramSettings()


def test_the_command_menu_and_help_name_the_same_commands_secret_included() -> None:
    from functions.telegram_bot.texts import BOT_COMMANDS, HELP

    names = [name for name, _ in BOT_COMMANDS]
    assert "secret" in names and len(set(names)) == len(names)
    assert all(f"/{name}" in HELP for name in names)
    assert all(len(description) <= 256 for _, description in BOT_COMMANDS)  # Telegram's limit
