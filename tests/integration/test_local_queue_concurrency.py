"""No message is delivered to two consumers inside its visibility window: threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from shared.queues.local import LocalQueue
from tests.factories import engineering_message

Q = "engineering:queue"
N = 600


def _drain(path: str, out: list[str]) -> None:
    queue = LocalQueue(Path(path), visibility_timeout=300)
    idle = 0
    while idle < 3:
        batch = queue.receive(Q, 10, wait_seconds=0.1)
        if not batch:
            idle += 1
            continue
        idle = 0
        for m in batch:
            out.append(m.message_id)
            queue.delete(Q, m.receipt_handle)
    queue.close()


def _drain_in_process(path: str, result_queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    got: list[str] = []
    _drain(path, got)
    result_queue.put(got)


def _fill(path: Path) -> set[str]:
    queue = LocalQueue(path, visibility_timeout=300)
    ids = set(queue.publish_batch(Q, [engineering_message() for _ in range(N)]))
    queue.close()
    return ids


def test_four_threads_share_the_work_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    sent = _fill(path)
    outs: list[list[str]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=_drain, args=(str(path), out)) for out in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    received = [i for out in outs for i in out]
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert set(received) == sent


def test_three_processes_share_the_work_without_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    sent = _fill(path)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_drain_in_process, args=(str(path), results)) for _ in range(3)]
    for p in procs:
        p.start()
    received = [i for _ in procs for i in results.get(timeout=120)]
    for p in procs:
        p.join(timeout=30)
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert set(received) == sent


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    first = LocalQueue(path)
    message_id = first.publish(Q, engineering_message())
    [inflight] = LocalQueue(path).receive(Q, visibility_timeout=0)
    first.close()
    reopened = LocalQueue(path)
    [again] = reopened.receive(Q, visibility_timeout=30)
    assert again.message_id == inflight.message_id == message_id
    assert again.receive_count == 2


def test_a_waiting_consumer_wakes_when_a_message_is_published(tmp_path: Path) -> None:
    queue = LocalQueue(tmp_path / "q.db")
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.extend(queue.receive(Q, wait_seconds=10)))
    waiter.start()
    queue.publish(Q, engineering_message())
    waiter.join(timeout=5)
    assert not waiter.is_alive(), "the consumer slept through the publish"
    assert len(got) == 1


def _open_fresh_queue(path: str, start_at: float) -> bool:
    import time as _time

    from shared.queues.local import LocalQueue

    _time.sleep(max(0.0, start_at - _time.time()))
    LocalQueue(Path(path)).close()
    return True


def test_processes_opening_a_fresh_queue_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Several processes (workers, consumers) may open a queue file nobody created yet at the same instant;
    switching it to WAL answered "database is locked" to all but one, whatever the busy timeout."""
    import multiprocessing
    import time as _time
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(8, mp_context=spawn) as pool:
        for round_ in range(4):
            start_at = _time.time() + 2.0
            path = str(tmp_path / f"q{round_}.db")
            assert all(
                f.result(timeout=60)
                for f in [pool.submit(_open_fresh_queue, path, start_at) for _ in range(8)]
            )
