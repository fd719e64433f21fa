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
