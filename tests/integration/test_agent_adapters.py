"""The adapters against fake CLIs run as real processes (tests/fakes/agents, first on PATH).

Each fake prints its real CLI's headless output format, really edits AGENT_LOG.md, and
misbehaves on demand (FAKE_AGENT_MODE): garbage lines, exit 2, a hang past the timeout, a
crash mid-stream, a blocked answer. Process-group cleanup is checked on the pids the fakes
record, not assumed.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.secrets.redact import Redactor
from worker_image.agents import AgentEvent, AgentResult, get_adapter, run_agent

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "agents"
AGENTS = ["claude-code", "factory-droid", "codex", "command"]
CLIS = {"claude-code": "claude", "factory-droid": "droid", "codex": "codex"}
PROMPT = "Implement TASK.md\nsecond line of the prompt"
SECRET = "s3cr3t-Value-42"

# Tokens and cost each fake reports (claude counts cached prompt tokens as input: 120 + 30 + 50).
USAGE = {
    "claude-code": (200, 45, 0.0123),
    "factory-droid": (150, 60, None),
    "codex": (2000, 80, None),
    "command": (None, None, None),
}
# The cached part of the input tokens and the model each fake names (claude: the costliest in modelUsage;
# codex names none and none was asked for).
CACHE_AND_MODEL = {
    "claude-code": (80, "claude-sonnet-4-5-20250929"),
    "factory-droid": (0, "claude-sonnet-4-5-20250929"),
    "codex": (1500, None),
    "command": (None, None),
}


@pytest.fixture(autouse=True)
def fakes_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fakes first on PATH, and `python3` = this interpreter so they start fast and the same everywhere."""
    python_dir = tmp_path / "python-bin"
    python_dir.mkdir()
    (python_dir / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", os.pathsep.join([str(FAKES), str(python_dir), os.environ.get("PATH", "")]))
    monkeypatch.setenv("ORCH_AGENT_COMMAND", "command-agent")
    for key in ("FAKE_AGENT_MODE", "FAKE_AGENT_ARGV_FILE", "FAKE_AGENT_PID_FILE", "SECRET"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    (path / "TASK.md").write_text("# Task\nAdd a line to AGENT_LOG.md.\n")
    return path


@pytest.fixture
def pid_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "pids.txt"
    monkeypatch.setenv("FAKE_AGENT_PID_FILE", str(path))
    yield path
    for pid in _pids(path):  # never leak a process, even from a failing test
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    """A zombie waiting for init to reap it counts as gone: it runs nothing and holds nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _assert_all_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 2.0
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [pid for pid in pids if _alive(pid)] == [], f"processes left behind out of {pids}"


def _run(
    agent: str,
    workspace: Path,
    *,
    mode: str = "ok",
    timeout_s: float = 15.0,
    session_id: str | None = None,
    redact: Callable[[str], str] | None = None,
    on_event: Callable[[AgentEvent], None] | None = None,
    env: dict[str, str] | None = None,
    settings: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[AgentResult, list[AgentEvent]]:
    os.environ["FAKE_AGENT_MODE"] = mode  # restored by the autouse fixture's monkeypatch.delenv
    events: list[AgentEvent] = []

    def collect(event: AgentEvent) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    result = run_agent(
        get_adapter(agent, settings),
        PROMPT,
        workspace,
        timeout_s=timeout_s,
        on_event=collect,
        session_id=session_id,
        env=env,
        redact=redact,
        **kwargs,
    )
    return result, events


@pytest.mark.parametrize("agent", AGENTS)
def test_ok_run_edits_the_workspace_and_reports_usage(agent: str, workspace: Path) -> None:
    # when
    result, events = _run(agent, workspace)
    # then
    assert (result.status, result.reason, result.exit_code) == ("success", None, 0)
    # the command agent's answer is the tail of its stdout; the CLIs report their last message
    assert result.final_answer.splitlines()[-1] == "Done: appended a line to AGENT_LOG.md."
    assert agent == "command" or result.final_answer == "Done: appended a line to AGENT_LOG.md."
    log_lines = (workspace / "AGENT_LOG.md").read_text().splitlines()
    assert log_lines == [f"- {CLIS.get(agent, 'command')}: Implement TASK.md"]
    assert (result.input_tokens, result.output_tokens, result.cost_usd) == USAGE[agent]
    assert (result.cache_tokens, result.model) == CACHE_AND_MODEL[agent]
    assert 0 < result.duration_ms < 10_000
    kinds = [e.kind for e in events]
    if agent == "command":
        assert result.session_id is None
        assert kinds == ["text"] * 4
        assert events[0].text == f"task file: {workspace / 'TASK.md'} (present)"
    else:
        assert kinds[0] == "session" and kinds[-1] == "result" and "tool" in kinds
        assert result.session_id and result.session_id == events[0].data["session_id"]
        assert "raw" not in kinds


EXPECTED_MODES: dict[tuple[str, str], tuple[str, str | None]] = {
    **{(agent, "malformed"): ("success", None) for agent in AGENTS},
    **{(agent, "exit2"): ("failed", "exit code 2: ") for agent in AGENTS},
    **{(agent, "blocked"): ("blocked", "need the API token") for agent in AGENTS},
    ("claude-code", "crash"): ("failed", "crashed mid-stream: no result event"),
    ("factory-droid", "crash"): ("failed", "crashed mid-stream: no completion event"),
    ("codex", "crash"): ("failed", "crashed mid-stream: no turn.completed event"),
    # a plain command cannot say "I crashed": it dies, and /bin/sh reports the signal as 128 + 6
    ("command", "crash"): ("failed", "exit code 134 (SIGABRT)"),
}


@pytest.mark.parametrize(("agent", "mode"), sorted(EXPECTED_MODES))
def test_each_mode_gives_its_status_and_reason(agent: str, mode: str, workspace: Path) -> None:
    result, events = _run(agent, workspace, mode=mode)
    status, reason = EXPECTED_MODES[(agent, mode)]
    assert result.status == status, result
    if reason is None:
        assert result.reason is None
    else:
        assert result.reason is not None and result.reason.startswith(reason), result.reason
    if mode == "exit2":
        assert result.exit_code == 2
        assert "simulated failure" in result.output_tail
    if mode == "malformed" and agent != "command":
        raw = [e.text for e in events if e.kind == "raw"]
        assert raw == [
            "this is not json",
            '{"type": "assistant", "message": {"content": [',
            "\x1b[33mwarning:\x1b[0m something odd on stdout",
            "[1, 2, 3]",
        ]
    if mode == "blocked":
        assert result.final_answer.splitlines()[-1] == "BLOCKED: need the API token"
    if mode == "crash" and agent != "command":
        assert result.final_answer == "I'll record the task in AGENT_LOG.md."


@pytest.mark.parametrize("agent", AGENTS)
def test_session_id_is_passed_to_resume(
    agent: str, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_AGENT_ARGV_FILE", str(argv_file))
    # when
    first, _ = _run(agent, workspace)
    first_argv = json.loads(argv_file.read_text())
    resume_id = first.session_id or "sess-123"
    resumed, _ = _run(agent, workspace, session_id=resume_id)
    argv = json.loads(argv_file.read_text())
    # then
    if agent == "command":  # a plain command has no session ids (its memory is a folder)
        assert argv == first_argv == []
        assert resumed.session_id is None
        return
    assert resume_id not in first_argv
    assert resumed.session_id == resume_id
    flag = {"claude-code": "--resume", "factory-droid": "--session-id", "codex": "resume"}[agent]
    assert argv[argv.index(flag) + 1] == resume_id
    if agent == "codex":
        assert argv.index("resume") > argv.index("--skip-git-repo-check")
        assert argv[-1] == PROMPT


@pytest.mark.parametrize("agent", AGENTS)
def test_hang_past_the_timeout_kills_the_whole_group(agent: str, workspace: Path, pid_file: Path) -> None:
    # when
    started = time.monotonic()
    result, events = _run(agent, workspace, mode="hang", timeout_s=1.5)
    elapsed = time.monotonic() - started
    # then
    assert (result.status, result.reason) == ("failed", "timeout after 1.5s")
    assert 1.4 < elapsed < 4.5
    assert events, "the first event streams before the timeout"
    pids = _pids(pid_file)
    assert len(pids) == 2, "the fake and the child it started"
    _assert_all_gone(pids)


def test_a_runaway_spender_is_stopped_at_its_budget_with_its_whole_group(
    workspace: Path, pid_file: Path
) -> None:
    # given: a command agent that leaves a child in the background, then reports $0.50 more every 0.2 s
    dev_agent = shlex.quote(str(FAKES / "dev-agent"))
    command = f"sleep 300 & echo $! >> {pid_file}; echo $$ >> {pid_file}; FAKE_DEV_SPEND=0.5 exec {dev_agent}"
    # when: $1 left, and a timeout far away
    result, events = _run("command", workspace, settings={"command": command}, timeout_s=120, budget_usd=1.0)
    # then: stopped at the third report ($1.50 > $1.00), like a timeout but named as the budget
    assert (result.status, result.cost_usd) == ("budget", 1.5)
    assert result.reason == "budget: spent $1.50 of the $1.00 left"
    assert [e.kind for e in events if e.kind == "usage"] == ["usage"] * 3
    _assert_all_gone(_pids(pid_file))


def test_an_agent_ignoring_sigterm_is_killed(
    workspace: Path, pid_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_IGNORE_SIGTERM", "1")
    result, _ = _run("claude-code", workspace, mode="hang", timeout_s=1.0, kill_grace_s=0.5)
    assert result.reason == "timeout after 1s"
    assert result.exit_code == -9
    _assert_all_gone(_pids(pid_file))


def test_background_processes_die_with_a_finished_agent(
    workspace: Path, pid_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_AGENT_BACKGROUND", "1")
    result, _ = _run("claude-code", workspace)
    assert result.status == "success"
    pids = _pids(pid_file)
    assert len(pids) == 2
    _assert_all_gone(pids)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_an_exception_in_the_caller_still_kills_the_agent(
    interrupt: type[BaseException], workspace: Path, pid_file: Path
) -> None:
    def explode(event: AgentEvent) -> None:
        deadline = time.monotonic() + 5
        while len(_pids(pid_file)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # let the fake start its child first, so the test sees both
        raise interrupt("stop")

    started = time.monotonic()
    with pytest.raises(interrupt):
        _run("codex", workspace, mode="hang", timeout_s=30, on_event=explode)
    assert time.monotonic() - started < 5
    _assert_all_gone(_pids(pid_file))


@pytest.mark.parametrize("agent", AGENTS)
def test_secrets_are_redacted_from_everything_that_leaves(
    agent: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the fake prints $SECRET in a message and on stderr
    monkeypatch.setenv("SECRET", SECRET)
    # when
    result, events = _run(agent, workspace, mode="exit2", redact=Redactor([SECRET]).redact)
    # then
    leaked = [e for e in events if SECRET in e.text or SECRET in json.dumps(e.data)]
    assert leaked == []
    assert any("***" in e.text for e in events)
    for text in (result.final_answer, result.reason or "", result.output_tail):
        assert SECRET not in text
    assert "debug: using token ***" in result.output_tail


@pytest.mark.parametrize("agent", list(CLIS))
def test_a_missing_executable_is_a_failed_result(
    agent: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(workspace))
    result, events = _run(agent, workspace)
    assert (result.status, result.reason, result.exit_code) == (
        "failed",
        f"{CLIS[agent]} not found on PATH",
        None,
    )
    assert events == []
    absolute, _ = _run(agent, workspace, settings={"bin": "/nonexistent/agent"})
    assert absolute.reason == "/nonexistent/agent not found"


def test_a_missing_command_is_a_failed_result(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_AGENT_COMMAND", "no-such-agent-xyz --go")
    result, _ = _run("command", workspace)
    assert result.status == "failed"
    assert result.exit_code == 127
    assert result.reason is not None and result.reason.startswith("exit code 127 (command not found): ")
    assert "no-such-agent-xyz" in result.reason


@pytest.mark.parametrize("agent", list(CLIS))
def test_a_huge_prompt_goes_through_stdin(agent: str, workspace: Path) -> None:
    os.environ["FAKE_AGENT_MODE"] = "ok"
    prompt = "Implement the huge spec\n" + "x" * 200_000
    result = run_agent(get_adapter(agent), prompt, workspace, timeout_s=15, on_event=lambda e: None)
    assert result.status == "success", result.reason
    assert (workspace / "AGENT_LOG.md").read_text() == f"- {CLIS[agent]}: Implement the huge spec\n"


def test_env_is_the_whole_environment_of_the_agent(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a variable of the wrapper the agent must not see
    monkeypatch.setenv("WRAPPER_ONLY", "leak")
    env = {"PATH": os.environ["PATH"], "GIVEN": "yes"}
    settings = {"command": 'echo "wrapper=${WRAPPER_ONLY:-unset} given=$GIVEN task=$ORCH_TASK_FILE"'}
    # when
    result, _ = _run("command", workspace, env=env, settings=settings)
    # then
    assert result.final_answer == f"wrapper=unset given=yes task={workspace / 'TASK.md'}"
