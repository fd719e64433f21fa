"""Wall time of the main job, `orchestrator run --agent none`, on a fresh data dir, and where it goes.

Run: .venv/bin/python tests/benchmarks/bench_run.py [rounds] [--events]
Prints per round the phases of the run: stack start, scaffold (Copier + git push), engineering's
tester (worker + make test), deploy (the Ansible run), smoke (the health GET after it), and what is
left (orchestration: queue hops, checkpoints, API calls, CLI polling), with the total; then the
medians. `--events` also prints every event of both tasks with its offset from the start of the run
(and the CPU used by then): the gaps between them are where orchestration waits. Each round starts its own embedded stack in a temp ORCH_HOME and stops it. The load average
is printed with each round: on a shared machine compare rounds run under similar load.

CPU: run as root where cgroup v1's cpuacct controller is writable, each round runs in its own cgroup
(the detached stack, its consumers, workers and Ansible runs included) sampled every 50 ms, and each
phase's CPU seconds (`*_cpu`) are printed beside its wall seconds: on a loaded machine the CPU a phase
needs is the steadier figure. Elsewhere only wall times are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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


def _created(env: dict[str, str], task_id: str) -> dict:  # type: ignore[type-arg]
    """The task's creation as one more event of the timeline (when the API stored it)."""
    out = subprocess.run(
        [*CLI, "task", "show", task_id, "--json"], env=env, capture_output=True, text=True, check=True
    )
    task = json.loads(out.stdout)
    return {"timestamp": task["created_at"], "message": f"(task {task['type']} created)"}


def _at(events: list[dict], fragment: str) -> float:  # type: ignore[type-arg]
    for event in events:
        if fragment in event["message"]:
            return datetime.fromisoformat(event["timestamp"]).timestamp()
    raise KeyError(fragment)


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


class CpuMeter:
    """CPU seconds used by a process tree, sampled with wall timestamps from a cgroup v1 cpuacct group the
    tree is started in (children of a daemonized process stay in it)."""

    def __init__(self) -> None:
        self.group = CPUACCT / f"bench-run-{os.getpid()}-{time.monotonic_ns()}"
        self.group.mkdir()
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def available() -> bool:
        return os.access(CPUACCT, os.W_OK)

    def join_me(self) -> None:
        """preexec_fn of the measured process: move it into the group before it execs."""
        (self.group / "cgroup.procs").write_text(str(os.getpid()))

    def _usage(self) -> float:
        return int((self.group / "cpuacct.usage").read_text()) / 1e9

    def _sample(self) -> None:
        while not self._done.is_set():
            self.samples.append((time.time(), self._usage()))
            self._done.wait(0.05)

    def at(self, when: float) -> float:
        """CPU seconds used by `when` (a wall timestamp), interpolated between samples."""
        before = [s for s in self.samples if s[0] <= when]
        after = [s for s in self.samples if s[0] >= when]
        if not before:
            return 0.0
        if not after:
            return before[-1][1]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def close(self) -> None:
        if self._done.is_set():
            return
        self._done.set()
        self._thread.join()
        for pid in (self.group / "cgroup.procs").read_text().split():  # left over: back to the root group
            with contextlib.suppress(OSError):
                (CPUACCT / "cgroup.procs").write_text(pid)
        with contextlib.suppress(OSError):
            self.group.rmdir()


def _timeline(events: list[dict], began: float, meter: CpuMeter | None) -> None:  # type: ignore[type-arg]
    for event in sorted(events, key=lambda e: datetime.fromisoformat(e["timestamp"]).timestamp()):
        at = datetime.fromisoformat(event["timestamp"]).timestamp()
        cpu = f"{meter.at(at):6.2f} cpu" if meter is not None else ""
        print(f"  {at - began:6.2f} s {cpu}  {event['message'][:100]}")


def one_round(show_events: bool = False) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="bench-run-"))
    start = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(
        {"ORCH_HOME": str(home), "ORCH_PORT_RANGE_START": str(start), "ORCH_PORT_RANGE_END": str(start + 50)}
    )
    meter = CpuMeter() if CpuMeter.available() else None
    try:
        began, began_wall = time.monotonic(), time.time()
        ran = subprocess.run(
            [*CLI, "run", "--name", "blog", "--spec", "a blog", "--agent", "none", "--json", "--port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=meter.join_me if meter else None,
        )
        total = time.monotonic() - began
        ended_wall = time.time()
        if ran.returncode != 0:
            raise RuntimeError(ran.stdout + ran.stderr)
        report = json.loads(ran.stdout)
        eng, dep = _events(env, report["engineering_task"]), _events(env, report["deploy_task"])
        smoke_detail = next(e["message"] for e in dep if "smoke test passed" in e["message"])
        spans = {
            "stack": (began_wall, began_wall + report["timings"]["stack_s"]),
            "scaffold": (_at(eng, "scaffolding the repository"), _at(eng, "repository ready")),
            "engineering": (_at(eng, "tester: running"), _at(eng, "tests passed")),
            "deploy": (_at(dep, "ansible: deploying"), _at(dep, "ansible: deployed")),
            "smoke": (_at(dep, "ansible: deployed"), _at(dep, "smoke test passed")),
        }
        row = {f"{name}_s": end - start for name, (start, end) in spans.items()}
        row["orchestration_s"] = total - sum(row.values())
        row["total_s"] = total
        if meter is not None:
            meter.close()
            cpu = {f"{name}_cpu": meter.at(end) - meter.at(start) for name, (start, end) in spans.items()}
            cpu["orchestration_cpu"] = meter.at(ended_wall) - sum(cpu.values())
            cpu["total_cpu"] = meter.at(ended_wall)
            row |= cpu
        if show_events:
            created = [_created(env, report[key]) for key in ("engineering_task", "deploy_task")]
            _timeline(eng + dep + created, began_wall, meter)
        load = os.getloadavg()[0]
        print(json.dumps({k: round(v, 2) for k, v in row.items()}), f"| load {load:.1f} |", smoke_detail)
        subprocess.run([*CLI, "deploy", "stop", "blog"], env=env, capture_output=True, timeout=120)
        return row
    finally:
        if meter is not None:
            meter.close()
        subprocess.run([*CLI, "local", "down"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    args = [arg for arg in sys.argv[1:] if arg != "--events"]
    rounds = int(args[0]) if args else 3
    rows = [one_round("--events" in sys.argv) for _ in range(rounds)]
    print("median:", json.dumps({k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]}))


if __name__ == "__main__":
    main()
