"""Local queue throughput: publish, and receive+delete with 1 and 4 consumers; counts duplicates. Dispatch:
publish -> a waiting consumer has the message, p50/p95, with the consumer in this process (a thread) and
in another process (woken by a datagram, `shared.queues.wakeup`; before: a 50 ms poll).

    python -m tests.benchmarks.bench_local_queue [--messages 10000] [--dispatches 200]

The queue is one SQLite file whichever database the API uses; the API call -> consumer figure on SQLite
and PostgreSQL is in bench_embedded. Prints numbers; asserts nothing about time. The duplicate count
must be 0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from shared.queues.local import LocalQueue
from tests.factories import engineering_message

Q = "engineering:queue"


def _consume(path: str, out: list[str]) -> None:
    queue = LocalQueue(Path(path), visibility_timeout=300)
    idle = 0
    while idle < 3:
        batch = queue.receive(Q, 10, wait_seconds=0.05)
        if not batch:
            idle += 1
            continue
        idle = 0
        out.extend(m.message_id for m in batch)
        queue.delete_batch(Q, [m.receipt_handle for m in batch])
    queue.close()


def _consume_process(path: str, results: Any) -> None:
    out: list[str] = []
    _consume(path, out)
    results.put(out)


def _fill(path: Path, n: int, batch: bool) -> float:
    queue = LocalQueue(path)
    messages = [engineering_message(task_id=f"t{i}") for i in range(n)]
    start = time.perf_counter()
    if batch:
        for i in range(0, n, 10):
            queue.publish_batch(Q, messages[i : i + 10])
    else:
        for m in messages:
            queue.publish(Q, m)
    elapsed = time.perf_counter() - start
    queue.close()
    return n / elapsed


def _drain(path: Path, consumers: int, mode: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    received: list[str] = []
    if mode == "threads":
        outs: list[list[str]] = [[] for _ in range(consumers)]
        threads = [threading.Thread(target=_consume, args=(str(path), o)) for o in outs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        received = [i for o in outs for i in o]
    else:
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        procs = [ctx.Process(target=_consume_process, args=(str(path), results)) for _ in range(consumers)]
        for p in procs:
            p.start()
        received = [i for _ in procs for i in results.get()]
        for p in procs:
            p.join()
    elapsed = time.perf_counter() - start - 0.15  # minus the idle tail (3 empty polls of 50 ms)
    duplicates = len(received) - len(set(received))
    return len(received) / elapsed, len(set(received)), duplicates


def _dispatch_consumer(path: str, n: int, ready: Any, results: Any) -> None:
    """Receive `n` messages one long poll at a time; each sample is receive time minus the publisher's
    time before its publish call (wall clock: the two may be different processes)."""
    queue = LocalQueue(Path(path))
    queue.receive(Q, 1, wait_seconds=0.01)  # set up the wake-ups, as a running consumer has
    ready.set()
    samples: list[float] = []
    while len(samples) < n:
        for m in queue.receive(Q, 10, wait_seconds=5.0):
            samples.append((time.time() - json.loads(m.body)["sent"]) * 1000)
            queue.delete(Q, m.receipt_handle)
    queue.close()
    results.put(samples)


def dispatch(n: int, mode: str, gap_s: float = 0.01) -> tuple[float, float, int]:
    """Publish `n` messages `gap_s` apart to an idle, waiting consumer (a thread, or a process);
    (p50 ms, p95 ms, received)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dispatch.db"
        queue = LocalQueue(path)
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        ready = ctx.Event()
        args = (str(path), n, ready, results)
        worker: Any = (
            threading.Thread(target=_dispatch_consumer, args=args)
            if mode == "thread"
            else ctx.Process(target=_dispatch_consumer, args=args)
        )
        worker.start()
        ready.wait(60)
        for _ in range(n):
            time.sleep(gap_s)
            queue.publish_raw(Q, json.dumps({"sent": time.time()}))
        samples: list[float] = sorted(results.get(timeout=120))
        worker.join()
        queue.close()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.95))], len(samples)


def run(n: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, batch in (("publish one by one", False), ("publish in batches of 10", True)):
            path = Path(tmp) / f"{label}.db"
            rate = _fill(path, n, batch)
            rows.append({"case": label, "msgs_per_s": round(rate), "received": None, "duplicates": None})
        for consumers, mode in ((1, "threads"), (4, "threads"), (4, "processes")):
            path = Path(tmp) / f"drain-{consumers}-{mode}.db"
            _fill(path, n, batch=True)
            rate, unique, dups = _drain(path, consumers, mode)
            rows.append(
                {
                    "case": f"receive+delete, {consumers} consumer(s) ({mode})",
                    "msgs_per_s": round(rate),
                    "received": unique,
                    "duplicates": dups,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--dispatches", type=int, default=200)
    args = parser.parse_args()
    print(
        f"local queue dispatch, {args.dispatches} messages 10 ms apart, {multiprocessing.cpu_count()} cores"
    )
    for mode in ("thread", "process"):
        p50, p95, got = dispatch(args.dispatches, mode)
        print(f"  publish -> consumer ({mode:<7}) p50 {p50:6.2f} ms  p95 {p95:6.2f} ms  (n={got})")
    print(f"local queue, {args.messages} messages, {multiprocessing.cpu_count()} cores")
    for row in run(args.messages):
        extra = (
            "" if row["received"] is None else f"  received={row['received']} duplicates={row['duplicates']}"
        )
        print(f"  {row['case']:<45} {row['msgs_per_s']:>8} msg/s{extra}")


if __name__ == "__main__":
    main()
