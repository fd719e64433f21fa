"""schemathesis against the embedded stack, on SQLite and on PostgreSQL: no 500, every answer as documented.

All four response checks run (`not_a_server_error`, `status_code_conformance`,
`content_type_conformance`, `response_schema_conformance`) through every phase: the schema's
examples, the coverage phase (boundary and invalid values, other methods), random fuzzing and the
stateful phase (sequences that feed created ids into later calls). About 3,000 cases per database
in ~35 s. The run's JSON report is kept under pytest's tmp dir; a failure prints how to replay it.

Left out, with reasons: `DELETE /api-keys/{key_id}` (the fuzzer would revoke its own key and
see 401s for the rest of the run); TRACE and QUERY (see tests/e2e/schemathesis.toml).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.secrets.local import LocalSecrets
from tests.api_support import drop_postgres_database, fresh_postgres_database
from tests.conftest import POSTGRES_URL_ENV
from tests.e2e.test_local_stack import Stack

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
PHASES = ("examples", "coverage", "fuzzing", "stateful")
CONFIG = Path(__file__).with_name("schemathesis.toml")
MIN_CASES_PER_DATABASE = 1000
SEED = int(os.environ.get("ORCH_FUZZ_SEED", "2"))
"""Fixed so CI runs the same cases; set ORCH_FUZZ_SEED to explore others."""


@pytest.fixture(params=["sqlite", "postgres"])
def fuzzed_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    args: tuple[str, ...] = ()
    database_url = None
    if request.param == "postgres":
        admin_url = os.environ.get(POSTGRES_URL_ENV)
        if not admin_url:
            pytest.skip(f"{POSTGRES_URL_ENV} is not set: no PostgreSQL to fuzz against (CI sets it)")
        database_url = fresh_postgres_database(admin_url)
        args = ("--database-url", database_url)
    running = Stack(Path(os.environ["ORCH_HOME"]), env={"ORCH_LOCAL_CONSUMERS": "none"}, args=args)
    running.start()
    yield running
    if running.process and running.process.poll() is None:
        running.stop()
    if database_url:
        drop_postgres_database(os.environ[POSTGRES_URL_ENV], database_url)


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_failure(fuzzed_stack: Stack, tmp_path: Path) -> None:
    admin_key = LocalSecrets(fuzzed_stack.home / "secrets.json").get("secret://local/admin_api_key")
    report = tmp_path / "schemathesis.json"
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    # given the stack's own document; when every phase runs with the admin key
    run = subprocess.run(
        [
            executable,
            "--config-file",
            str(CONFIG),
            "run",
            f"{fuzzed_stack.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {admin_key}",
            "--checks",
            CHECKS,
            "--phases",
            ",".join(PHASES),
            "--exclude-path",
            "/api-keys/{key_id}",
            "--max-examples",
            "20",
            "--workers",
            "1",
            "--seed",
            str(SEED),
            "--no-shrink",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    # then nothing fails, every phase ran, and the run is large enough to mean something
    summary = json.loads(report.read_text()) if report.exists() else {}
    context = f"exit {run.returncode}; report {report}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert run.returncode == 0 and summary.get("failures") == [] and summary.get("errors") == [], context
    assert {name: phase["status"] for name, phase in summary["phases"].items()} == dict.fromkeys(
        PHASES, "success"
    ), context
    assert summary["test_cases"]["generated"] >= MIN_CASES_PER_DATABASE, context
    print(f"schemathesis: {summary['test_cases']['generated']} cases in {summary['running_time']:.0f} s")
