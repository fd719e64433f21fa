"""What the progress notifier writes: the status line and each kind of final message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from functions.telegram_notifier import render
from shared.contracts.api import Task, TaskEvent

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def task(**overrides: Any) -> Task:
    fields: dict[str, Any] = {
        "id": "t1",
        "project_id": "p1",
        "user_id": "u1",
        "type": "engineering",
        "status": "RUNNING",
        "spec": "build a blog",
        "attempt": 1,
        "result": None,
        "error": None,
        "correlation_id": "c1",
        "created_at": NOW,
        "started_at": NOW,
        "finished_at": None,
        "heartbeat_at": NOW,
    }
    return Task.model_validate({**fields, **overrides})


def event(seq: int, message: str = "", pct: int | None = None, step: str | None = None) -> TaskEvent:
    return TaskEvent(
        seq=seq,
        task_id="t1",
        type="progress",
        message=message,
        progress_pct=pct,
        current_step=step,
        error=None,
        error_type=None,
        timestamp=NOW,
    )


def test_status_line_uses_the_latest_percentage_step_and_message() -> None:
    events = [
        event(1, "cloning", 10, "developer"),
        event(2, "running make test", 50, "tester"),
        event(3, "still"),
    ]
    assert (
        render.status_text(task(), "blog", events[:2])
        == "blog · engineering · 50% [tester] running make test"
    )
    assert render.status_text(task(), "blog", events) == "blog · engineering · 50% [tester] still"


def test_status_line_for_queued_waiting_and_ended_tasks() -> None:
    assert render.status_text(task(status="QUEUED"), "blog", []) == "blog · engineering · queued"
    assert render.status_text(task(), "blog", []) == "blog · engineering · running"
    waiting = render.status_text(
        task(status="WAITING_INPUT", type="deploy"), "blog", [event(1, "set DB_URL")]
    )
    assert waiting == "blog · deploy · waiting: set DB_URL"
    assert (
        render.status_text(task(status="FAILED"), "blog", [event(1, "x", 40)])
        == "blog · engineering · failed"
    )


def test_status_line_stays_one_short_line() -> None:
    line = render.status_text(task(), "blog", [event(1, "word\n" * 2000, 5, "s" * 500)])
    assert "\n" not in line and len(line) < 500


def test_final_engineering_names_the_commit_branch_and_pull_request() -> None:
    done = task(
        status="COMPLETED",
        result={
            "commit_sha": "abcdef1234567890",
            "branch": "feat/blog",
            "pr_url": "https://github.com/o/blog/pull/7",
        },
    )
    assert render.final_pieces(done, "blog") == [
        "✅ blog: the change is done.\ncommit abcdef123456 on branch feat/blog\n"
        "Pull request: https://github.com/o/blog/pull/7"
    ]
    assert render.final_text(task(status="COMPLETED", result={}), "blog") == "✅ blog: the change is done."


def test_final_deploy_gives_the_live_url() -> None:
    done = task(type="deploy", status="COMPLETED", result={"deployed_url": "http://203.0.113.5:8001"})
    assert render.final_text(done, "blog") == "✅ blog is live: http://203.0.113.5:8001"
    assert (
        render.final_text(task(type="undeploy", status="COMPLETED"), "blog")
        == "✅ blog is no longer deployed."
    )


def test_final_failure_is_the_error_in_plain_words_without_the_traceback() -> None:
    error = (
        "tests failed after 3 attempts\nTraceback (most recent call last):\n"
        '  File "/app/graph.py", line 10, in run\n    raise RuntimeError(x)\n'
        "RuntimeError: make test exited with 2"
    )
    text = render.final_text(task(status="FAILED", error=error), "blog")
    assert (
        text
        == "❌ blog · engineering failed: tests failed after 3 attempts\nRuntimeError: make test exited with 2"
    )
    assert render.final_text(task(status="FAILED", error="  "), "blog") == (
        "❌ blog · engineering failed: no reason was given"
    )
    assert render.final_text(task(status="CANCELLED"), "blog") == "🚫 blog · engineering was cancelled."
    assert render.final_text(task(), "blog") is None


def test_markup_reaches_the_user_verbatim() -> None:
    # plain text (no parse_mode): nothing to escape, nothing can be injected
    failed = task(status="FAILED", error="<b>boom</b> & *stars* _under_ <a href='x'>")
    assert (
        render.final_text(failed, "a<b>")
        == "❌ a<b> · engineering failed: <b>boom</b> & *stars* _under_ <a href='x'>"
    )


def test_a_long_error_is_trimmed_and_split_into_telegram_sized_pieces() -> None:
    error = "\n".join(
        f"FAILED tests/test_{i}.py::test_thing - AssertionError: expected 1, got 2" for i in range(200)
    )
    pieces = render.final_pieces(task(status="FAILED", error=error), "blog")
    assert len(pieces) == 2 and all(len(p) <= 4096 for p in pieces)
    assert pieces[1].endswith("…") and sum(map(len, pieces)) < render.MAX_ERROR_CHARS + 100
