"""The real Codex CLI (pinned, .tools/: `make agents`) through the adapter against the scripted model server's
Responses API: a developer round with a real shell call, a fix round, token extraction, a resumed thread and
a timeout kill. The endpoint comes from OPENAI_BASE_URL, which the adapter turns into a model provider for
codex (codex itself ignores that variable and would try a WebSocket first)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.model_server import ModelServer
from tests.integration.real_agents import (
    TEST_KEY,
    assert_round_wrote,
    assert_tokens_are_the_servers,
    real_cli,
    run_scripted,
)
from worker_image.agents import AgentEvent, AgentResult, get_adapter

pytestmark = pytest.mark.real_agent
MODEL = "gpt-5-codex"
"""Through a custom provider codex has no metadata for any model and gives it its classic shell tool
(`exec_command`); for its own models on OpenAI's endpoint it would expose a JavaScript `exec` tool."""


@pytest.fixture
def codex() -> str:
    return real_cli("codex")


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    with ModelServer(model=MODEL) as server:
        monkeypatch.setenv(
            "OPENAI_BASE_URL", server.url + "/v1"
        )  # the machine's setting, read by the adapter
        yield server


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def run(
    codex: str,
    model: ModelServer,
    workspace: Path,
    script: str,
    *,
    prompt: str = "Implement TASK.md",
    timeout_s: float = 60.0,
    session_id: str | None = None,
    sandbox: str = "bypass",
) -> tuple[AgentResult, list[AgentEvent]]:
    home = workspace.parent / "home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "CODEX_HOME": str(home / ".codex"),
        "OPENAI_API_KEY": TEST_KEY,
        "LANG": "C.UTF-8",
    }
    # bypass: the workspace-write sandbox (Landlock/seccomp) is shown once, in its own test
    adapter = get_adapter("codex", {"bin": codex, "model": MODEL, "sandbox": sandbox})
    return run_scripted(
        adapter, model, script, prompt, workspace, env, timeout_s=timeout_s, session_id=session_id
    )


def test_a_developer_round_runs_a_shell_command_and_reports_tokens(
    codex: str, model: ModelServer, workspace: Path
) -> None:
    # when
    result, events = run(codex, model, workspace, "bash_write")
    # then
    assert_round_wrote(result, workspace / "bash.txt", "from-bash\n", "Created bash.txt.")
    commands = [e for e in events if e.kind == "tool" and e.data.get("name") == "command"]
    assert [e.data["phase"] for e in commands] == ["call", "result"]
    assert commands[1].data["exit_code"] == 0 and "from-bash" in commands[1].text
    # the thread id is codex's own; tokens are the server's, summed over the turn's requests; no cost
    assert result.session_id
    turns = model.agent_requests("/v1/responses")
    assert len(turns) == 2
    assert_tokens_are_the_servers(result, turns)
    assert result.cost_usd is None
    assert {r["key_end"] for r in turns} == {TEST_KEY[-4:]}
    assert not [r for r in model.requests if r["method"] == "GET"]  # no WebSocket attempt


def test_a_fix_round_sees_the_failure(codex: str, model: ModelServer, workspace: Path) -> None:
    (workspace / "Makefile").write_text(
        "test:\n\t@test -f fixed.txt || { echo 'FAIL: fixed.txt missing'; exit 1; }\n"
        "\t@echo 'all tests pass'\n"
    )
    result, events = run(codex, model, workspace, "make_test")
    assert result.status == "success", result.output_tail
    outputs = [e for e in events if e.kind == "tool" and e.data.get("phase") == "result"]
    assert [o.data["exit_code"] for o in outputs] == [2, 0, 0]
    assert "FAIL: fixed.txt missing" in json.dumps(model.agent_requests("/v1/responses")[1]["body"]["input"])


def test_a_thread_resumes_with_its_history(codex: str, model: ModelServer, workspace: Path) -> None:
    first, _ = run(codex, model, workspace, "remember", prompt="Remember the code word PELICAN.")
    assert first.status == "success" and first.session_id, first.output_tail
    second, _ = run(
        codex, model, workspace, "answer", prompt="What was the code word?", session_id=first.session_id
    )
    assert second.status == "success", second.output_tail
    assert second.session_id == first.session_id
    history = json.dumps(model.agent_requests("/v1/responses")[-1]["body"]["input"])
    assert "Remember the code word PELICAN." in history and "What was the code word?" in history


def test_a_hanging_model_stream_is_killed_at_the_timeout(
    codex: str, model: ModelServer, workspace: Path
) -> None:
    started = time.monotonic()
    result, _ = run(codex, model, workspace, "hang", timeout_s=2.0)
    assert result.status == "failed" and result.reason == "timeout after 2s"
    assert time.monotonic() - started < 2.0 + 5.0


def test_the_default_sandbox_writes_in_the_workspace(codex: str, model: ModelServer, workspace: Path) -> None:
    """The adapter's default (`--sandbox workspace-write`; codex 0.171 refuses the old --full-auto)."""
    result, _ = run(codex, model, workspace, "bash_write", sandbox="full-auto")
    assert result.status == "success", result.output_tail
    assert (workspace / "bash.txt").read_text() == "from-bash\n"
