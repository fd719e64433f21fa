"""The real Factory Droid CLI (pinned, .tools/: `make agents`) through the adapter, against the scripted
model server's Messages API: droid can be pointed at a local endpoint through a "custom model" in
~/.factory/config.json (no Factory account involved). A developer round with a real shell call, usage,
a resume (which droid cannot do offline). Each run costs ~7 s however short the work (droid's own start and exit)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.model_server import ModelServer
from tests.integration.real_agents import (
    DROID_MODEL,
    assert_round_wrote,
    assert_tokens_are_the_servers,
    droid_env,
    real_cli,
    run_scripted,
)
from worker_image.agents import AgentEvent, AgentResult, get_adapter

pytestmark = [pytest.mark.real_agent, pytest.mark.slow]


@pytest.fixture
def droid() -> str:
    return real_cli("droid")


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


def run(
    droid: str,
    model: ModelServer,
    tmp_path: Path,
    script: str,
    *,
    prompt: str = "Implement TASK.md",
    session_id: str | None = None,
) -> tuple[AgentResult, list[AgentEvent]]:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    adapter = get_adapter("factory-droid", {"bin": droid, "model": DROID_MODEL})
    env = droid_env(tmp_path / "home", model.url)
    return run_scripted(adapter, model, script, prompt, workspace, env, timeout_s=90.0, session_id=session_id)


def test_a_developer_round_runs_a_command_and_reports_usage(
    droid: str, model: ModelServer, tmp_path: Path
) -> None:
    # when
    result, events = run(droid, model, tmp_path, "bash_write")
    # then: droid's own shell tool (Execute) ran in the workspace
    assert_round_wrote(result, tmp_path / "workspace" / "bash.txt", "from-bash\n", "Created bash.txt.")
    calls = [e for e in events if e.kind == "tool" and e.data.get("phase") == "call"]
    assert [c.data.get("name") for c in calls] == ["Execute"]
    assert result.session_id
    assert_tokens_are_the_servers(result, model.agent_requests())


def test_resuming_offline_is_a_lost_session(droid: str, model: ModelServer, tmp_path: Path) -> None:
    """droid 0.215 resumes from Factory's service, not from its local session files: offline (or behind a
    gateway) it exits 1 without a word, which the adapter reports as a lost session, so the wrapper
    answers from a new one instead of failing every later message of a conversation."""
    first, _ = run(droid, model, tmp_path, "remember", prompt="Remember the code word PELICAN.")
    assert first.status == "success" and first.session_id, first.output_tail
    second, _ = run(
        droid, model, tmp_path, "answer", prompt="What was the code word?", session_id=first.session_id
    )
    assert (second.status, second.exit_code) == ("failed", 1)
    assert get_adapter("factory-droid").session_lost(second)
