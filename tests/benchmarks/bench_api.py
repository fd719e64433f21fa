"""API benchmark: cold import of the handler, and per-request latency, CPU time and SQL statements on
SQLite and PostgreSQL.

    python -m tests.benchmarks.bench_api [--requests 200] [--rounds 3] [--postgres-url URL]

Calls the real Lambda handler in-process (the Lambda runtime's own overhead is not included), so the
CPU time (`time.process_time`) is the API's own. Each round starts from a fresh database; the figures
are the medians over the rounds of each round's p50 / p99. Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from shared.contracts.api import PROJECTS_PAGE_MAX

COLD_IMPORT = "import time; t=time.perf_counter(); import functions.api.handler; print(time.perf_counter()-t)"
LISTED_PROJECTS = 300


def cold_import_ms(runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", COLD_IMPORT], capture_output=True, text=True, check=True)
        samples.append(float(out.stdout.strip()) * 1000)
    return statistics.median(samples)


@dataclass
class StatementCount:
    """What a block of code asked of the database: SQL statements, transactions, pool checkouts."""

    statements: int = 0
    transactions: int = 0
    checkouts: int = 0
    sql: list[str] = field(default_factory=list)


@contextmanager
def count_statements(engine: Engine) -> Iterator[StatementCount]:
    """Count every statement SQLAlchemy sends (`before_cursor_execute`), every transaction it begins and
    every connection it takes from the pool (a PostgreSQL checkout is a round trip too: `pool_pre_ping`)."""
    counted = StatementCount()

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counted.statements += 1
        counted.sql.append(statement)

    def on_begin(_conn: Any) -> None:
        counted.transactions += 1

    def on_checkout(*_args: Any) -> None:
        counted.checkouts += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "begin", on_begin)
    event.listen(engine.pool, "checkout", on_checkout)
    try:
        yield counted
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "begin", on_begin)
        event.remove(engine.pool, "checkout", on_checkout)


@dataclass
class CaseResult:
    p50_ms: float
    p99_ms: float
    cpu_ms: float
    """median CPU time of one request (time.process_time)"""
    statements: float
    transactions: float
    checkouts: float


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _timed(engine: Engine, n: int, fn: Callable[[int], Any]) -> CaseResult:
    wall, cpu = [], []
    with count_statements(engine) as counted:
        for i in range(n):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(i)
            cpu.append((time.process_time() - start_cpu) * 1000)
            wall.append((time.perf_counter() - start) * 1000)
    wall.sort()
    return CaseResult(
        _percentile(wall, 0.5),
        _percentile(wall, 0.99),
        statistics.median(cpu),
        counted.statements / n,
        counted.transactions / n,
        counted.checkouts / n,
    )


def _ok(reply: Any) -> Any:
    assert reply.status < 300, reply
    return reply.body


def _list_all_projects(api: Any) -> int:
    """Every project, following `next_cursor` when the API pages (a list body is the unpaged API)."""
    body, listed, cursor = None, 0, None
    while True:
        params = {"limit": PROJECTS_PAGE_MAX} | ({"cursor": cursor} if cursor else {})
        body = _ok(api.get("/projects", **params))
        if isinstance(body, list):
            return len(body)
        listed += len(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return listed


def latency(database_url: str, home: Path, n: int, listed: int = LISTED_PROJECTS) -> dict[str, CaseResult]:
    from tests.api_support import build_deps, install

    deps = build_deps(database_url, home)
    api = install(deps)
    engine = deps.db.engine
    project_id = api.new_project("bench")["id"]
    results = {"create project": _timed(engine, n, lambda i: _ok(api.post("/projects", {"name": f"p-{i}"})))}
    for i in range(n, listed - 1):
        _ok(api.post("/projects", {"name": f"p-{i}"}))
    results["get project by id"] = _timed(engine, n, lambda i: _ok(api.get(f"/projects/{project_id}")))
    results[f"list {listed} projects (1st page, 50)"] = _timed(engine, n, lambda i: _ok(api.get("/projects")))
    results[f"list {listed} projects (all, pages of {PROJECTS_PAGE_MAX})"] = _timed(
        engine, max(1, n // 4), lambda i: _list_all_projects(api)
    )
    results["create task (+outbox, publish)"] = _timed(
        engine, n, lambda i: _ok(api.post("/projects/bench/engineering", {"spec": "x"}))
    )
    results["list 100 tasks"] = _timed(engine, n, lambda i: _ok(api.get("/tasks", limit=100)))
    return results


def _median_of(rounds: list[dict[str, CaseResult]]) -> dict[str, CaseResult]:
    return {
        case: CaseResult(
            **{
                f.name: statistics.median(getattr(r[case], f.name) for r in rounds)
                for f in fields(CaseResult)
            }
        )
        for case in rounds[0]
    }


def _print_table(label: str, results: dict[str, CaseResult], n: int, rounds: int) -> None:
    for case, r in results.items():
        print(
            f"  {label:<8} {case:<36} p50 {r.p50_ms:7.2f} ms   p99 {r.p99_ms:7.2f} ms   "
            f"cpu {r.cpu_ms:6.2f} ms   (n={n}, median of {rounds} rounds)"
        )


def _print_statements(by_db: dict[str, dict[str, CaseResult]]) -> None:
    print("statements per request (SQL statements / transactions / pool checkouts)")
    labels = list(by_db)
    print(f"  {'request':<36} " + "  ".join(f"{label:>18}" for label in labels))
    for case in next(iter(by_db.values())):
        cells = [
            f"{by_db[db][case].statements:5.1f} /{by_db[db][case].transactions:4.1f} /{by_db[db][case].checkouts:4.1f}"
            for db in labels
        ]
        print(f"  {case:<36} " + "  ".join(f"{c:>18}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres-url", default=os.environ.get("ORCH_TEST_POSTGRES_URL"))
    args = parser.parse_args()

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} CPUs: on a busy machine compare `cpu`, not p50")
    print(f"cold import of functions.api.handler: {cold_import_ms():.0f} ms (median of 5 fresh processes)")
    from tests.api_support import drop_postgres_database, fresh_postgres_database, migrated_sqlite

    if not args.postgres_url:
        print("postgres: skipped (no --postgres-url / ORCH_TEST_POSTGRES_URL)")
    by_db: dict[str, dict[str, CaseResult]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in ["sqlite"] + (["postgres"] if args.postgres_url else []):
            rounds = []
            for r in range(args.rounds):
                if label == "sqlite":
                    url = migrated_sqlite(Path(tmp) / f"bench-{r}.db")
                else:
                    url = fresh_postgres_database(args.postgres_url)
                try:
                    rounds.append(latency(url, Path(tmp) / f"{label}-{r}", args.requests))
                finally:
                    if label == "postgres":
                        drop_postgres_database(args.postgres_url, url)
            by_db[label] = _median_of(rounds)
            _print_table(label, by_db[label], args.requests, args.rounds)
    _print_statements(by_db)


if __name__ == "__main__":
    main()
