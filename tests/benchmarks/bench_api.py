"""API benchmark: cold import of the handler, and per-request latency on SQLite and PostgreSQL.

    python -m tests.benchmarks.bench_api [--requests 200] [--postgres-url URL]

Calls the real Lambda handler in-process (the Lambda runtime's own overhead is not included).
Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

COLD_IMPORT = "import time; t=time.perf_counter(); import functions.api.handler; print(time.perf_counter()-t)"


def cold_import_ms(runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", COLD_IMPORT], capture_output=True, text=True, check=True)
        samples.append(float(out.stdout.strip()) * 1000)
    return statistics.median(samples)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return p50, p99


def _timed(n: int, fn: Callable[[int], Any]) -> tuple[float, float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000)
    return _percentiles(samples)


def latency(database_url: str, home: Path, n: int) -> dict[str, tuple[float, float]]:
    from tests.api_support import build_deps, install

    api = install(build_deps(database_url, home))
    api.new_project("bench")
    results = {
        "create project": _timed(n, lambda i: api.post("/projects", {"name": f"p-{i}"})),
        "create task (+outbox, publish)": _timed(
            n, lambda i: api.post("/projects/bench/engineering", {"spec": "x"})
        ),
        "list 100 tasks": _timed(n, lambda i: api.get("/tasks", limit=100)),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--postgres-url", default=os.environ.get("ORCH_TEST_POSTGRES_URL"))
    args = parser.parse_args()

    print(f"cold import of functions.api.handler: {cold_import_ms():.0f} ms (median of 5 fresh processes)")
    from tests.api_support import drop_postgres_database, fresh_postgres_database, migrated_sqlite

    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", migrated_sqlite(Path(tmp) / "bench.db"))]
        pg = fresh_postgres_database(args.postgres_url) if args.postgres_url else None
        if pg:
            targets.append(("postgres", pg))
        else:
            print("postgres: skipped (no --postgres-url / ORCH_TEST_POSTGRES_URL)")
        try:
            for label, url in targets:
                for case, (p50, p99) in latency(url, Path(tmp) / label, args.requests).items():
                    print(
                        f"  {label:<8} {case:<32} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   (n={args.requests})"
                    )
        finally:
            if pg:
                drop_postgres_database(args.postgres_url, pg)


if __name__ == "__main__":
    main()
