"""Per-worker overhead of the local runtime, with an instant agent.

    python -m tests.benchmarks.bench_workers [--workers 10]

For each worker: create command -> create response (spawn + record), message -> first progress
event (wrapper picks it up, checkout, agent start), message -> response (total), and the part
that is not the agent (total minus the agent's own duration). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from shared.contracts import WORKER_COMMANDS, CreateWorkerCommand, SendMessageCommand, WorkerConfig


def run(workers: int) -> dict[str, list[float]]:
    from cli.local.stack import EmbeddedStack
    from tests.integration.workers.conftest import StackHarness, make_repo

    saved = dict(os.environ)
    samples: dict[str, list[float]] = {"create": [], "first_event": [], "total": [], "overhead": []}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["ORCH_HOME"] = str(home)
        stack = EmbeddedStack(home, port=0, tick_s=0.5, consumers=["worker_manager"])
        stack.start()
        harness = StackHarness(stack, home)
        repo = make_repo(Path(tmp))
        try:
            for i in range(workers):
                task_id = harness.task("bench")
                start = time.perf_counter()
                harness.queue.publish(
                    WORKER_COMMANDS,
                    CreateWorkerCommand(
                        config=WorkerConfig(
                            name="bench", agent="command", agent_options={"command": "echo instant"}
                        ),  # type: ignore[call-arg]
                        context={
                            "task_id": task_id,
                            "repo_url": repo,
                            "branch": f"bench/{i}",
                            "step": "developer",
                        },
                    ),
                )
                [created] = harness.responses(1)
                samples["create"].append((time.perf_counter() - start) * 1000)
                sent = time.perf_counter()
                harness.queue.publish(
                    WORKER_COMMANDS, SendMessageCommand(worker_id=created.worker_id, message="go")
                )
                first: float | None = None
                reply: Any = None
                while reply is None:
                    if first is None and any(
                        e.type == "progress" for e in harness.admin.task_events(task_id)
                    ):
                        first = time.perf_counter()
                    got = harness.responses(1, timeout=0.02)
                    reply = got[0] if got else None
                done = time.perf_counter()
                total = (done - sent) * 1000
                samples["total"].append(total)
                samples["first_event"].append(((first or done) - sent) * 1000)
                samples["overhead"].append(total - float(reply.result["duration_ms"]))
                from shared.contracts import DeleteWorkerCommand

                harness.queue.publish(WORKER_COMMANDS, DeleteWorkerCommand(worker_id=created.worker_id))
                harness.responses(1)
        finally:
            stack.stop()
            from tests.process_hygiene import kill_workers

            kill_workers(home)
            os.environ.clear()
            os.environ.update(saved)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()
    samples = run(args.workers)
    print(f"local worker runtime, {args.workers} workers, instant `command` agent")
    labels = {
        "create": "create -> create response (spawn)",
        "first_event": "message -> first progress event",
        "total": "message -> response (total)",
        "overhead": "total minus agent time",
    }
    for key, label in labels.items():
        values = samples[key]
        print(f"  {label:<36} p50 {statistics.median(values):7.1f} ms   max {max(values):7.1f} ms")


if __name__ == "__main__":
    main()
