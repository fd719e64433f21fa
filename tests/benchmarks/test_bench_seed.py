"""bench_seed without the seed: it says why it skipped; its Redis client speaks the protocol; and `make bench`
runs every benchmark module of this folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.bench_seed import RespClient, Setup, _free_port, _redis, missing

BENCHMARKS = Path(__file__).parent
ROOT = BENCHMARKS.parents[1]


def test_without_the_seeds_source_it_says_so_and_succeeds(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_seed", "--seed", str(tmp_path), "--postgres-url", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("seed comparison: skipped (no seed source at"), out.stdout


def test_missing_names_each_prerequisite(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("")
    python = tmp_path / "python"
    assert "no seed venv python" in str(missing(Setup(tmp_path, str(python), "", "pg")))
    python.write_text("")
    assert "ORCH_TEST_POSTGRES_URL" in str(missing(Setup(tmp_path, str(python), "", "")))


@pytest.mark.skipif(not shutil.which("redis-server"), reason="no redis-server on PATH")
def test_resp_client_adds_to_a_stream() -> None:
    port = _free_port()
    with _redis(port):
        client = RespClient(port)
        try:
            message_id = client.command("XADD", "engineering:queue", "*", "data", '{"task_id": "t1"}')
            assert re.fullmatch(rb"\d+-\d+", message_id), message_id
            assert client.command("XLEN", "engineering:queue") == b":1"
            with pytest.raises(RuntimeError, match="ERR"):
                client.command("NOSUCHCOMMAND")
        finally:
            client.close()


def test_make_bench_runs_every_benchmark_module() -> None:
    recipe = re.search(r"^bench:\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe is not None
    modules = {p.stem for p in BENCHMARKS.glob("bench_*.py")}
    assert modules, "no benchmark modules found"
    assert {m for m in modules if m not in recipe.group(1)} == set()
    assert all("def main(" in (BENCHMARKS / f"{m}.py").read_text() for m in modules)


def _prepared_setup() -> Setup | None:
    import os

    setup = Setup(
        Path(os.environ.get("ORCH_SEED_CHECKOUT", "/var/tmp/seed/checkout")),
        os.environ.get("ORCH_SEED_PYTHON", "/var/tmp/seed/.venv/bin/python"),
        "postgresql+asyncpg://postgres@127.0.0.1:5432/seedbench",
        os.environ.get("ORCH_TEST_POSTGRES_URL", ""),
    )
    return None if missing(setup) else setup


@pytest.mark.slow  # ~1-2 min: three servers, consumers in other processes
@pytest.mark.skipif(_prepared_setup() is None, reason="the seed is not prepared here (docs/benchmarks.md)")
def test_one_small_round_measures_all_three_servers() -> None:
    from tests.benchmarks.bench_seed import MEASURES, one_round

    setup = _prepared_setup()
    assert setup is not None
    setup.redis_port = _free_port()
    with _redis(setup.redis_port):
        measured, memory = one_round(setup, 5, 0.3)
    assert set(measured) == set(MEASURES)
    for by_server in measured.values():
        assert set(by_server) == {"seed", "ours-pg", "ours-sqlite"}
        assert all(s.p50 > 0 and s.cpu_ms >= 0 for s in by_server.values()), by_server
    assert all(mib > 10 for mib in memory.values())
