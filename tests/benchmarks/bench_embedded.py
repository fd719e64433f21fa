"""Embedded stack benchmark: API throughput over real HTTP, and POST engineering -> consumer latency.

    python -m tests.benchmarks.bench_embedded [--seconds 5] [--tasks 200]

Throughput runs the stack in a subprocess (`orchestrator local up`) and drives it with 1 and 8
client threads. Latency runs the stack in-process and times, per task, from the POST
/projects/{id}/engineering call to a consumer on engineering:queue receiving the message.
Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _start_subprocess_stack(home: Path) -> tuple[subprocess.Popen[str], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env["ORCH_HOME"] = str(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "local", "up", "--port", "0", "--json", "--consumers", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    url = json.loads(proc.stdout.readline())["url"]
    key = json.loads((home / "config.json").read_text())["api_key"]
    return proc, url, key


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


def enqueue_latency(tasks: int) -> tuple[float, float, int]:
    from cli.local.stack import EmbeddedStack
    from shared.queues import build_queue
    from shared.queues.local_runner import QueuePoller
    from shared.settings import QueueSettings

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        stack = EmbeddedStack(home, port=0, consumers=[])  # the benchmark is the consumer
        url = stack.start()
        received: dict[str, float] = {}
        done = threading.Event()

        def consumer(event: dict[str, Any], context: Any) -> dict[str, Any]:
            now = time.perf_counter()
            for record in event["Records"]:
                received[json.loads(record["body"])["task_id"]] = now
            if len(received) >= tasks:
                done.set()
            return {"batchItemFailures": []}

        poller = QueuePoller(build_queue(QueueSettings(home=home)), "engineering:queue", consumer)
        thread = threading.Thread(target=poller.run_forever, kwargs={"wait_seconds": 1.0}, daemon=True)
        thread.start()
        sent: dict[str, float] = {}
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {stack.admin_key}"}) as c:
            c.post("/projects", json={"name": "lat"})
            for i in range(tasks):
                start = time.perf_counter()
                r = c.post("/projects/lat/engineering", json={"spec": f"s{i}"})
                sent[r.json()["id"]] = start
                time.sleep(0.005)
        done.wait(timeout=60)
        poller.stop()
        stack.stop()
        samples = [(received[t] - sent[t]) * 1000 for t in sent if t in received]
        p50, p99 = _percentiles(samples)
        return p50, p99, len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    print(f"embedded stack, {os.cpu_count()} cores")
    for label, clients, rate in throughput(args.seconds):
        print(f"  {label:<15} {clients} client(s): {rate:7.0f} req/s")
    p50, p99, n = enqueue_latency(args.tasks)
    print(f"  POST engineering -> consumer receives: p50 {p50:.1f} ms, p99 {p99:.1f} ms (n={n})")


if __name__ == "__main__":
    main()
