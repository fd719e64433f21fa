"""Our API beside the seed's own (FastAPI + asyncpg + Redis), over HTTP, same machine, same client,
interleaved: the ratio table of issue 24 (ours/seed on p50; below 1 = we are faster).

    python -m tests.benchmarks.bench_seed [--seed DIR] [--seed-python PY] [--rounds 3] [--requests 100]
                                          [--seconds 3] [--quick] [--postgres-url URL]

Three servers run at once: the seed's API (`uvicorn src.main:app` from the seed's source, PostgreSQL
database `seedbench`, Redis on a free port), ours on PostgreSQL (a fresh database beside
ORCH_TEST_POSTGRES_URL's, dropped afterwards) and ours on SQLite (`orchestrator local up --consumers none`
each). Every round starts them on empty databases; within a measure the requests alternate between the
servers, one each in turn (the first of each turn rotates), so load from elsewhere on the machine hits
all three alike. Figures are medians over the rounds of each round's p50 / p99, and the server process's
CPU time per request (/proc), which noise from other processes does not inflate.

The seed's equivalent of "create an engineering task" is its POST /api/tasks/; its dispatch is what its
CLI did (POST /api/tasks/, then XADD to the `engineering:queue` stream) with a consumer in another process
reading the stream by XREADGROUP (group capability-workers). Ours: POST /projects/{name}/engineering (task,
outbox row, publish), consumed by a QueuePoller in another process. The seed's source is an input
(docs/benchmarks.md says which commit and how tests/benchmarks/seed_setup.sh prepares it); without it,
or without PostgreSQL, the benchmark says so and exits 0. Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from shared.contracts.api import PROJECTS_PAGE_MAX
from tests.benchmarks.bench_api import COLD_IMPORT, LISTED_PROJECTS
from tests.benchmarks.bench_embedded import _consume_tasks, _cpu_s

SEED_DIR = Path(os.environ.get("ORCH_SEED_DIR", "/var/tmp/seed"))
SEED_DATABASE = "seedbench"
QUEUE = "engineering:queue"
OLD_RATIOS = {  # issue 24, as filed: (ours on Postgres, ours on SQLite)
    "cold import of the API module": ("0.64", "0.64"),
    "create project": ("1.12", "0.55"),
    "get project by id": ("2.25", "0.99"),
    f"list {LISTED_PROJECTS} projects": ("6.1", "1.65"),
    "create an engineering task": ("3.0", "1.35"),
    "API call -> consumer has the message": ("2.2", "1.08"),
    "list throughput, 8 connections": ("0.24x", "0.60x"),
    "API process memory (RSS)": ("2.4x", ""),
}
PASSED_ON = ("ORCH_API_CONCURRENCY",)
"""Our server's settings taken from this process's environment (every other ORCH_ variable is dropped)."""
SEED_COLD_IMPORT = COLD_IMPORT.replace("functions.api.handler", "src.main")
# The seed's consumer: its redis.asyncio client reading the stream with a consumer group, as its
# engineering consumer did; prints "ready", then one JSON object {task_id: wall-clock receipt time}.
SEED_CONSUMER = """
import asyncio, json, sys, time
import redis.asyncio as aioredis

async def main(port, wanted):
    r = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        await r.xgroup_create("engineering:queue", "capability-workers", id="$", mkstream=True)
    except aioredis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    print("ready", flush=True)
    got = {}
    deadline = time.monotonic() + 180
    while len(got) < wanted and time.monotonic() < deadline:
        reply = await r.xreadgroup("capability-workers", "bench", {"engineering:queue": ">"}, count=10, block=1000)
        for _stream, messages in reply or []:
            for message_id, fields in messages:
                got[json.loads(fields[b"data"])["task_id"]] = time.time()
                await r.xack("engineering:queue", "capability-workers", message_id)
    print(json.dumps(got), flush=True)
    await r.aclose()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mib(pid: int) -> float:
    """Resident memory of a process and its direct children, MiB (Linux /proc)."""
    pids = [pid] + [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == pid]
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _ppid(proc_dir: Path) -> int:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


