"""Engineering orchestration overhead per task, with an instant fake developer agent.

    python -m tests.benchmarks.bench_engineering [--tasks 50]

Runs the embedded stack in-process with every consumer; one project (scaffolded once), then
N engineering tasks one after another. Per task: wall time (created -> finished), the agent's
time and the test run's time (from the workers' results), and the rest: orchestration
(queues, graph steps, checkpoints, worker spawn, git clone/commit/push). Prints numbers only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

FAKE_AGENT = Path(__file__).parents[1] / "fakes" / "agents" / "dev-agent"


def run(tasks: int) -> list[dict[str, float]]:
    from cli.local.stack import EmbeddedStack
    from shared.api_client import ApiClient

    saved = dict(os.environ)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ.update(
            {
                "ORCH_HOME": str(home),
                "ORCH_AGENT_COMMAND": str(FAKE_AGENT),
                "FAKE_DEV_MODE": "good",
                "ORCH_WORKER_IDLE_TIMEOUT_S": "30",
            }
        )
        stack = EmbeddedStack(home, port=0, tick_s=0.5)
        url = stack.start()
        try:
            with ApiClient(url, stack.admin_key) as api:
                api.create_project("bench")
                for i in range(tasks):
                    task = api.start_engineering("bench", f"feature {i}", agent="command")
                    while not api.get_task(task.id).status.is_final:
                        time.sleep(0.05)
                    done = api.get_task(task.id)
                    if done.status.value != "COMPLETED":
                        raise RuntimeError(f"task {i} ended {done.status.value}: {done.error}")
                    agent_ms = tests_ms = 0.0
                    for worker in api.list_workers(task_id=task.id):
                        for message in api.list_worker_messages(worker.id):
                            duration = float((message.result or {}).get("duration_ms") or 0)
                            if "tester" in str(message.request_id):
                                tests_ms += duration
                            else:
                                agent_ms += duration
                    assert done.finished_at and done.created_at
                    total_ms = (done.finished_at - done.created_at).total_seconds() * 1000
                    rows.append(
                        {
                            "total": total_ms,
                            "agent": agent_ms,
                            "tests": tests_ms,
                            "overhead": total_ms - agent_ms - tests_ms,
                            "first": 1.0 if i == 0 else 0.0,
                        }
                    )
        finally:
            stack.stop()
            from tests.process_hygiene import kill_workers

            kill_workers(home)
            os.environ.clear()
            os.environ.update(saved)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    rows = run(args.tasks)
    print(f"engineering, {len(rows)} tasks, instant fake agent (first task includes the scaffold)")
    for key in ("total", "agent", "tests", "overhead"):
        values = [r[key] for r in rows]
        print(
            f"  {key:<9} p50 {statistics.median(values):8.0f} ms   mean {statistics.mean(values):8.0f} ms"
            f"   max {max(values):8.0f} ms"
        )


if __name__ == "__main__":
    main()
