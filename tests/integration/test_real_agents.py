"""The real Claude Code CLI (pinned, from .tools/: `make agents`) through the adapter and the worker wrapper,
against the scripted model server on loopback: every adapter behaviour the fake `claude` claims, shown on
the real CLI. A run takes about half a second; the whole file a few seconds plus the timeout test.

As root (these machines, most servers) the adapter runs claude in `dontAsk` mode with the tools allowed
by name, since the CLI refuses `bypassPermissions` for root; one test runs it as an unprivileged user in
`bypassPermissions` mode, so both paths are exercised whoever runs the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import SCRIPTS, ModelServer, Script, tool
from tests.integration.real_agents import (
    assert_round_wrote,
    assert_tokens_are_the_servers,
    claude_env,
    real_cli,
    run_scripted,
)
from worker_image.agents import AgentEvent, AgentResult, AgentSandbox, get_adapter, run_agent
from worker_image.agents.sandbox import resolve_user

SCRIPTS_DIR = str(Path(sys.executable).parent)
"""The venv's bin, where the `orchestrator` console script is."""

pytestmark = pytest.mark.real_agent


@pytest.fixture
def claude() -> str:
    return real_cli("claude")


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


def run(
    claude: str,
    model: ModelServer,
    workspace: Path,
    script: str,
    *,
    prompt: str = "Implement TASK.md",
    home: Path | None = None,
    timeout_s: float = 60.0,
    session_id: str | None = None,
    settings: dict[str, Any] | None = None,
) -> tuple[AgentResult, list[AgentEvent]]:
    adapter = get_adapter("claude-code", {"bin": claude, **(settings or {})})
    env = claude_env(home or workspace.parent / "home", model.url)
    return run_scripted(
        adapter, model, script, prompt, workspace, env, timeout_s=timeout_s, session_id=session_id
    )


def test_a_developer_round_writes_a_file_and_reports_its_usage(
    claude: str, model: ModelServer, workspace: Path
) -> None:
    # when
    result, events = run(claude, model, workspace, "write_file")
    # then: the real tool call ran in the workspace
    assert_round_wrote(result, workspace / "hello.txt", "hello from the agent\n", "Wrote hello.txt.")
    calls = [e for e in events if e.kind == "tool" and e.data["phase"] == "call"]
    assert [c.data["name"] for c in calls] == ["Write"]
    results = [e for e in events if e.kind == "tool" and e.data["phase"] == "result"]
    assert len(results) == 1 and results[0].data["is_error"] is False
    # the session id is the CLI's own (a UUID), the same in its init and result
    assert result.session_id and uuid.UUID(result.session_id)
    # tokens: what the model server reported, summed over the agent's turns; cost: the CLI's own pricing
    turns = model.agent_requests()
    assert len(turns) == 2
    assert_tokens_are_the_servers(result, turns)
    assert result.cost_usd is not None and result.cost_usd > 0
    # what the CLI sent: streaming, the tools, the prompt; never the key in a recorded header
    first = turns[0]["body"]
    assert first["stream"] is True and {"Bash", "Write", "Edit"} <= {t["name"] for t in first["tools"]}
    assert "Implement TASK.md" in json.dumps(first["messages"])


def test_a_fix_round_sees_the_failure_and_fixes_it(claude: str, model: ModelServer, workspace: Path) -> None:
    # given: `make test` fails until fixed.txt exists
    (workspace / "Makefile").write_text(
        "test:\n\t@test -f fixed.txt || { echo 'FAIL: fixed.txt missing'; exit 1; }\n"
        "\t@echo 'all tests pass'\n"
    )
    # when
    result, events = run(claude, model, workspace, "make_test")
    # then
    assert result.status == "success", result.output_tail
    outputs = [e for e in events if e.kind == "tool" and e.data["phase"] == "result"]
    assert [o.data["is_error"] for o in outputs] == [True, False, False]
    assert "FAIL: fixed.txt missing" in outputs[0].text
    assert "all tests pass" in outputs[2].text
    # the model saw the failing output in the conversation before it fixed it
    second = model.agent_requests()[1]["body"]
    assert "FAIL: fixed.txt missing" in json.dumps(second["messages"])


