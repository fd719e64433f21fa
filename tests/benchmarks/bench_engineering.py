"""Engineering orchestration cost, with an instant fake developer agent.

    python -m tests.benchmarks.bench_engineering [--concurrent 50] [--sequential N]

Runs the embedded stack in-process with every consumer and one project (scaffolded by a first,
warm-up task). Then:

- `--concurrent N` (default 50): N engineering tasks created at once. Prints tasks/s, the wall time
  until the last one ended, whether every task completed with exactly two answers (one developer
  and one tester round), how many workers they took and on how many distinct branches they delivered,
  the orchestration CPU per task (this process, i.e. the API, the consumers and the graphs, less the
  benchmark's own polling and sampling in it, plus every worker process and what it ran, minus the
  agent's and the project's own test run's CPU in this run, which each answer carries as `cpu_s`), and
  the peak number of processes and their memory (RSS summed over every process of this stack's
  ORCH_HOME, sampled every 0.25 s). `..._alone` / `orchestration_by_alone_...`: the same with the
  agent's and tests' CPU measured alone on a checkout instead (the figure before the answers carried it;
  it errs high, as the same programs cost more among 50 tasks' processes).
- `--sequential N`: N tasks one after another; per task, wall time (created -> finished), the
  agent's and the test run's time (from the workers' results) and the rest (orchestration).

Numbers only; nothing about time is asserted. The machine's load is printed with them: on a shared
machine read CPU seconds rather than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FAKE_AGENT = Path(__file__).parents[1] / "fakes" / "agents" / "dev-agent"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@contextmanager
def _stack() -> Iterator[tuple[Any, Path]]:
    """An in-process embedded stack in a temp ORCH_HOME, with the instant fake agent; an API client."""
    from cli.local.stack import EmbeddedStack
    from shared.api_client import ApiClient

    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ.update(
            {
                "ORCH_HOME": str(home),
                "ORCH_AGENT_COMMAND": str(FAKE_AGENT),
                "FAKE_DEV_MODE": "good",
                # as in production (600 s): a worker waits for its first message as long as the backlog
                # of 50 tasks takes on a loaded machine; answered workers are deleted anyway
                "ORCH_WORKER_IDLE_TIMEOUT_S": "600",
            }
        )
        stack = EmbeddedStack(home, port=0, tick_s=0.5)
        url = stack.start()
        try:
            with ApiClient(url, stack.admin_key) as api:
                yield api, home
        finally:
            stack.stop()
            from tests.process_hygiene import kill_workers

            kill_workers(home)
            os.environ.clear()
            os.environ.update(saved)


def _wait_final(api: Any, task_id: str, every_s: float = 0.05, timeout_s: float = 300.0) -> Any:
    """The task once it ended; a task stuck for `timeout_s` ends the benchmark with its last events (a
    lost answer once hung a run instead of failing it)."""
    deadline = time.monotonic() + timeout_s
    while not (task := api.get_task(task_id)).status.is_final:
        if time.monotonic() > deadline:
            last = [f"{e.current_step}: {e.message}" for e in api.task_events(task_id, limit=3, latest=True)]
            raise RuntimeError(f"task {task_id} still {task.status.value} after {timeout_s:g}s; last: {last}")
        time.sleep(every_s)
    return task


def _completed(api: Any, task_id: str, label: str) -> Any:
    done = _wait_final(api, task_id)
    if done.status.value != "COMPLETED":
        raise RuntimeError(f"{label} ended {done.status.value}: {done.error}")
    return done


def run(tasks: int) -> list[dict[str, float]]:
    """`tasks` engineering tasks one after another; a row of milliseconds per task."""
    rows: list[dict[str, float]] = []
    with _stack() as (api, _home):
        api.create_project("bench")
        for i in range(tasks):
            task = api.start_engineering("bench", f"feature {i}", agent="command")
            done = _completed(api, task.id, f"task {i}")
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
    return rows


# -- many at once ---------------------------------------------------------------------------------------


class ProcessSampler:
    """Every 0.25 s: how many processes belong to this stack (this one and every process whose
    environment names its ORCH_HOME) and their summed RSS. Keeps the peaks."""

    def __init__(self, home: Path) -> None:
        self.marker = f"ORCH_HOME={home}".encode()
        self.peak_processes = 0
        self.peak_rss_mib = 0.0
        self.cpu_s = 0.0
        """The sampler's own CPU (it shares the stack's process), known once it stopped."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        try:
            self._sample_until_stopped()
        finally:
            self.cpu_s = time.thread_time()  # this thread's whole life: the benchmark's, not the stack's

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(0.25):
            count, rss_pages = 1, _rss_pages(Path("/proc/self"))
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit() or int(proc.name) == os.getpid():
                    continue
                try:
                    if self.marker not in (proc / "environ").read_bytes().split(b"\0"):
                        continue
                except OSError:
                    continue
                count += 1
                rss_pages += _rss_pages(proc)
            self.peak_processes = max(self.peak_processes, count)
            self.peak_rss_mib = max(self.peak_rss_mib, rss_pages * PAGE_KB / 1024)


