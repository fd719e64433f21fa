"""Cold start is import time: the API, the queue backbone and the embedded stack's consumers must not drag
heavy libraries in (langgraph loads when a graph first runs, aiogram only with Telegram on)."""

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
    "module",
    [
        "functions.api.handler",
        "shared.queues.consume",
        "shared.contracts",
        "cli.main",
        "cli.local.stack",
        "shared.graphs.driver",
        # the consumers the embedded stack starts with Telegram off (shared.topology.CONSUMERS)
        "functions.engineering.handler",
        "functions.deploy.handler",
        "functions.infra.handler",
        "functions.scaffolder.handler",
        "functions.worker_manager.handler",
        "functions.scheduler.handler",
    ],
)
def test_no_heavy_imports(module: str) -> None:
    loaded = _modules_after_import(module)
    offenders = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert offenders == [], f"importing {module} loads {offenders[:5]}"


def test_api_handler_does_not_import_boto3_or_alembic_at_cold_start() -> None:
    loaded = _modules_after_import("functions.api.handler")
    assert "alembic" not in loaded, "alembic belongs to `db upgrade`, not to every cold start"
    assert "boto3" not in loaded, "boto3 is loaded only when an AWS adapter is built"


def test_the_graph_driver_spells_langgraphs_end_node_right() -> None:
    from langgraph.graph import END

    from shared.graphs.driver import END as DRIVER_END

    assert DRIVER_END == END