def test_a_refused_tool_is_reported_and_not_run(claude: str, model: ModelServer, workspace: Path) -> None:
    # when: the job forbids `touch` and the model tries it
    result, events = run(
        claude, model, workspace, "forbidden", settings={"disallowed_tools": ["Bash(touch *)"]}
    )
    # then: the command never ran, the denial went back to the model, the run still ended normally
    assert not (workspace / "forbidden.txt").exists()
    (denied,) = [e for e in events if e.kind == "tool" and e.data["phase"] == "result"]
    assert denied.data["is_error"] is True and "denied" in denied.text.lower()
    assert result.status == "success" and result.final_answer == "I could not run that command."
    assert "denied" in json.dumps(model.agent_requests()[-1]["body"]["messages"]).lower()


def test_a_hanging_model_stream_is_killed_at_the_timeout(
    claude: str, model: ModelServer, workspace: Path
) -> None:
    # when: the model starts its answer and never finishes it
    started = time.monotonic()
    result, _ = run(claude, model, workspace, "hang", timeout_s=2.0)
    # then
    elapsed = time.monotonic() - started
    assert result.status == "failed" and result.reason == "timeout after 2s"
    assert elapsed < 2.0 + 5.0, elapsed
    assert result.exit_code is not None and result.exit_code != 0
    assert _claude_processes(workspace) == []