def _rss_pages(proc: Path) -> int:
    try:
        return int((proc / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _cpu_s() -> tuple[float, float]:
    """CPU seconds of this process (the stack: API, consumers, graphs) and of its workers: its reaped
    children (the Ansible runner, workers started as their own processes, with what they ran) plus the
    worker fork server and the workers it forked and reaped, with what they ran."""
    from functions.worker_manager.handler import container

    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    forked = getattr(container.get().runtime, "forked_cpu_s", lambda: 0.0)()
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime + forked


def _cpu_of(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """CPU seconds of one run of `command` (with its children), from its own rusage: whatever else this
    process reaps meanwhile (the stack's last workers, its fork server) is not counted."""
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, command)
    return usage.ru_utime + usage.ru_stime


def _agent_and_test_cpu(work: Path, test_command: str, runs: int = 5) -> float:
    """The CPU of what a task runs that is not orchestration: the fake agent and the project's tests on a
    checkout of the project (run with no stack around, so nothing else is reaped), the median of `runs`
    (one run varied by a tenth of a second). Measured on a quiet machine, it is if anything less than the
    same programs take among 50 tasks' processes, so the orchestration figure errs on the high side."""
    (work / "TASK.md").write_text("feature\n")
    samples = []
    for _ in range(runs):
        agent = _cpu_of([str(FAKE_AGENT)], work, {**os.environ, "FAKE_DEV_MODE": "good"})
        samples.append(agent + _cpu_of(["sh", "-c", test_command], work))
        subprocess.run(["git", "checkout", "-q", "."], cwd=work, check=True)
        subprocess.run(["git", "clean", "-qfdx", "-e", "TASK.md"], cwd=work, check=True)
    return statistics.median(samples)


def _workers_of(home: Path) -> int:
    """How many worker wrappers of this stack are alive: exec'd or forked, each writes to its own log."""
    logs = f"{os.path.realpath(home / 'logs' / 'workers')}/"
    count = 0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"worker_image." in (proc / "cmdline").read_bytes():
                count += os.readlink(proc / "fd" / "1").startswith(logs)
        except OSError:
            continue
    return count


def _until_no_workers(home: Path, timeout_s: float = 60.0) -> None:
    """Deleted workers exit on their own; wait for them, so their CPU is counted (reaped)."""
    deadline = time.monotonic() + timeout_s
    while _workers_of(home) and time.monotonic() < deadline:
        time.sleep(0.2)


def _workers_and_answers(api: Any, task_id: str) -> tuple[int, int, float]:
    """How many workers the task started, how many messages they answered, and the CPU seconds of what
    those answers ran (the agent, the tests: `cpu_s`, measured by the worker as it reaped them)."""
    workers = api.list_workers(task_id=task_id)
    answers = [m for w in workers for m in api.list_worker_messages(w.id) if m.result is not None]
    return len(workers), len(answers), sum(float(m.result.get("cpu_s") or 0.0) for m in answers)


def run_concurrent(tasks: int) -> dict[str, float]:
    """`tasks` engineering tasks created at once; the throughput figures."""
    from shared.contracts.payloads import EngineeringTaskResult

    checkout = Path(tempfile.mkdtemp(prefix="bench-eng-checkout-"))
    with _stack() as (api, home):
        api.create_project("bench")
        warm = api.start_engineering("bench", "warm-up", agent="command")
        warm_done = _completed(api, warm.id, "the warm-up task")
        repo_url = EngineeringTaskResult.model_validate(warm_done.result).repo_url or ""
        subprocess.run(["git", "clone", "-q", repo_url, str(checkout)], check=True, capture_output=True)
        _until_no_workers(home)
        cpu_before, began = _cpu_s(), time.monotonic()
        with ProcessSampler(home) as sampler:
            ids = [api.start_engineering("bench", f"feature {i}", agent="command").id for i in range(tasks)]
            # polled every 0.5 s, in this thread: the API answers an in-process call in the caller's thread,
            # so this thread's CPU meanwhile is the polling's (client and server), the benchmark's own
            polling_began = time.thread_time()
            finals = [_wait_final(api, task_id, every_s=0.5) for task_id in ids]
            polling_cpu = time.thread_time() - polling_began
        wall = time.monotonic() - began
        _until_no_workers(home)
        cpu_after = _cpu_s()
        completed = [t for t in finals if t.status.value == "COMPLETED"]
        for error in sorted({str(t.error)[:300] for t in finals if t not in completed})[:5]:
            print(f"  not completed: {error}")
        branches = {EngineeringTaskResult.model_validate(t.result).branch for t in completed}
        counts = [_workers_and_answers(api, t.id) for t in completed]
        shapes = Counter(f"{workers} worker(s), {answers} answer(s)" for workers, answers, _ in counts)
        in_run = sum(cpu for _, _, cpu in counts) / max(1, len(counts))
        print("  completed tasks by workers and answers:", dict(shapes))
    outside = _agent_and_test_cpu(checkout, "make test")
    shutil.rmtree(checkout, ignore_errors=True)
    # the stack's process less what the benchmark itself did in it (its polling, its process sampler)
    bench_cpu = polling_cpu + sampler.cpu_s
    stack_cpu, children_cpu = (cpu_after[0] - cpu_before[0] - bench_cpu), (cpu_after[1] - cpu_before[1])
    cpu = stack_cpu + children_cpu
    return {
        "tasks": tasks,
        "completed": len(completed),
        "tasks_answered_exactly_twice": sum(answers == 2 for _, answers, _ in counts),
        "workers": sum(workers for workers, _, _ in counts),
        "distinct_branches": len(branches - {None}),
        "wall_s": wall,
        "tasks_per_s": tasks / wall,
        "cpu_s": cpu,
        "stack_cpu_s_per_task": stack_cpu / tasks,
        "benchmark_own_cpu_s_per_task": bench_cpu / tasks,
        "worker_processes_cpu_s_per_task": children_cpu / tasks,
        "agent_and_tests_cpu_s_per_task": in_run,
        "agent_and_tests_alone_cpu_s_per_task": outside,
        "orchestration_cpu_s_per_task": (cpu - tasks * in_run) / tasks,
        "orchestration_by_alone_cpu_s_per_task": (cpu - tasks * outside) / tasks,
        "peak_processes": sampler.peak_processes,
        "peak_rss_mib": sampler.peak_rss_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrent", type=int, default=50, help="tasks created at once (0: skip)")
    parser.add_argument("--sequential", type=int, default=0, help="tasks one after another (0: skip)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    if args.sequential:
        rows = run(args.sequential)
        print(f"engineering, {len(rows)} tasks one after another (the first includes the scaffold)")
        for key in ("total", "agent", "tests", "overhead"):
            values = [r[key] for r in rows]
            print(
                f"  {key:<9} p50 {statistics.median(values):8.0f} ms   mean {statistics.mean(values):8.0f} ms"
                f"   max {max(values):8.0f} ms"
            )
    if args.concurrent:
        figures = run_concurrent(args.concurrent)
        print(f"engineering, {args.concurrent} tasks at once, instant fake agent")
        for key, value in figures.items():
            print(f"  {key:<40} {value:10.3f}" if isinstance(value, float) else f"  {key:<40} {value:10d}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
