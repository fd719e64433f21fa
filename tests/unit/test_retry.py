"""The retry vocabulary (shared/retry.py): each policy on a fake clock, so nothing really waits."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest

from shared.retry import (
    http_transient,
    is_disconnect,
    is_transient_status,
    once_more,
    once_more_on_disconnect,
    poll_until,
    sqlite_busy,
    until_stopped,
    while_contended,
)


class HttpFailure(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.retry_after = status, retry_after


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, HttpFailure) and is_transient_status(exc.status)


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, HttpFailure) else None


def failing(*errors: BaseException, then: Any = "ok") -> tuple[Callable[[], Any], list[int]]:
    """A call that raises `errors` in turn, then returns `then`; and the list of its calls."""
    calls: list[int] = []

    def call() -> Any:
        calls.append(len(calls) + 1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return then

    return call, calls


def test_status_and_disconnect_classification() -> None:
    assert [is_transient_status(s) for s in (200, 400, 404, 429, 500, 503)] == [False] * 3 + [True] * 3
    assert is_disconnect(ConnectionResetError()) and is_disconnect(BrokenPipeError())
    assert not is_disconnect(TimeoutError()) and not is_disconnect(ValueError())


def test_http_transient_backs_off_exponentially_with_bounded_jitter() -> None:
    sleeps: list[float] = []
    call, calls = failing(HttpFailure(502), HttpFailure(503), HttpFailure(500))
    policy = http_transient(_transient, attempts=4, base_delay_s=0.5, sleep=sleeps.append)
    assert policy(call) == "ok"
    assert calls == [1, 2, 3, 4]
    assert [int(s / 0.5) for s in sleeps] == [1, 2, 4], "0.5, 1, 2 plus less than 0.25 of jitter"
    assert all(0 <= s - b <= 0.25 for s, b in zip(sleeps, (0.5, 1.0, 2.0), strict=True))


def test_http_transient_without_jitter_is_exact_and_capped() -> None:
    sleeps: list[float] = []
    call, _ = failing(*[HttpFailure(500)] * 5)
    policy = http_transient(
        _transient, attempts=6, base_delay_s=1, max_delay_s=4, jitter_s=0, sleep=sleeps.append
    )
    assert policy(call) == "ok"
    assert sleeps == [1, 2, 4, 4, 4]


def test_http_transient_honours_retry_after_and_gives_up_on_a_longer_one() -> None:
    sleeps: list[float] = []
    call, _ = failing(HttpFailure(429, retry_after=3))
    policy = http_transient(_transient, retry_after=_retry_after, max_delay_s=20, sleep=sleeps.append)
    assert policy(call) == "ok" and sleeps == [3]

    call, calls = failing(HttpFailure(429, retry_after=60))
    with pytest.raises(HttpFailure, match="429"):
        http_transient(_transient, retry_after=_retry_after, max_delay_s=20, sleep=sleeps.append)(call)
    assert calls == [1] and sleeps == [3], "asked to wait longer than max_delay_s: raised at once"


def test_http_transient_raises_the_last_error_when_attempts_run_out() -> None:
    sleeps: list[float] = []
    call, calls = failing(HttpFailure(500), HttpFailure(502), HttpFailure(503))
    with pytest.raises(HttpFailure, match="503"):
        http_transient(_transient, attempts=3, sleep=sleeps.append)(call)
    assert calls == [1, 2, 3] and len(sleeps) == 2


def test_http_transient_does_not_retry_a_client_error() -> None:
    call, calls = failing(HttpFailure(400))
    with pytest.raises(HttpFailure):
        http_transient(_transient, sleep=lambda _s: None)(call)
    assert calls == [1]


def test_http_transient_logs_each_retry(capsys: pytest.CaptureFixture[str]) -> None:
    call, _ = failing(HttpFailure(500))
    http_transient(_transient, what="telegram call", sleep=lambda _s: None)(call)
    assert "telegram call failed; retrying" in capsys.readouterr().err


def test_poll_until_returns_the_first_good_result_after_doubling_waits() -> None:
    sleeps: list[float] = []
    answers = iter([503, 503, 503, 200])
    policy = poll_until(
        lambda status: status == 200, attempts=5, initial_delay_s=2, max_delay_s=5, sleep=sleeps.append
    )
    assert policy(lambda: next(answers)) == 200
    assert sleeps == [2, 4, 5]


def test_poll_until_returns_the_last_result_when_attempts_run_out() -> None:
    sleeps: list[float] = []
    answers = iter([1, 2, 3])
    policy = poll_until(lambda n: n > 10, attempts=3, initial_delay_s=1, max_delay_s=8, sleep=sleeps.append)
    assert policy(lambda: next(answers)) == 3
    assert sleeps == [1, 2]


def test_once_more_prepares_and_retries_only_what_it_is_told() -> None:
    refreshed: list[str] = []
    call, calls = failing(PermissionError("stale secret"))
    policy = once_more(
        lambda e: isinstance(e, PermissionError),
        before_retry=lambda e: refreshed.append(str(e)),
        sleep=lambda _s: None,
    )
    assert policy(call) == "ok"
    assert calls == [1, 2] and refreshed == ["stale secret"]

    call, calls = failing(PermissionError("a"), PermissionError("b"))
    with pytest.raises(PermissionError, match="b"):
        once_more(lambda e: isinstance(e, PermissionError), sleep=lambda _s: None)(call)
    assert calls == [1, 2], "twice at most"

    call, calls = failing(ValueError("not retried"))
    with pytest.raises(ValueError):
        once_more(lambda e: isinstance(e, PermissionError), sleep=lambda _s: None)(call)
    assert calls == [1]


def test_once_more_on_disconnect_reconnects_once_without_waiting() -> None:
    sleeps: list[float] = []
    dropped: list[BaseException] = []
    call, calls = failing(ConnectionResetError("reset by peer"))
    assert once_more_on_disconnect(before_retry=dropped.append, sleep=sleeps.append)(call) == "ok"
    assert calls == [1, 2] and sleeps == [0] and len(dropped) == 1

    call, calls = failing(TimeoutError())
    with pytest.raises(TimeoutError):
        once_more_on_disconnect(sleep=sleeps.append)(call)
    assert calls == [1], "a timeout is not a stale connection"


def test_while_contended_waits_longer_each_time_then_raises() -> None:
    sleeps: list[float] = []
    call, calls = failing(*[LookupError("held")] * 4)
    with pytest.raises(LookupError):
        while_contended(lambda e: isinstance(e, LookupError), attempts=4, step_s=0.25, sleep=sleeps.append)(
            call
        )
    assert calls == [1, 2, 3, 4]
    assert sleeps == [0.25, 0.5, 0.75]


def test_sqlite_busy_retries_only_a_locked_database() -> None:
    sleeps: list[float] = []
    call, calls = failing(sqlite3.OperationalError("database is locked"), then="wal")
    assert sqlite_busy(sleep=sleeps.append)(call) == "wal"
    assert calls == [1, 2] and 0.05 <= sleeps[0] <= 0.15

    call, calls = failing(sqlite3.OperationalError("no such table: x"))
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        sqlite_busy(sleep=sleeps.append)(call)
    assert calls == [1]

    call, calls = failing(*[sqlite3.OperationalError("database is locked")] * 3)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite_busy(attempts=3, sleep=sleeps.append)(call)
    assert calls == [1, 2, 3]


def test_until_stopped_backs_off_per_failure_and_ends_when_stopped() -> None:
    stopped = threading.Event()
    reported: list[tuple[str, float]] = []
    call, calls = failing(OSError("a"), OSError("b"), then="polled")
    policy = until_stopped(
        stopped,
        lambda _e, failures: float(failures) / 1000,
        on_retry=lambda e, d: reported.append((str(e), d)),
    )
    assert policy(call) == "polled"
    assert reported == [("a", 0.0), ("b", 0.001)], "the wait grows with the failures so far"

    def stop_then_fail() -> None:
        stopped.set()
        raise OSError("while stopping")

    with pytest.raises(OSError, match="while stopping"):
        until_stopped(stopped, lambda _e, _f: 60.0)(stop_then_fail)

    stopped.clear()
    call, calls = failing(KeyError("fatal"))
    with pytest.raises(KeyError):
        until_stopped(stopped, lambda _e, _f: 0.0, retry_on=lambda e: isinstance(e, OSError))(call)
    assert calls == [1]
