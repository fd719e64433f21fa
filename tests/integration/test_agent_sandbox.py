"""The agent's sandbox on real processes (tests/fakes/agents/sandbox-agent): a PATH of allowed commands, another
user when the wrapper is root (CI runs as root), and the rlimits, each stopping a misbehaving agent with a
reason a person can act on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker_image.agents import AgentEvent, AgentResult, AgentSandbox, run_agent
from worker_image.agents.command import CommandAdapter
from worker_image.agents.sandbox import resolve_user

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "agents" / "sandbox-agent"
SCRIPTS = str(Path(sys.executable).parent)  # the venv's bin: `orchestrator` is there
SYSTEM_PYTHON = "/usr/bin/python3"
"""The fake needs only the standard library; another user may not reach this venv's interpreter (under a
0700 home here)."""
as_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
    reason="needs root (to switch user) and /usr/bin/python3",
)


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A checkout-like folder outside pytest's 0700 tmp_path, so another user can reach it."""
    space = Path(tempfile.mkdtemp(prefix="agent-sandbox-"))
    space.chmod(0o711)
    path = space / "workspace"
    (path / ".git" / "hooks").mkdir(parents=True)
    (path / "TASK.md").write_text("# Task\n")
    yield path
    shutil.rmtree(space, ignore_errors=True)


def _run(mode: str, workspace: Path, sandbox: AgentSandbox, *, allowed: tuple[str, ...] = ()) -> AgentResult:
    python = SYSTEM_PYTHON if sandbox.run_as is not None else sys.executable
    adapter = CommandAdapter(command=f"{python} {FAKE} {mode}", allowed_commands=allowed)
    env = {"PATH": f"{os.environ.get('PATH', os.defpath)}{os.pathsep}{SCRIPTS}", "LANG": "C.UTF-8"}
    events: list[AgentEvent] = []
    return run_agent(adapter, "probe", workspace, 60.0, events.append, env=env, sandbox=sandbox)


def _lines(result: AgentResult) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in result.final_answer.splitlines() if ": " in line)


def test_a_restricted_command_agent_finds_only_its_allowed_commands(workspace: Path) -> None:
    # when: a worker limited to the orchestrator CLI tries other commands too
    result = _run("commands", workspace, AgentSandbox(), allowed=("orchestrator",))
    # then: the forbidden ones are not found, the allowed one runs
    assert result.status == "success", result.output_tail
    seen = _lines(result)
    assert seen["curl"].startswith("refused"), seen
    assert seen["cat"].startswith("refused (127"), seen
    assert seen["orchestrator"] == "ran", seen


def test_an_unrestricted_agent_keeps_its_path(workspace: Path) -> None:
    result = _run("commands", workspace, AgentSandbox())
    assert _lines(result)["cat"] == "ran", result.final_answer


@as_root
def test_as_root_the_agent_runs_as_another_user_and_cannot_read_the_wrapper(workspace: Path) -> None:
    # given: the wrapper (this process) holds a credential in its environment
    sandbox = AgentSandbox(run_as=resolve_user("nobody"))
    # when
    result = _run(f"identity {os.getpid()}", workspace, sandbox)
    # then: another uid, the wrapper's environment and the repository out of reach, the work tree and its
    # HOME writable
    assert result.status == "success", result.output_tail
    seen = _lines(result)
    assert seen["uid"] == "65534"
    assert seen["wrapper environ"].startswith("denied"), seen
    assert seen["git hook"].startswith("denied"), seen
    assert seen["work tree"] == "written", seen
    assert seen["home"].endswith("written"), seen
    # and afterwards the work tree is the wrapper's again (git refuses a tree owned by someone else)
    assert (workspace / "agent.txt").stat().st_uid == os.getuid()
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()


@as_root
def test_an_agent_that_forks_too_much_is_stopped_with_the_limit_named(workspace: Path) -> None:
    sandbox = AgentSandbox(run_as=resolve_user("nobody"), max_processes=30)
    result = _run("fork", workspace, sandbox)
    assert result.status == "failed"
    assert result.reason is not None and "process limit (ORCH_AGENT_MAX_PROCESSES=30" in result.reason, result
    assert "fork failed after" in result.final_answer
    deadline = time.monotonic() + 10.0  # SIGKILLed processes take a moment to go
    while _processes_of(65534) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_of(65534) == []  # the group, forked children included, was killed


def _processes_of(uid: int) -> list[int]:
    """Processes of `uid` started from the fake (whatever else `nobody` runs on this host is not ours);
    a zombie has no command line, so it does not count."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and proc.stat().st_uid == uid
                and str(FAKE) in (proc / "cmdline").read_text()
            ):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_an_agent_that_allocates_too_much_is_stopped_with_the_limit_named(workspace: Path) -> None:
    result = _run("alloc 2000", workspace, AgentSandbox(max_memory_mb=300))
    assert result.status == "failed"
    assert result.reason is not None and "memory limit (ORCH_AGENT_MAX_MEMORY_MB=300" in result.reason, result
    assert "MemoryError" in result.output_tail


def test_within_its_limits_the_same_agent_works(workspace: Path) -> None:
    result = _run("alloc 50", workspace, AgentSandbox(max_memory_mb=1000, max_open_files=256))
    assert result.status == "success", result.output_tail
    assert result.final_answer == "allocated 50 MB"


@as_root
def test_a_workspace_the_agent_user_cannot_reach_is_a_clear_failure(tmp_path: Path) -> None:
    # tmp_path's parents are 0700: `nobody` cannot cross them
    (tmp_path / "ws").mkdir()
    result = _run("commands", tmp_path / "ws", AgentSandbox(run_as=resolve_user("nobody")))
    assert result.status == "failed" and result.reason is not None
    assert "cannot reach" in result.reason and "ORCH_WORKER_WORKSPACE_ROOT" in result.reason


def test_the_fake_runs_without_a_sandbox_too(workspace: Path) -> None:
    """The probe itself works (so a refusal above is the sandbox's, not a broken fake)."""
    done = subprocess.run([sys.executable, str(FAKE), "alloc", "1"], input="", capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "allocated 1 MB"
