"""The benchmarks run (at a small size) in the suite so they cannot rot; only correctness is asserted."""

from __future__ import annotations

import pytest

from tests.benchmarks.bench_local_queue import run


def test_local_queue_benchmark_runs_and_sees_no_duplicates() -> None:
    rows = run(300)
    drains = [r for r in rows if r["received"] is not None]
    assert drains and all(r["received"] == 300 and r["duplicates"] == 0 for r in drains)


def test_api_benchmark_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.api_support import migrated_sqlite
    from tests.benchmarks.bench_api import latency

    results = latency(migrated_sqlite(tmp_path / "b.db"), tmp_path / "home", 5, listed=20)
    assert {"create project", "get project by id", "create task (+outbox, publish)", "list 100 tasks"} <= set(
        results
    )
    assert all(r.statements > 0 and r.transactions > 0 for r in results.values())


def test_embedded_benchmark_runs() -> None:
    from tests.benchmarks.bench_embedded import enqueue_latency, throughput

    rows = throughput(0.2)
    assert {(label, clients) for label, clients, _ in rows} == {
        ("GET /tasks", 1),
        ("GET /tasks", 8),
        ("POST /projects", 1),
        ("POST /projects", 8),
    }
    _, _, received = enqueue_latency(10)
    assert received == 10, "every task's message reached the consumer"


def test_worker_benchmark_runs() -> None:
    from tests.benchmarks.bench_workers import run

    samples = run(1)
    assert all(len(v) == 1 for v in samples.values())


def test_engineering_benchmark_runs() -> None:
    from tests.benchmarks.bench_engineering import run

    [row] = run(1)
    assert row["total"] > row["overhead"] > 0


@pytest.mark.slow
def test_redeploy_benchmark_runs_and_no_poll_fails() -> None:
    from tests.benchmarks.bench_redeploy import run

    [row] = run(1)
    assert row.status == "success" and row.to_serving_s is not None
    assert row.failed_polls == 0 and row.polls > 0


def test_cold_import_benchmark_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.benchmarks.bench_cold_import import run

    environment, rows = run(["telegram-webhook"], runs=1, layers_dir=tmp_path / "no-layers")
    assert environment.label.startswith("STAND-IN")  # no built layers here: the labelled stand-in
    [(name, module, source_only, compiled)] = rows
    assert (name, module) == ("telegram-webhook", "functions.telegram_webhook.handler")
    assert source_only.error is None and compiled.error is None, (source_only.error, compiled.error)
    assert source_only.cpu_ms and compiled.cpu_ms