class RespClient:
    """Just enough of the Redis protocol for XADD: the benchmark's client stays free of the redis package."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.reader = self.sock.makefile("rb")

    def command(self, *args: str) -> bytes:
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            data = a.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        line = self.reader.readline()
        if line.startswith(b"-"):
            raise RuntimeError(line.decode().strip())
        if line.startswith(b"$"):
            return self.reader.read(int(line[1:]) + 2)[:-2]
        return line.strip()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@dataclass
class Target:
    """One API under test: how to start it, and its HTTP calls for each measure."""

    label: str
    url: str = ""
    pid: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    client: httpx.Client | None = None
    redis: RespClient | None = None
    home: Path | None = None

    @property
    def http(self) -> httpx.Client:
        assert self.client is not None
        return self.client

    @property
    def is_seed(self) -> bool:
        return self.redis is not None

    def create_project(self, name: str) -> str:
        if self.is_seed:
            body = _ok(self.http.post("/api/projects/", json={"id": name, "name": name}))
        else:
            body = _ok(self.http.post("/projects", json={"name": name}))
        return str(body["id"])

    def get_project(self, project_id: str) -> None:
        _ok(self.http.get(f"/api/projects/{project_id}" if self.is_seed else f"/projects/{project_id}"))

    def list_projects(self) -> tuple[int, int]:
        """(projects listed, requests made): ours pages with a cursor (pages of PROJECTS_PAGE_MAX, the most it allows)."""
        return _list_all(self.http, self.is_seed)

    def create_task(self, project: str) -> str:
        if self.is_seed:
            task_id = f"eng-{uuid.uuid4().hex[:12]}"
            body = {
                "id": task_id,
                "type": "engineering",
                "project_id": project,
                "task_metadata": {"spec": "x"},
                "callback_stream": f"task_progress:{task_id}",
            }
            return str(_ok(self.http.post("/api/tasks/", json=body))["id"])
        return str(_ok(self.http.post(f"/projects/{project}/engineering", json={"spec": "x"}))["id"])

    def dispatch(self, project: str) -> str:
        """Start engineering the way each side's CLI does; the message then waits for a consumer."""
        task_id = self.create_task(project)
        if self.redis is not None:
            message = {"task_id": task_id, "project_id": project, "spec": "x"}
            self.redis.command("XADD", QUEUE, "*", "data", json.dumps(message))
        return task_id


def _ok(reply: httpx.Response) -> Any:
    assert reply.status_code < 300, (reply.status_code, reply.text[:300])
    return reply.json()


def _list_all(client: httpx.Client, seed: bool) -> tuple[int, int]:
    if seed:
        return len(_ok(client.get("/api/projects/"))), 1
    listed, requests, cursor = 0, 0, None
    while True:
        params: dict[str, Any] = {"limit": PROJECTS_PAGE_MAX} | ({"cursor": cursor} if cursor else {})
        body = _ok(client.get("/projects", params=params))
        requests += 1
        listed += len(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return listed, requests


def _wait_healthy(url: str, proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode}) before answering /health")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}: no /health answer within {timeout} s")


