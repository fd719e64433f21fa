"""The cold-import benchmark's API line runs (at one sample) so it cannot rot; only correctness is asserted."""

from __future__ import annotations

from pathlib import Path


def test_api_first_request_benchmark_answers_get_projects(tmp_path: Path) -> None:
    from tests.benchmarks.bench_cold_import import api_first_request

    imported, answered = api_first_request(runs=1, layers_dir=tmp_path / "no-layers")

    assert imported.error is None and answered.error is None, imported.error
    assert imported.cpu_ms and answered.cpu_ms and answered.cpu_ms > imported.cpu_ms
