from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def orchestrator_executable() -> list[str]:
    found = shutil.which("orchestrator", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "cli.main"]


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Runs the real `orchestrator` console script in a subprocess with a private ORCH_HOME."""
    return cli_runner()


def cli_runner(home: Path | None = None) -> CliRunner:
    """The `cli` fixture's runner; with `home`, for that ORCH_HOME (a module-scoped stack's)."""

    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        full_env["ORCH_HOME"] = str(home) if home else os.environ["ORCH_HOME"]
        full_env.update(env or {})
        return subprocess.run(
            [*orchestrator_executable(), *args],
            capture_output=True,
            text=True,
            env=full_env,
            input=input,
            timeout=timeout,
            check=False,
        )

    return run
