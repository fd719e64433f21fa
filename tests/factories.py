"""Small factories for messages and events used across the suites."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from shared.contracts import EngineeringMessage, ProgressEvent, parse_message
from shared.queues.port import QueuePort


def engineering_message(**overrides: object) -> EngineeringMessage:
    fields: dict[str, object] = {
        "task_id": str(uuid.uuid4()),
        "project_id": str(uuid.uuid4()),
        "user_id": 42,
    }
    fields.update(overrides)
    return EngineeringMessage.model_validate(fields)


def progress_event(**overrides: object) -> ProgressEvent:
    fields: dict[str, object] = {"type": "progress", "task_id": str(uuid.uuid4()), "message": "working"}
    fields.update(overrides)
    return ProgressEvent.model_validate(fields)


def drain(queue: QueuePort, name: str) -> list[Any]:
    """Every message now visible on `name`, parsed and deleted."""
    out: list[Any] = []
    while batch := queue.receive(name, 10, visibility_timeout=30):
        for m in batch:
            out.append(parse_message(name, m.body))
            queue.delete(name, m.receipt_handle)
    return out


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run `fn(0..n-1)` in n threads released together; results (or the exceptions raised) in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # collected and asserted on
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results
