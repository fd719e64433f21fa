"""Why a record failed, handed from the consumer to the embedded runner driving it (the local DLQ shows it).

Apart from `consume` so the runner loads only this: `consume` brings Powertools' batch utilities and their
parser models (~7 MiB and ~0.1 s), which a stack whose consumers have had no message yet does not need.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_failure_reasons: ContextVar[dict[str, str] | None] = ContextVar("failure_reasons", default=None)


@contextmanager
def collect_failure_reasons() -> Iterator[dict[str, str]]:
    """While active, failed records' reasons are collected here, keyed by messageId."""
    reasons: dict[str, str] = {}
    token = _failure_reasons.set(reasons)
    try:
        yield reasons
    finally:
        _failure_reasons.reset(token)


def note_failure(message_id: str, reason: str) -> None:
    sink = _failure_reasons.get()
    if sink is not None:
        sink[message_id] = reason