@contextmanager
def _process(cmd: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(cmd, text=True, **kwargs)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Setup:
    seed_dir: Path
    seed_python: str
    seed_database_url: str
    """asyncpg URL the seed's API uses"""
    postgres_url: str
    """our PostgreSQL admin URL (pg8000): fresh databases are made beside it"""
    redis_port: int = 0


def _reset_seed_database(setup: Setup) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(setup.seed_database_url).set(drivername="postgresql+pg8000")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE tasks, projects, users RESTART IDENTITY CASCADE"))
    engine.dispose()


@contextmanager
def _seed_server(setup: Setup) -> Iterator[Target]:
    _reset_seed_database(setup)
    port = _free_port()
    env = dict(
        os.environ, DATABASE_URL=setup.seed_database_url, LOG_FORMAT="json", PYTHONPATH=str(setup.seed_dir)
    )
    cmd = [setup.seed_python, "-m", "uvicorn", "src.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with _process(
        cmd, cwd=setup.seed_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        target = Target("seed", url, proc.pid, redis=RespClient(setup.redis_port))
        try:
            yield target
        finally:
            assert target.redis is not None
            target.redis.close()


@contextmanager
def _our_server(label: str, database_url: str | None) -> Iterator[Target]:
    home = Path(tempfile.mkdtemp(prefix="bench-seed-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_") or k in PASSED_ON}
    env["ORCH_HOME"] = str(home)
    cmd = [sys.executable, "-m", "cli.main", "local", "up", "--port", "0", "--json", "--consumers", "none"]
    cmd += ["--database-url", database_url] if database_url else []
    log = home.parent / f"{home.name}.log"
    try:
        with log.open("w") as err, _process(cmd, env=env, stdout=subprocess.PIPE, stderr=err) as proc:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("{"):
                raise RuntimeError(f"{label}: `local up` did not start: {log.read_text()[-2000:]}")
            url = json.loads(line)["url"]
            key = json.loads((home / "config.json").read_text())["api_key"]
            yield Target(label, url, proc.pid, headers={"authorization": f"Bearer {key}"}, home=home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        log.unlink(missing_ok=True)


@dataclass
class Sample:
    """One measure on one target in one round."""

    p50: float
    p99: float
    cpu_ms: float
    """the server process's CPU time per request (or per listing)"""


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _interleaved(targets: list[Target], n: int, call: Callable[[Target, int], object]) -> dict[str, Sample]:
    """n calls on each target, one each in turn; the first of each turn rotates."""
    wall: dict[str, list[float]] = {t.label: [] for t in targets}
    cpu_before = {t.label: _cpu_s(t.pid) for t in targets}
    for i in range(n):
        for k in range(len(targets)):
            t = targets[(i + k) % len(targets)]
            start = time.perf_counter()
            call(t, i)
            wall[t.label].append((time.perf_counter() - start) * 1000)
    out = {}
    for t in targets:
        ordered = sorted(wall[t.label])
        cpu = (_cpu_s(t.pid) - cpu_before[t.label]) * 1000 / n
        out[t.label] = Sample(_percentile(ordered, 0.5), _percentile(ordered, 0.99), cpu)
    return out


def _drain(home: Path) -> None:
    """Drop what earlier measures left on our engineering queue (nothing consumed it: --consumers none)."""
    from shared.queues import build_queue
    from shared.settings import QueueSettings

    queue = build_queue(QueueSettings(home=home))
    while batch := queue.receive(QUEUE, 10, wait_seconds=0):
        queue.delete_batch(QUEUE, [m.receipt_handle for m in batch])


def _dispatch(targets: list[Target], setup: Setup, n: int) -> dict[str, Sample]:
    """API call -> a consumer in another process has the message, per task (wall clock both ends)."""
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        for t in targets:
            if t.is_seed:
                proc = stack.enter_context(
                    _process(
                        [setup.seed_python, "-c", SEED_CONSUMER, str(setup.redis_port), str(n)],
                        stdout=subprocess.PIPE,
                    )
                )
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
                results[t.label] = proc
            else:
                assert t.home is not None
                _drain(t.home)
                ready, queue = ctx.Event(), ctx.Queue()
                worker = ctx.Process(target=_consume_tasks, args=(str(t.home), n, ready, queue))
                worker.start()
                stack.callback(worker.join, 30)
                ready.wait(60)
                results[t.label] = queue
        sent: dict[str, dict[str, float]] = {t.label: {} for t in targets}

        def one(t: Target, _i: int) -> None:
            start = time.time()
            sent[t.label][t.dispatch("bench")] = start
            time.sleep(0.01)  # the consumer takes each message alone, as a started task's would be

        timed = _interleaved(targets, n, one)
        out = {}
        for t in targets:
            source = results[t.label]
            if isinstance(source, subprocess.Popen):
                assert source.stdout is not None
                received: dict[str, float] = json.loads(source.stdout.readline())
            else:
                received = source.get(timeout=180)
            samples = sorted((received[k] - v) * 1000 for k, v in sent[t.label].items() if k in received)
            assert len(samples) == n, f"{t.label}: {len(samples)} of {n} messages reached the consumer"
            out[t.label] = Sample(
                _percentile(samples, 0.5), _percentile(samples, 0.99), timed[t.label].cpu_ms
            )
        return out


def _throughput(targets: list[Target], seconds: float, connections: int = 8) -> dict[str, Sample]:
    """Listings of all projects a second with `connections` clients (p50 field: listings/s; p99: req/s)."""
    out = {}
    for t in targets:
        counts = [[0, 0] for _ in range(connections)]
        stop = time.monotonic() + seconds

        def run(i: int, t: Target = t, stop: float = stop, counts: list[list[int]] = counts) -> None:
            with httpx.Client(base_url=t.url, headers=t.headers) as c:
                while True:  # at least one listing each, however late the thread starts
                    _listed, requests = _list_all(c, t.is_seed)
                    counts[i][0] += 1
                    counts[i][1] += requests
                    if time.monotonic() >= stop:
                        return

        cpu_before, start = _cpu_s(t.pid), time.monotonic()
        threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.monotonic() - start
        listings = sum(c[0] for c in counts)
        cpu = (_cpu_s(t.pid) - cpu_before) * 1000 / max(1, listings)
        out[t.label] = Sample(listings / elapsed, sum(c[1] for c in counts) / elapsed, cpu)
    return out


def cold_imports(setup: Setup, runs: int) -> dict[str, Sample]:
    """Import of the API module in a fresh interpreter, interleaved (p50: import ms; cpu: the whole
    process's CPU ms, interpreter start included)."""
    commands = {
        "seed": ([setup.seed_python, "-c", SEED_COLD_IMPORT], setup.seed_dir),
        "ours": ([sys.executable, "-c", COLD_IMPORT], Path.cwd()),
    }
    env = dict(os.environ, DATABASE_URL=setup.seed_database_url)
    wall: dict[str, list[float]] = {k: [] for k in commands}
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    for i in range(runs):
        for label in sorted(commands, reverse=i % 2 == 1):
            cmd, cwd = commands[label]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall[label].append(float(out.stdout.strip().splitlines()[-1]) * 1000)
            cpu[label].append((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000)
    return {
        label: Sample(statistics.median(wall[label]), max(wall[label]), statistics.median(cpu[label]))
        for label in commands
    }


MEASURES = [
    "create project",
    "get project by id",
    f"list {LISTED_PROJECTS} projects",
    "create an engineering task",
    "API call -> consumer has the message",
    "list throughput, 8 connections",
]


def one_round(setup: Setup, n: int, seconds: float) -> tuple[dict[str, dict[str, Sample]], dict[str, float]]:
    """Every measure on all three targets, on empty databases; and each server's RSS at the end."""
    from tests.api_support import drop_postgres_database, fresh_postgres_database

    ours_pg_url = fresh_postgres_database(setup.postgres_url)
    try:
        with ExitStack() as stack:
            targets = [
                stack.enter_context(_seed_server(setup)),
                stack.enter_context(_our_server("ours-pg", ours_pg_url)),
                stack.enter_context(_our_server("ours-sqlite", None)),
            ]
            for t in targets:
                t.client = stack.enter_context(httpx.Client(base_url=t.url, headers=t.headers))
            return _measure(targets, setup, n, seconds), {t.label: _rss_mib(t.pid) for t in targets}
    finally:
        drop_postgres_database(setup.postgres_url, ours_pg_url)


def _measure(targets: list[Target], setup: Setup, n: int, seconds: float) -> dict[str, dict[str, Sample]]:
    ids: dict[str, list[str]] = {t.label: [] for t in targets}
    results = {}
    for t in targets:  # the project the tasks belong to, and a warm connection
        t.create_project("bench")
    results["create project"] = _interleaved(
        targets, n, lambda t, i: ids[t.label].append(t.create_project(f"p-{i}"))
    )
    for t in targets:
        for i in range(n, LISTED_PROJECTS - 1):
            t.create_project(f"p-{i}")
        assert t.list_projects()[0] == LISTED_PROJECTS, t.label
    results["get project by id"] = _interleaved(targets, n, lambda t, i: t.get_project(ids[t.label][i]))
    results[f"list {LISTED_PROJECTS} projects"] = _interleaved(
        targets, max(1, n // 4), lambda t, i: t.list_projects()
    )
    results["create an engineering task"] = _interleaved(targets, n, lambda t, i: t.create_task("bench"))
    results["API call -> consumer has the message"] = _dispatch(targets, setup, n)
    results["list throughput, 8 connections"] = _throughput(targets, seconds)
    return results


def _median_samples(samples: list[Sample]) -> Sample:
    return Sample(*(statistics.median(getattr(s, f) for s in samples) for f in ("p50", "p99", "cpu_ms")))


def _cell(measure: str, s: Sample) -> str:
    if measure.startswith("list throughput"):
        return f"{s.p50:6.1f} lists/s ({s.p99:4.0f} req/s) cpu {s.cpu_ms:5.1f}"
    return f"p50 {s.p50:6.2f} p99 {s.p99:6.1f} cpu {s.cpu_ms:5.2f}"


def report(
    imports: dict[str, Sample],
    rounds: list[dict[str, dict[str, Sample]]],
    rss: list[dict[str, float]],
    n: int,
) -> None:
    """Each server's figures (ms; cpu: the server's CPU ms per request), then the ratio table."""
    labels = ["seed", "ours-pg", "ours-sqlite"]
    med = {m: {label: _median_samples([r[m][label] for r in rounds]) for label in labels} for m in MEASURES}
    memory = {label: statistics.median(r[label] for r in rss) for label in labels}
    print(
        f"\nper server, ms (medians of {len(rounds)} rounds, n={n} per measure; cpu: server CPU ms per request)"
    )
    print(f"  {'measure':<38}" + "".join(f"{label:>38}" for label in labels))
    seed_import, our_import = imports["seed"], imports["ours"]
    cells = [f"{s.p50:6.0f} (process cpu {s.cpu_ms:4.0f})" for s in (seed_import, our_import, our_import)]
    print(f"  {'cold import of the API module':<38}" + "".join(f"{c:>38}" for c in cells))
    for m in MEASURES:
        print(f"  {m:<38}" + "".join(f"{_cell(m, med[m][label]):>38}" for label in labels))
    print(f"  {'API process memory (RSS), MiB':<38}" + "".join(f"{memory[label]:>38.0f}" for label in labels))

    print("\nratio ours/seed (below 1 = we are better); throughput and memory: multiples of the seed's")
    print(f"  {'':<38}{'on p50 (wall)':^34}{'on server CPU per request':^34}")
    head = "".join(f"{h:>17}" for h in ("ours on Postgres", "ours on SQLite") * 2)
    print(f"  {'measure':<38}{head}   issue 24 as filed (pg / sqlite)")
    rows = [("cold import of the API module", our_import, our_import, seed_import)]
    rows += [(m, med[m]["ours-pg"], med[m]["ours-sqlite"], med[m]["seed"]) for m in MEASURES]
    for m, pg, lite, seed in rows:
        unit = "x" if m.startswith("list throughput") else " "
        wall = f"{pg.p50 / seed.p50:>16.2f}{unit}{lite.p50 / seed.p50:>16.2f}{unit}"
        cpu = f"{pg.cpu_ms / seed.cpu_ms:>16.2f} {lite.cpu_ms / seed.cpu_ms:>16.2f} "
        print(f"  {m:<38}{wall}{cpu}   {' / '.join(OLD_RATIOS[m])}")
    pg_mem, lite_mem = memory["ours-pg"] / memory["seed"], memory["ours-sqlite"] / memory["seed"]
    old_mem = OLD_RATIOS["API process memory (RSS)"][0]
    print(f"  {'API process memory (RSS)':<38}{pg_mem:>16.2f}x{lite_mem:>16.2f}x{'':>34}   {old_mem}")
    print(
        f"  (RSS after the round's workload: ours {memory['ours-pg']:.0f} MiB on Postgres, "
        f"{memory['ours-sqlite']:.0f} MiB on SQLite; the seed {memory['seed']:.0f} MiB)"
    )


@contextmanager
def _redis(port: int) -> Iterator[None]:
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with _process(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        deadline = time.monotonic() + 10
        while True:
            try:
                RespClient(port).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield


def _tree_state() -> str:
    """Which code of ours ran: the commit, and whether the working tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    changed = len(dirty.stdout.splitlines())
    return f"commit {head.stdout.strip()}" + (f" + {changed} uncommitted file(s)" if changed else "")


def missing(setup: Setup) -> str | None:
    """Why the comparison cannot run here (None when it can)."""
    if not (setup.seed_dir / "src" / "main.py").is_file():
        return f"no seed source at {setup.seed_dir} (--seed / ORCH_SEED_CHECKOUT; see docs/benchmarks.md)"
    if not Path(setup.seed_python).is_file():
        return f"no seed venv python at {setup.seed_python} (tests/benchmarks/seed_setup.sh makes it)"
    if not setup.postgres_url:
        return "no --postgres-url / ORCH_TEST_POSTGRES_URL"
    if not shutil.which("redis-server"):
        return "no redis-server on PATH (tests/benchmarks/seed_setup.sh installs it)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seed", type=Path, default=Path(os.environ.get("ORCH_SEED_CHECKOUT", SEED_DIR / "checkout"))
    )
    parser.add_argument(
        "--seed-python", default=os.environ.get("ORCH_SEED_PYTHON", str(SEED_DIR / ".venv/bin/python"))
    )
    parser.add_argument(
        "--seed-database-url", default=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{SEED_DATABASE}"
    )
    parser.add_argument("--postgres-url", default=os.environ.get("ORCH_TEST_POSTGRES_URL", ""))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--imports", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="1 round, 30 requests, 1 s, 3 imports")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.seconds, args.imports = 1, 30, 1.0, 3
    setup = Setup(args.seed.resolve(), args.seed_python, args.seed_database_url, args.postgres_url)
    why = missing(setup)
    if why:
        print(f"seed comparison: skipped ({why})")
        return
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"ours vs the seed's API over HTTP; load average {load} on {os.cpu_count()} CPUs (compare cpu when busy)"
    )
    passed = " ".join(f"{k}={os.environ[k]}" for k in PASSED_ON if k in os.environ)
    print(f"ours: {_tree_state()}{f' ({passed})' if passed else ''}; the seed: {setup.seed_dir}")
    imports = cold_imports(setup, args.imports)
    setup.redis_port = _free_port()
    rounds, rss = [], []
    with _redis(setup.redis_port):
        for r in range(args.rounds):
            start = time.monotonic()
            measured, memory = one_round(setup, min(args.requests, LISTED_PROJECTS - 1), args.seconds)
            rounds.append(measured)
            rss.append(memory)
            print(f"  round {r + 1}/{args.rounds}: {time.monotonic() - start:.0f} s")
    report(imports, rounds, rss, min(args.requests, LISTED_PROJECTS - 1))


if __name__ == "__main__":
    main()
