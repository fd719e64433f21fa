"""A graph's progress events, sent together rather than one request each.

An event is held until the graph's next request that changes something (any but a GET: a claim, a task's
completion, a project's status, the lease given back at the end of every step), so whoever reads the task
never sees a change before the events that led up to it; and at most `HOLD_S` after the first one held,
for a node that works a while without the API (a merge waiting for a pull request's checks). Reads do not
wait for them: a read changes nothing anyone sees. An engineering task's ~9 event requests become ~5.

Held per thread: a process's pollers each drive their own task. A failed send is logged and the events
dropped, as a lost progress line is not worth failing the step that made it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from shared.observability import get_logger

HOLD_S = 1.0
"""The longest an event waits for the graph's next change (as the wrapper's EVENT_FLUSH_S)."""
IDLE_S = 30.0
"""The flusher ends after this long with nothing held, and the next event starts another: a holder whose
graph is gone (a function rebuilt after a reset, a stopped stack) leaves no thread, nor its client, behind."""


class EventsApi(Protocol):
    def append_events(self, task_id: str, events: list[Any]) -> Any: ...

    def without_before_change(self) -> contextlib.AbstractContextManager[None]: ...


class HeldEvents:
    def __init__(self, api: EventsApi, hold_s: float = HOLD_S, idle_s: float = IDLE_S) -> None:
        self._api = api
        self.hold_s, self.idle_s = hold_s, idle_s
        self._lock = threading.Lock()
        self._due = threading.Condition(self._lock)
        self._sending = threading.RLock()
        """Held while a thread's events are sent: the thread's own change waits for the flusher's send."""
        self._held: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        self._deadlines: dict[int, float] = {}
        self._flusher: threading.Thread | None = None
        """Sends what waited `hold_s` (one thread for all: a thread started per held batch cost more)."""

    def add(self, task_id: str, event: dict[str, Any]) -> None:
        me = threading.get_ident()
        with self._lock:
            self._held.setdefault(me, []).append((task_id, event))
            if me in self._deadlines:
                return
            self._deadlines[me] = time.monotonic() + self.hold_s
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_when_due, name="held-events", daemon=True)
                self._flusher.start()
            self._due.notify()

    def _flush_when_due(self) -> None:
        while True:
            with self._lock:
                while not self._deadlines:
                    if not self._due.wait(self.idle_s) and not self._deadlines:
                        self._flusher = None  # `add` sees it under this lock and starts another
                        return
                now = time.monotonic()
                due = [owner for owner, deadline in self._deadlines.items() if deadline <= now]
                if not due:
                    self._due.wait(min(self._deadlines.values()) - now)
                    continue
            for owner in due:
                self.flush(owner)

    def flush(self, thread: int | None = None) -> None:
        """Send what `thread` (default: this one) holds, in order: one request per task."""
        owner = threading.get_ident() if thread is None else thread
        with self._sending:
            with self._lock:
                held = self._held.pop(owner, [])
                self._deadlines.pop(owner, None)
            if not held:
                return
            with self._api.without_before_change():  # its sends run no client callbacks, this one's included
                self._send(held)

    def flush_all(self) -> None:
        """Send what every thread holds (the client is about to close)."""
        with self._lock:
            owners = list(self._held)
        for owner in owners:
            self.flush(owner)

    def _send(self, held: list[tuple[str, dict[str, Any]]]) -> None:
        for task_id, events in _by_task(held):
            try:
                self._api.append_events(task_id, events)
            except Exception:
                get_logger().exception(
                    "could not send progress events", extra={"task_id": task_id, "events": len(events)}
                )

    def flusher_running(self) -> bool:
        """Whether a flusher thread is alive (tests)."""
        with self._lock:
            return self._flusher is not None and self._flusher.is_alive()

    def held(self) -> int:
        """How many events this thread holds (tests)."""
        with self._lock:
            return len(self._held.get(threading.get_ident(), []))


def _by_task(held: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive events of one task as one batch (a thread drives one task at a time)."""
    batches: list[tuple[str, list[dict[str, Any]]]] = []
    for task_id, event in held:
        if batches and batches[-1][0] == task_id:
            batches[-1][1].append(event)
        else:
            batches.append((task_id, [event]))
    return batches


def holder_for(api: Any) -> Callable[[str, dict[str, Any]], None]:
    """How a graph sends one event through `api`: held (`HeldEvents`) when the client can say before it
    changes something (`ApiTransport.before_change`), else sent at once (a test's fake API)."""
    register = getattr(api, "before_change", None)
    if register is None:
        return lambda task_id, event: api.append_events(task_id, [event])
    held = HeldEvents(api)
    register(held.flush)
    on_close = getattr(api, "before_close", None)
    if on_close is not None:  # what is still held goes out before the client closes
        on_close(held.flush_all)
    return held.add
