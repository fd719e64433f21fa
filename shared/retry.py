"""The project's retry vocabulary: a few named tenacity policies instead of hand-written loops.

Each policy is a function returning a configured `tenacity.Retrying`; call it with the work
(`http_transient(...)(fn, *args)`) or loop over it (`for attempt in policy: with attempt: ...`).
Every policy takes `sleep`, so tests pass a fake clock and run instantly. All of them re-raise the
last error (never tenacity's `RetryError`), so callers keep catching their own exceptions.

- `http_transient`: 429 / 5xx / network errors; exponential backoff with jitter, a server's
  Retry-After honoured, and given up at once when that asks for longer than `max_delay_s`.
- `poll_until`: call until the result is good (a smoke or health check), exponential backoff;
  returns the last result when the attempts run out.
- `once_more`, `once_more_on_disconnect`: a second and last try (a stale connection, a rotated
  credential), with a hook to refresh something before it.
- `while_contended`: another holder has the lock: wait a little longer each time, then give up.
- `sqlite_busy`: SQLite's "database is locked" on a switch its busy handler skips (WAL).
- `until_stopped`: a background loop's failures, backed off until a stop event is set.
"""

from __future__ import annotations

import http.client
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_incrementing,
    wait_random,
)
from tenacity.wait import wait_base

T = TypeVar("T")
Sleep = Callable[[float], Any]
Predicate = Callable[[BaseException], bool]

__all__ = [
    "Sleep",
    "http_transient",
    "is_disconnect",
    "is_transient_status",
    "once_more",
    "once_more_on_disconnect",
    "poll_until",
    "sqlite_busy",
    "until_stopped",
    "while_contended",
]


def is_transient_status(status: int) -> bool:
    """HTTP statuses worth another try: rate limited (429) or a server-side failure (5xx)."""
    return status == 429 or status >= 500


def is_disconnect(exc: BaseException) -> bool:
    """The other side closed a kept-alive connection (reconnecting is the fix)."""
    return isinstance(exc, ConnectionResetError | BrokenPipeError | http.client.RemoteDisconnected)


def _log_retry(what: str, context: Mapping[str, Any] | None = None) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        from shared.observability import get_logger  # only when something is retried: keeps imports light

        error = state.outcome.exception() if state.outcome is not None else None
        get_logger().warning(
            f"{what} failed; retrying",
            extra={
                **(context or {}),
                "attempt": state.attempt_number,
                "delay_s": round(state.upcoming_sleep, 3),
                "error": type(error).__name__ if error is not None else "result",
            },
        )

    return before_sleep


class _wait_retry_after(wait_base):
    """The server's Retry-After when the error carries one, else `fallback`."""

    def __init__(self, retry_after: Callable[[BaseException], float | None], fallback: wait_base) -> None:
        self.retry_after, self.fallback = retry_after, fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        asked = self.retry_after(error) if error is not None else None
        return float(asked) if asked is not None else self.fallback(retry_state)


def _no_retry_after(_exc: BaseException) -> float | None:
    return None


def http_transient(
    is_transient: Predicate,
    *,
    attempts: int = 4,
    base_delay_s: float = 0.5,
    max_delay_s: float = 20.0,
    jitter_s: float | None = None,
    retry_after: Callable[[BaseException], float | None] = _no_retry_after,
    sleep: Sleep = time.sleep,
    what: str = "http call",
    context: Mapping[str, Any] | None = None,
) -> Retrying:
    """Retry what `is_transient` accepts (429, 5xx, network errors), at most `attempts` tries.

    The n-th wait is `base_delay_s * 2**(n-1)` plus up to `jitter_s` (default: `base_delay_s / 2`)
    of jitter, capped at `max_delay_s`; an error whose `retry_after(exc)` is set waits exactly that
    instead, and one asking for more than `max_delay_s` is raised at once (the caller's redelivery
    is the better wait). Each retry logs a warning naming `what`, with `context` as extra fields
    (never put an argument or a URL there: they may hold a token).
    """
    backoff = wait_exponential_jitter(
        multiplier=base_delay_s,
        max=max_delay_s,
        jitter=base_delay_s / 2 if jitter_s is None else jitter_s,
    )

    def stop(state: RetryCallState) -> bool:
        return state.attempt_number >= attempts or state.upcoming_sleep > max_delay_s

    return Retrying(
        stop=stop,
        wait=_wait_retry_after(retry_after, backoff),
        retry=retry_if_exception(is_transient),
        before_sleep=_log_retry(what, context),
        sleep=sleep,
        reraise=True,
    )


