"""The machine's default model per agent (ORCH_CLAUDE_MODEL, ORCH_CODEX_MODEL, ORCH_DROID_MODEL: the stack's
environment, or -c agent_env in AWS) applies when the job names none; a job's `model` beats it."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker_image.agents import get_adapter

WORKSPACE = Path("/work/space")


@pytest.mark.parametrize(
    ("agent", "variable", "flag"),
    [
        ("claude-code", "ORCH_CLAUDE_MODEL", "--model"),
        ("codex", "ORCH_CODEX_MODEL", "--model"),
        ("factory-droid", "ORCH_DROID_MODEL", "--model"),
    ],
)
def test_the_machine_model_is_the_default(
    agent: str, variable: str, flag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "gateway-model")
    argv = get_adapter(agent).build_command("p", WORKSPACE, None).argv
    assert argv[argv.index(flag) + 1] == "gateway-model"
    argv = get_adapter(agent, {"model": "job-model"}).build_command("p", WORKSPACE, None).argv
    assert argv[argv.index(flag) + 1] == "job-model"


def test_no_model_anywhere_means_the_cli_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_CLAUDE_MODEL", raising=False)
    assert "--model" not in get_adapter("claude-code").build_command("p", WORKSPACE, None).argv
