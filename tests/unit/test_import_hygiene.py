"""Cold start is import time: the API and the queue backbone must not drag heavy libraries in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("langgraph", "aiogram", "copier", "ansible_runner", "ansible", "aws_cdk", "moto")


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(
    "module", ["functions.api.handler", "shared.queues.consume", "shared.contracts", "cli.main"]
)
def test_no_heavy_imports(module: str) -> None:
    loaded = _modules_after_import(module)
    offenders = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert offenders == [], f"importing {module} loads {offenders[:5]}"


def test_api_handler_does_not_import_boto3_or_alembic_at_cold_start() -> None:
    loaded = _modules_after_import("functions.api.handler")
    assert "alembic" not in loaded, "alembic belongs to `db upgrade`, not to every cold start"
    assert "boto3" not in loaded, "boto3 is loaded only when an AWS adapter is built"