def poll_until(
    done: Callable[[Any], bool],
    *,
    attempts: int,
    initial_delay_s: float,
    max_delay_s: float,
    sleep: Sleep = time.sleep,
) -> Retrying:
    """Call until `done(result)`, at most `attempts` times, waiting `initial_delay_s` doubling up to
    `max_delay_s` between calls. Returns the last result either way (the caller judges it); an
    exception is not retried (catch it inside the polled call if it means "not yet")."""

    def last_result(state: RetryCallState) -> Any:
        assert state.outcome is not None
        return state.outcome.result()

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=initial_delay_s, max=max_delay_s),
        retry=retry_if_result(lambda result: not done(result)),
        retry_error_callback=last_result,
        sleep=sleep,
        reraise=True,
    )


def once_more(
    retry_on: Predicate,
    *,
    before_retry: Callable[[BaseException], Any] | None = None,
    delay_s: float = 0.0,
    sleep: Sleep = time.sleep,
) -> Retrying:
    """Two tries: the second only when the first raised what `retry_on` accepts, after `delay_s`
    and `before_retry(exc)` (re-read a rotated secret, drop the stale connection)."""

    def prepare(state: RetryCallState) -> None:
        if before_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            if error is not None:
                before_retry(error)

    return Retrying(
        stop=stop_after_attempt(2),
        wait=wait_fixed(delay_s),
        retry=retry_if_exception(retry_on),
        before_sleep=prepare,
        sleep=sleep,
        reraise=True,
    )


def once_more_on_disconnect(
    *, before_retry: Callable[[BaseException], Any] | None = None, sleep: Sleep = time.sleep
) -> Retrying:
    """A kept-alive connection the server closed meanwhile: reconnect and try once more, at once."""
    return once_more(is_disconnect, before_retry=before_retry, sleep=sleep)


def while_contended(
    retry_on: Predicate, *, attempts: int, step_s: float, sleep: Sleep = time.sleep
) -> Retrying:
    """Someone else holds it (a claim, a lock): wait `step_s`, then `2 * step_s`..., `attempts` tries."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_incrementing(start=step_s, increment=step_s),
        retry=retry_if_exception(retry_on),
        sleep=sleep,
        reraise=True,
    )


def _sqlite_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def sqlite_busy(*, attempts: int = 100, sleep: Sleep = time.sleep) -> Retrying:
    """SQLite's "database is locked" where its busy handler does not wait (the switch to WAL when
    several processes open a fresh file at once): retry after 50-150 ms, jittered so they spread."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random(0.05, 0.15),
        retry=retry_if_exception(_sqlite_locked),
        sleep=sleep,
        reraise=True,
    )


def until_stopped(
    stopped: threading.Event,
    wait: Callable[[BaseException, int], float],
    *,
    retry_on: Predicate = lambda _exc: True,
    on_retry: Callable[[BaseException, float], Any] | None = None,
) -> Retrying:
    """A background loop's step, retried while `stopped` is unset: `wait(exc, failures)` seconds
    between tries (`on_retry(exc, delay)` first, to log what the loop knows), slept on the event
    itself so `set()` ends the wait at once. When stopped, the last error is raised."""

    def wait_for(state: RetryCallState) -> float:
        assert state.outcome is not None
        error = state.outcome.exception()
        assert error is not None
        return wait(error, state.attempt_number - 1)

    def nap(seconds: float) -> None:
        stopped.wait(seconds)

    def report(state: RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            if error is not None:
                on_retry(error, state.upcoming_sleep)

    return Retrying(
        stop=lambda _state: stopped.is_set(),
        wait=wait_for,
        retry=retry_if_exception(retry_on),
        before_sleep=report,
        sleep=nap,
        reraise=True,
    )
