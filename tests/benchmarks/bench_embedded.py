"""Embedded stack benchmark: start-up and `local down`, API throughput over real HTTP, and POST engineering
-> consumer latency on SQLite and PostgreSQL.

    python -m tests.benchmarks.bench_embedded [--seconds 5] [--tasks 200] [--starts 3] [--postgres-url URL]

Start-up times `orchestrator local up --detach` until it returns (the CLI's config is written, the
consumers run, /health answers 200), on a fresh and on an existing data dir, with the stack process's CPU
time then; `local down` is timed as the whole command. Throughput runs the
stack in a subprocess and drives it with 1 and 8 client threads. Latency runs the stack in-process and
times, per task, from the POST /projects/{id}/engineering call to a consumer on engineering:queue
receiving the message: a thread of the stack's process, or another process (woken by the queue's
wake-up, see shared.queues.wakeup). PostgreSQL with --postgres-url / ORCH_TEST_POSTGRES_URL.
Prints numbers (medians); asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _stack_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env["ORCH_HOME"] = str(home)
    return env


def _start_subprocess_stack(home: Path) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "local", "up", "--port", "0", "--json", "--consumers", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_stack_env(home),
    )
    assert proc.stdout is not None
    url = json.loads(proc.stdout.readline())["url"]
    key = json.loads((home / "config.json").read_text())["api_key"]
    return proc, url, key


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children so far (the CLI runs, not the stack
    a detached `local up` leaves behind)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _local_down(home: Path) -> tuple[float, float]:
    """(wall s, the CLI's CPU s) of `local down`."""
    start, cpu = time.perf_counter(), _children_cpu_s()
    subprocess.run(
        [sys.executable, "-m", "cli.main", "local", "down"],
        env=_stack_env(home),
        check=True,
        capture_output=True,
        timeout=60,
    )
    return time.perf_counter() - start, _children_cpu_s() - cpu


def startup(starts: int) -> dict[str, list[tuple[float, float, float]]]:
    """(wall s, the stack process's CPU s, the CLI's own CPU s) of `local up --detach` until it returns
    (ready: the CLI's config written, the consumers running, /health 200) on a fresh and on an existing
    data dir (all consumers but Telegram's), and (wall s, NaN, the CLI's CPU s) of `local down` stopping
    it. The machine may be shared: CPU seconds say more than wall there."""
    samples: dict[str, list[tuple[float, float, float]]] = {
        "fresh data dir": [],
        "existing data dir": [],
        "down": [],
    }
    for _ in range(starts):
        with tempfile.TemporaryDirectory() as tmp:
            for label in ("fresh data dir", "existing data dir"):
                start, cli_cpu = time.perf_counter(), _children_cpu_s()
                out = subprocess.run(
                    [sys.executable, "-m", "cli.main", "local", "up", "--detach", "--port", "0", "--json"],
                    env=_stack_env(Path(tmp)),
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                wall, cli_cpu = time.perf_counter() - start, _children_cpu_s() - cli_cpu
                samples[label].append((wall, _cpu_s(json.loads(out.stdout)["pid"]), cli_cpu))
                down_wall, down_cpu = _local_down(Path(tmp))
                samples["down"].append((down_wall, float("nan"), down_cpu))
    return samples


def throughput(seconds: float) -> list[tuple[str, int, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, key = _start_subprocess_stack(Path(tmp))
        try:
            headers = {"authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, headers=headers) as c:
                c.post("/projects", json={"name": "seed"})
                for i in range(100):
                    c.post("/projects/seed/engineering", json={"spec": f"s{i}"})
            counter = [0]
            for label, method in (("GET /tasks", "get"), ("POST /projects", "post")):
                for clients in (1, 8):
                    stop = time.monotonic() + seconds
                    counts = [0] * clients

                    def run(
                        i: int, method: str = method, stop: float = stop, counts: list[int] = counts
                    ) -> None:
                        with httpx.Client(base_url=url, headers=headers) as c:
                            while time.monotonic() < stop:
                                if method == "get":
                                    r = c.get("/tasks", params={"limit": 20})
                                else:
                                    counter[0] += 1
                                    r = c.post(
                                        "/projects",
                                        json={"name": f"p-{i}-{counter[0]}-{time.monotonic_ns()}"},
                                    )
                                assert r.status_code < 300, r.text
                                counts[i] += 1

                    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
                    start = time.monotonic()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    rows.append((label, clients, sum(counts) / (time.monotonic() - start)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return rows


def _consume_tasks(home: str, tasks: int, ready: Any, results: Any) -> None:
    """A consumer on engineering:queue recording when each task's message arrived (wall clock: the
    publisher may be another process); hands the times back once it has `tasks` of them."""
    from shared.queues import build_queue
    from shared.queues.local_runner import QueuePoller
    from shared.settings import QueueSettings

    received: dict[str, float] = {}

    def consumer(event: dict[str, Any], context: Any) -> dict[str, Any]:
        now = time.time()
        for record in event["Records"]:
            received[json.loads(record["body"])["task_id"]] = now
        return {"batchItemFailures": []}

    poller = QueuePoller(build_queue(QueueSettings(home=Path(home))), "engineering:queue", consumer)
    poller.run_once(wait_seconds=0.01)  # waiting, with its wake-ups set up, as a running consumer is
    ready.set()
    deadline = time.monotonic() + 120
    while len(received) < tasks and time.monotonic() < deadline:
        poller.run_once(wait_seconds=1.0)
    results.put(received)


def enqueue_latency(
    tasks: int, database_url: str | None = None, consumer: str = "thread"
) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, received) from POST engineering to a consumer having the message; the consumer
    is a thread of the stack's process or (`consumer="process"`) another process."""
    from cli.local.stack import EmbeddedStack

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        stack = EmbeddedStack(home, port=0, consumers=[], database_url=database_url)  # the bench consumes
        url = stack.start()
        ctx = multiprocessing.get_context("spawn")
        ready, results = ctx.Event(), ctx.Queue()
        args = (tmp, tasks, ready, results)
        runner: Any = (
            threading.Thread(target=_consume_tasks, args=args, daemon=True)
            if consumer == "thread"
            else ctx.Process(target=_consume_tasks, args=args)
        )
        runner.start()
        ready.wait(60)
        sent: dict[str, float] = {}
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {stack.admin_key}"}) as c:
            project = f"lat-{uuid.uuid4().hex[:8]}"
            c.post("/projects", json={"name": project})
            for i in range(tasks):
                start = time.time()
                r = c.post(f"/projects/{project}/engineering", json={"spec": f"s{i}"})
                sent[r.json()["id"]] = start
                time.sleep(0.01)
        received: dict[str, float] = results.get(timeout=180)
        runner.join(timeout=30)
        stack.stop()
        samples = [(received[t] - sent[t]) * 1000 for t in sent if t in received]
        p50, p99 = _percentiles(samples)
        return p50, p99, len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--postgres-url", default=os.environ.get("ORCH_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    print(f"embedded stack, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for label, samples in startup(args.starts).items():
        wall, cpu, cli_cpu = (statistics.median(sample[i] for sample in samples) for i in range(3))
        what = "local down (whole command)" if label == "down" else f"local up -> ready, {label}"
        stack = "" if cpu != cpu else f"stack CPU {cpu:.2f} s, "
        print(f"  {what:<40} {wall:6.2f} s  ({stack}CLI CPU {cli_cpu:.2f} s)")
    for label, clients, rate in throughput(args.seconds):
        print(f"  {label:<15} {clients} client(s): {rate:7.0f} req/s")
    _print_latency(args.tasks, args.postgres_url)


def _print_latency(tasks: int, postgres_url: str | None) -> None:
    databases: list[tuple[str, str | None]] = [("sqlite", None)]
    if postgres_url:
        from tests.api_support import drop_postgres_database, fresh_postgres_database

        databases.append(("postgres", fresh_postgres_database(postgres_url)))
    else:
        print("  postgres: skipped (no --postgres-url / ORCH_TEST_POSTGRES_URL)")
    try:
        for label, url in databases:
            for consumer in ("thread", "process"):
                p50, p99, n = enqueue_latency(tasks, url, consumer)
                print(
                    f"  POST engineering -> consumer ({label}, {consumer:<7}): p50 {p50:5.1f} ms, "
                    f"p99 {p99:6.1f} ms (n={n})"
                )
    finally:
        if postgres_url and len(databases) > 1 and databases[1][1]:
            drop_postgres_database(postgres_url, str(databases[1][1]))


if __name__ == "__main__":
    main()