def _claude_processes(workspace: Path) -> list[int]:
    """Live processes whose working directory is the workspace (the killed agent's group)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "cwd") == str(workspace):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_a_session_resumes_with_its_history(claude: str, model: ModelServer, workspace: Path) -> None:
    # given: a first run
    first, _ = run(claude, model, workspace, "remember", prompt="Remember the code word PELICAN.")
    assert first.status == "success" and first.session_id
    # when: the next message resumes it
    second, _ = run(
        claude, model, workspace, "answer", prompt="What was the code word?", session_id=first.session_id
    )
    # then: the same session, and the model got the earlier exchange with the new prompt
    assert second.status == "success", second.output_tail
    assert second.session_id == first.session_id
    history = json.dumps(model.agent_requests()[-1]["body"]["messages"])
    assert "Remember the code word PELICAN." in history and "What was the code word?" in history


def test_resuming_an_unknown_session_is_recognised_as_lost(
    claude: str, model: ModelServer, workspace: Path
) -> None:
    # when
    result, _ = run(claude, model, workspace, "answer", session_id=str(uuid.uuid4()))
    # then: the wrapper starts a new session instead of failing the message
    assert result.status == "failed"
    assert get_adapter("claude-code").session_lost(result), result.output_tail


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the CLI refuses bypassPermissions only for root")
def test_as_root_bypass_is_refused_and_the_allowlist_works(
    claude: str, model: ModelServer, workspace: Path
) -> None:
    # the CLI's refusal, as the issue saw it
    refused, _ = run(claude, model, workspace, "write_file", settings={"permissions": "bypass"})
    assert refused.status == "failed" and "root/sudo" in refused.output_tail
    # the default ("auto") as root: dontAsk with the tools allowed by name
    result, _ = run(claude, model, workspace, "bash_write")
    assert result.status == "success", result.output_tail
    assert (workspace / "bash.txt").read_text() == "from-bash\n"


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder outside pytest's tmp_path, whose 0700 parents an unprivileged user cannot cross."""
    path = Path(tempfile.mkdtemp(prefix="real-agent-nobody-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start claude as another user")
def test_as_an_unprivileged_user_bypass_permissions_works(
    claude: str, model: ModelServer, tmp_path: Path, public_dir: Path
) -> None:
    """The non-root path (the worker image runs as uid 10001): bypassPermissions, any tool, no prompt."""
    # given: a shim that starts the real claude as `nobody`, in a workspace and HOME it owns
    space = public_dir
    workspace, home = space / "workspace", space / "home"
    for path in (workspace, home):
        path.mkdir()
        os.chown(path, 65534, 65534)
    shim = tmp_path / "claude-as-nobody"
    shim.write_text(f'#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups -- {claude} "$@"\n')
    shim.chmod(0o755)
    _readable_by_others(Path(claude))
    # when
    result, _ = run(str(shim), model, workspace, "bash_write", home=home, settings={"permissions": "bypass"})
    # then
    assert result.status == "success", result.output_tail
    assert (workspace / "bash.txt").stat().st_uid == 65534


def _readable_by_others(path: Path) -> None:
    """`nobody` must be able to reach the CLI in the checkout (a 0700 home would hide it)."""
    real = path.resolve()
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", str(real), "--version"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"{real} is not executable by an unprivileged user here: {probe.stderr.strip()[:200]}")


def test_the_machine_model_setting_reaches_the_model_server(
    claude: str, model: ModelServer, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCH_CLAUDE_MODEL (the stack's environment; -c agent_env in AWS) is the model the CLI asks for."""
    monkeypatch.setenv("ORCH_CLAUDE_MODEL", "claude-gateway-model")
    result, _ = run(claude, model, workspace, "answer")
    assert result.status == "success", result.output_tail
    assert {r["body"]["model"] for r in model.agent_requests()} == {"claude-gateway-model"}


def test_a_model_that_keeps_spending_is_stopped_by_max_turns(
    claude: str, model: ModelServer, workspace: Path
) -> None:
    """The job's `max_turns` (--max-turns) bounds a run whose model never stops calling tools."""
    result, _ = run(claude, model, workspace, "spend", settings={"max_turns": 3})
    assert result.status == "failed" and "error_max_turns" in (result.reason or ""), result.reason
    assert len(model.agent_requests()) == 3
    assert result.cost_usd is not None and result.cost_usd > 0  # what was spent is still reported


def test_a_worker_limited_to_the_orchestrator_cli_runs_nothing_else(
    claude: str, model: ModelServer, workspace: Path
) -> None:
    """A Product Owner's worker (`allowed_commands=["orchestrator"]`): the CLI itself refuses the rest."""
    # given: a model that tries a forbidden command, then the allowed one
    marker = workspace / "marker.txt"
    steps = [
        [tool("Bash", command=f"touch {marker}", description="forbidden")],
        [tool("Bash", command=f"orchestrator --help && touch {marker}", description="chained, forbidden")],
        [tool("Bash", command="orchestrator --help", description="allowed")],
    ]
    model.script = Script("limited", steps, final="done")
    adapter = get_adapter("claude-code", {"bin": claude, "allowed_commands": ["orchestrator"]})
    env = claude_env(workspace.parent / "home", model.url)
    env["PATH"] += os.pathsep + SCRIPTS_DIR
    events: list[AgentEvent] = []
    # when
    result = run_agent(adapter, "Answer the person", workspace, 60.0, events.append, env=env)
    # then: refused by the CLI (the model is told so), never run; the allowed command ran
    assert result.status == "success", result.output_tail
    outputs = [e for e in events if e.kind == "tool" and e.data["phase"] == "result"]
    assert [o.data["is_error"] for o in outputs] == [True, True, False]
    assert all("denied" in o.text.lower() for o in outputs[:2])
    assert "Usage: orchestrator" in outputs[2].text
    assert not marker.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch the agent to another user")
def test_as_root_the_sandbox_runs_claude_as_its_own_user_within_limits(
    claude: str, model: ModelServer, public_dir: Path
) -> None:
    """What the worker does as root: claude as `nobody` (so bypassPermissions is accepted), with the default
    limits, in a work tree handed to it for the run and back afterwards."""
    workspace = public_dir / "workspace"
    workspace.mkdir()
    _readable_by_others(Path(claude))
    sandbox = AgentSandbox(
        run_as=resolve_user("nobody"), max_memory_mb=8192, max_processes=512, max_open_files=8192
    )
    model.script = SCRIPTS["bash_write"]
    adapter = get_adapter("claude-code", {"bin": claude, "permissions": "bypass"})
    env = claude_env(public_dir / "unused-home", model.url)
    # when
    result = run_agent(
        adapter, "Implement TASK.md", workspace, 60.0, lambda _e: None, env=env, sandbox=sandbox
    )
    # then
    assert result.status == "success", result.output_tail
    assert (workspace / "bash.txt").read_text() == "from-bash\n"
    assert (workspace / "bash.txt").stat().st_uid == os.getuid()  # handed back for the wrapper's git
    assert list(
        (public_dir / "workspace.home" / ".claude" / "projects").iterdir()
    )  # its session, in its HOME
