"""Helpers for the `real_agent` tests: where the pinned real CLIs are (`make agents` puts them in .tools/),
and the environment that points them at the scripted model server (tests/fakes/model_server.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "node_modules" / ".bin"
FAKES = ROOT / "tests" / "fakes" / "agents"
TEST_KEY = "sk-ant-test-not-a-real-key"


def real_cli(name: str) -> str:
    """The real CLI `name` (claude, codex) from .tools/ or $REAL_<NAME>_BIN; skip (or, with
    ORCH_REQUIRE_REAL_AGENTS=1 as in .ci/run, fail) when it is not installed."""
    path = os.environ.get(f"REAL_{name.upper()}_BIN") or str(TOOLS_BIN / name)
    if shutil.which(path) is None:
        why = f"the real {name} CLI is not installed ({path}): run `make agents`"
        if os.environ.get("ORCH_REQUIRE_REAL_AGENTS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return path


def claude_env(home: Path, base_url: str) -> dict[str, str]:
    """What a worker gives the real claude here: a private HOME (its ~/.claude), the scripted model as its
    endpoint, any key, and no traffic but the model's (no telemetry, no auto-update, no error reports)."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": TEST_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
