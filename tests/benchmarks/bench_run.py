"""Wall time of the main job, `orchestrator run --agent none`, on a fresh data dir, and where it goes.

Run: .venv/bin/python tests/benchmarks/bench_run.py [rounds]
Prints per round the phases of the run: stack start, scaffold (Copier + git push), engineering's
tester (worker + make test), deploy (the Ansible run), smoke (the health GET after it), and what is
left (orchestration: queue hops, checkpoints, API calls, CLI polling), with the total; then the
medians. Each round starts its own embedded stack in a temp ORCH_HOME and stops it. The load average
is printed with each round: on a shared machine compare rounds run under similar load.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = [str(Path(sys.executable).parent / "orchestrator")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _events(env: dict[str, str], task_id: str) -> list[dict]:  # type: ignore[type-arg]
    out = subprocess.run(
        [*CLI, "task", "logs", task_id, "--json"], env=env, capture_output=True, text=True, check=True
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _at(events: list[dict], fragment: str) -> float:  # type: ignore[type-arg]
    for event in events:
        if fragment in event["message"]:
            return datetime.fromisoformat(event["timestamp"]).timestamp()
    raise KeyError(fragment)


def one_round() -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="bench-run-"))
    start = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(
        {"ORCH_HOME": str(home), "ORCH_PORT_RANGE_START": str(start), "ORCH_PORT_RANGE_END": str(start + 50)}
    )
    try:
        began = time.monotonic()
        ran = subprocess.run(
            [*CLI, "run", "--name", "blog", "--spec", "a blog", "--agent", "none", "--json", "--port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        total = time.monotonic() - began
        if ran.returncode != 0:
            raise RuntimeError(ran.stdout + ran.stderr)
        report = json.loads(ran.stdout)
        eng, dep = _events(env, report["engineering_task"]), _events(env, report["deploy_task"])
        smoke_detail = next(e["message"] for e in dep if "smoke test passed" in e["message"])
        row = {
            "stack_s": report["timings"]["stack_s"],
            "scaffold_s": _at(eng, "repository ready") - _at(eng, "scaffolding the repository"),
            "engineering_s": _at(eng, "tests passed") - _at(eng, "tester: running"),
            "deploy_s": _at(dep, "ansible: deployed") - _at(dep, "ansible: deploying"),
            "smoke_s": _at(dep, "smoke test passed") - _at(dep, "ansible: deployed"),
        }
        row["orchestration_s"] = total - sum(row.values())
        row["total_s"] = total
        load = os.getloadavg()[0]
        print(json.dumps({k: round(v, 2) for k, v in row.items()}), f"| load {load:.1f} |", smoke_detail)
        subprocess.run([*CLI, "deploy", "stop", "blog"], env=env, capture_output=True, timeout=120)
        return row
    finally:
        subprocess.run([*CLI, "local", "down"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    rows = [one_round() for _ in range(rounds)]
    print("median:", json.dumps({k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]}))


if __name__ == "__main__":
    main()
