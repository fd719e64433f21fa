"""Waking local queue consumers: across processes by a datagram, in a process by a condition variable; a
lost wake-up or a dead listener costs only latency; a stopping consumer's wait ends at once."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

from shared.queues.local import LocalQueue
from shared.queues.wakeup import Wakeups
from tests.factories import engineering_message

Q = "engineering:queue"
SAFETY_S = 20.0
"""Only bounds a broken test; nothing here asserts how fast anything is."""


def test_a_publish_in_one_process_bumps_the_queue_generation_seen_by_another(tmp_path: Path) -> None:
    queue_file = tmp_path / "queue.db"
    consumer, publisher = Wakeups(queue_file), Wakeups(queue_file)  # two processes' views of one file
    assert consumer.listen()
    seen = consumer.generation(Q)

    publisher.notify(Q)

    consumer.wait(Q, seen, SAFETY_S)
    assert consumer.generation(Q) == seen + 1
    assert consumer.generation("deploy:queue") == 0, "only the queue published to is woken"


def test_a_publish_wakes_only_that_queues_waiters(tmp_path: Path) -> None:
    """Each queue has its own condition: publishing to one does not wake every consumer thread of the
    process to look at its own unchanged queue (a thundering herd, ~6 % of the stack's CPU at 50 tasks)."""
    wakeups = Wakeups(tmp_path / "queue.db")
    other = "deploy:queue"
    with wakeups._lock:
        cond = wakeups._condition(other)
    woken = []
    real_wait = cond.wait

    def counting_wait(timeout: float | None = None) -> bool:
        woken.append(timeout)
        return real_wait(timeout)

    cond.wait = counting_wait  # type: ignore[method-assign]
    waiter = threading.Thread(target=wakeups.wait, args=(other, wakeups.generation(other), SAFETY_S))
    waiter.start()
    deadline = time.monotonic() + SAFETY_S
    while not woken and time.monotonic() < deadline:
        time.sleep(0.01)

    for _ in range(50):
        wakeups.bump(Q)
    time.sleep(0.1)
    assert len(woken) == 1, "the other queue's waiter slept through"

    wakeups.bump(other)
    waiter.join(SAFETY_S)
    assert not waiter.is_alive()


def test_a_dead_listeners_marker_is_removed_by_the_next_publisher(tmp_path: Path) -> None:
    queue_file = tmp_path / "queue.db"
    gone = Wakeups(queue_file)
    assert gone.listen()
    [marker] = list(gone.directory.iterdir())
    marker.unlink()
    stale = gone.directory / "4194305-deadbeef0000"  # a marker whose process (and socket) is gone
    stale.touch()

    Wakeups(queue_file).notify(Q)

    assert not stale.exists()


def _receive_in_child(path: str, ready: Any, results: Any) -> None:
    queue = LocalQueue(Path(path))
    queue.receive(Q, 1, wait_seconds=0.01)  # listening from here on
    ready.set()
    got = queue.receive(Q, 10, wait_seconds=SAFETY_S)
    results.put([m.message_id for m in got])


def test_a_consumer_in_another_process_receives_what_this_one_publishes(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = LocalQueue(path)
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Event(), ctx.Queue()
    child = ctx.Process(target=_receive_in_child, args=(str(path), ready, results))
    child.start()
    try:
        assert ready.wait(60)
        sent = queue.publish(Q, engineering_message())
        assert results.get(timeout=60) == [sent]
    finally:
        child.join(timeout=30)
        child.kill()


def test_interrupt_waits_ends_a_waiting_receive_with_nothing(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "queue.db")
    got: list[object] = []
    waiting = threading.Thread(target=lambda: got.append(queue.receive(Q, 1, wait_seconds=600)))
    waiting.start()
    deadline = time.monotonic() + SAFETY_S
    while waiting.is_alive() and time.monotonic() < deadline:  # an interrupt before its wait began is moot
        queue.interrupt_waits()
        waiting.join(0.05)
    assert not waiting.is_alive() and got == [[]]


def test_a_waiting_receive_gets_a_message_whose_visibility_timeout_ends(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "queue.db")
    sent = queue.publish(Q, engineering_message())
    [first] = queue.receive(Q, 1)
    queue.release(Q, first.receipt_handle, visibility_timeout=1)  # back in a second, with no wake-up

    [again] = queue.receive(Q, 1, wait_seconds=SAFETY_S)

    assert again.message_id == sent and again.receive_count == 2
