"""An idle worker is woken the moment a message for it is stored (shared.workers.wake): its wrapper then
waits WOKEN_PAUSE_S between empty asks, where one that cannot be woken asks after 0.1 s doubling to 1 s."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.workers.wake import WOKEN_PAUSE_S, WakeListener, wake
from worker_image import wrapper as wrapper_module
from worker_image.wrapper import Wrapper, WrapperSettings

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="abstract unix sockets are Linux's"
)


def _worker_id() -> str:
    return f"w-test-{uuid.uuid4().hex[:12]}"


@linux_only
def test_a_wake_ends_the_wait_and_draining_forgets_it() -> None:
    worker_id = _worker_id()
    listener = WakeListener(worker_id)
    try:
        assert listener.listening
        assert not listener.wait(0.01), "nothing sent yet"
        assert wake(worker_id)
        assert listener.wait(30), "the datagram waits in the socket: a wake before the wait is not lost"
        listener.drain()
        assert not listener.wait(0.01), "drained"
    finally:
        listener.close()


@linux_only
def test_only_the_named_worker_is_woken_and_a_wake_nobody_hears_is_dropped() -> None:
    mine, other = _worker_id(), _worker_id()
    listener = WakeListener(mine)
    try:
        assert not wake(other), "nobody listens for it: dropped quietly"
        assert not listener.wait(0.05)
    finally:
        listener.close()
    assert not wake(mine), "closed: nobody listens any more"


@linux_only
def test_a_wake_from_another_thread_ends_a_long_wait_early() -> None:
    worker_id = _worker_id()
    listener = WakeListener(worker_id)
    try:
        threading.Timer(0.2, wake, args=(worker_id,)).start()
        began = time.monotonic()
        assert listener.wait(30)
        assert time.monotonic() - began < 25, "woken, not timed out"
    finally:
        listener.close()


@linux_only
def test_a_taken_address_falls_back_to_the_timed_ask() -> None:
    worker_id = _worker_id()
    first = WakeListener(worker_id)
    try:
        second = WakeListener(worker_id)
        assert first.listening and not second.listening
        assert not second.wait(0.01)
        second.drain()
        second.close()
    finally:
        first.close()


class _IdleApi:
    """Answers `idle` empty asks, then says the worker has ended."""

    def __init__(self, idle: int) -> None:
        self.idle = idle
        self.asks = 0

    def next_worker_message(self, worker_id: str) -> None:
        from shared.api_client import GoneError

        self.asks += 1
        if self.asks > self.idle:
            raise GoneError(410, "gone", "the worker has ended")


@pytest.mark.parametrize("can_be_woken", [True, False], ids=["woken", "timed"])
def test_an_idle_wrapper_waits_5s_for_a_wake_up_or_asks_every_second_at_most(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, can_be_woken: bool
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(wrapper_module.time, "sleep", pauses.append)
    monkeypatch.setattr(WakeListener, "wait", lambda self, timeout_s: pauses.append(timeout_s) or False)
    monkeypatch.setattr(Wrapper, "load_job", lambda self: None)
    api: Any = _IdleApi(idle=9)
    settings = WrapperSettings(worker_workspace_root=tmp_path, worker_wake=can_be_woken)
    worker = Wrapper(api, _worker_id(), settings)
    try:
        assert worker.serve() == 0
    finally:
        worker.cleanup()
    if can_be_woken and sys.platform.startswith("linux"):
        assert pauses == [WOKEN_PAUSE_S] * 9, "the wake-up ends a wait when a message is stored"
    else:
        assert pauses == [min(0.1 * 2**i, 1.0) for i in range(9)]
    assert api.asks == 10


class _Mailbox:
    """The API's side of a worker's messages: storing one announces it (as the API does once committed)."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.pending: list[str] = []
        self.log: list[str] = []
        self.ended = False

    def store(self, *names: str) -> None:
        for name in names:
            self.pending.append(name)
            assert wake(self.worker_id)

    def next_worker_message(self, worker_id: str) -> Any:
        from datetime import UTC, datetime

        from shared.api_client import GoneError
        from shared.contracts.api import WorkerMessage

        if not self.pending and self.ended:
            self.log.append("ask: gone")
            raise GoneError(410, "gone", "the worker has ended")
        if not self.pending:
            self.log.append("ask: nothing")
            return None
        name = self.pending.pop(0)
        self.log.append(f"ask: {name}")
        return WorkerMessage(
            id=len(self.log), worker_id=worker_id, request_id=name, kind="message", body=name, path=None,
            timeout_s=60, status="RUNNING", result=None, error=None, correlation_id=None,
            created_at=datetime.now(UTC), started_at=None, finished_at=None,
        )  # fmt: skip


@linux_only
def test_after_an_answer_a_caught_up_wrapper_asks_only_for_what_was_announced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before its first empty ask a wrapper asks after every answer (messages stored before it listened
    were never announced); after it, an answer is followed by a wait unless announced messages are still
    untaken: no ask for nothing, and no message left waiting for a timed ask."""
    worker_id = _worker_id()
    box = _Mailbox(worker_id)
    box.pending.append("m1")  # stored before the wrapper listened: never announced
    # what the graph stores while each message runs, or during a wait
    while_handling = {"m1": ["m2"], "m3": ["m4", "m5"]}
    during_wait = [["m3"], [], ["end"]]

    def handle(self: Wrapper, message: Any) -> None:
        box.log.append(f"answer {message.request_id}")
        box.store(*while_handling.get(message.request_id, []))

    def wait(self: WakeListener, timeout_s: float) -> bool:
        box.log.append("wait")
        stored = during_wait.pop(0)
        if stored == ["end"]:
            box.ended = True
            return False
        box.store(*stored)
        return bool(stored)

    monkeypatch.setattr(Wrapper, "load_job", lambda self: None)
    monkeypatch.setattr(Wrapper, "handle", handle)
    monkeypatch.setattr(WakeListener, "wait", wait)
    worker = Wrapper(box, worker_id, WrapperSettings(worker_workspace_root=tmp_path, worker_wake=True))  # type: ignore[arg-type]
    try:
        assert worker.serve() == 0
    finally:
        worker.cleanup()

    assert box.log == [
        "ask: m1", "answer m1",  # not caught up yet: ask again at once
        "ask: m2", "answer m2",
        "ask: nothing", "wait",  # caught up; m3 stored during the wait
        "ask: m3", "answer m3",  # m4 and m5 announced while it ran: their wake-ups end the wait at once
        "wait", "ask: m4", "answer m4",  # m5 announced and not taken: asked for at once, no wait
        "ask: m5", "answer m5",
        "wait", "ask: gone",
    ]  # fmt: skip
