"""Helpers for the `real_agent` tests: where the pinned real CLIs are (`make agents` puts them in .tools/),
and the environment that points them at the scripted model server (tests/fakes/model_server.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import SCRIPTS, ModelServer, _usage
from worker_image.agents import AgentAdapter, AgentEvent, AgentResult, run_agent

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


def run_scripted(
    adapter: AgentAdapter,
    model: ModelServer,
    script: str,
    prompt: str,
    workspace: Path,
    env: dict[str, str],
    *,
    timeout_s: float,
    session_id: str | None,
) -> tuple[AgentResult, list[AgentEvent]]:
    """One run of the agent with the model server playing `script`: the result and every event."""
    model.script = SCRIPTS[script]
    events: list[AgentEvent] = []
    result = run_agent(adapter, prompt, workspace, timeout_s, events.append, session_id=session_id, env=env)
    return result, events


def assert_tokens_are_the_servers(result: AgentResult, turns: list[dict[str, Any]]) -> None:
    """The tokens the adapter extracted are what the model server reported, summed over the agent's turns."""
    assert result.input_tokens == sum(_usage(r["body"])["input_tokens"] for r in turns)
    assert result.output_tokens == 25 * len(turns)


def assert_round_wrote(result: AgentResult, path: Path, content: str, answer: str) -> None:
    """A successful round (exit 0, the final event, not blocked) that left `content` in `path`."""
    assert (result.status, result.reason, result.exit_code) == ("success", None, 0), result.output_tail
    assert path.read_text() == content
    assert result.final_answer == answer


DROID_MODEL = "custom:Local-0"
"""How droid names the first custom model of ~/.factory/config.json whose display name is "Local"."""


def droid_env(home: Path, base_url: str) -> dict[str, str]:
    """Factory Droid has no endpoint variable: a "custom model" (bring your own key) in its
    ~/.factory/config.json names the endpoint, the provider's API and the key; no Factory login needed."""
    (home / ".factory").mkdir(parents=True, exist_ok=True)
    model = {
        "model_display_name": "Local",
        "model": "claude-sonnet-4-5-20250929",
        "base_url": base_url,
        "api_key": TEST_KEY,
        "provider": "anthropic",
        "max_tokens": 8192,
    }
    (home / ".factory" / "config.json").write_text(json.dumps({"custom_models": [model]}))
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C.UTF-8"}
