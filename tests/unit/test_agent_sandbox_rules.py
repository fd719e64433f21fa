"""The sandbox's rules without running an agent: whom it runs as, which limit a failure names, which
commands stay findable, and how each adapter limits commands (or refuses to)."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from worker_image.agents import AgentSandbox, get_adapter
from worker_image.agents.sandbox import program_of, resolve_user


def test_the_agent_keeps_the_wrappers_user_unless_the_wrapper_is_root() -> None:
    assert resolve_user("nobody", is_root=False) is None
    assert resolve_user("none", is_root=True) is None
    nobody = resolve_user("nobody", is_root=True)
    assert nobody is not None and nobody.uid == 65534
    numeric = resolve_user("12345:23456", is_root=True)
    assert numeric is not None and (numeric.uid, numeric.gid) == (12345, 23456)


@pytest.mark.parametrize("spec", ["no-such-user-here", "root"])
def test_a_missing_user_or_root_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="ORCH_AGENT_USER"):
        resolve_user(spec, is_root=True)


def test_the_process_limit_applies_only_under_the_agents_own_uid() -> None:
    shared = AgentSandbox(max_memory_mb=100, max_processes=10, max_open_files=50)
    assert dict(shared.rlimits()) == {resource.RLIMIT_AS: 100 * 1024 * 1024, resource.RLIMIT_NOFILE: 50}
    own = AgentSandbox(run_as=resolve_user("nobody", is_root=True), max_processes=10)
    assert dict(own.rlimits()) == {resource.RLIMIT_NPROC: 10}


@pytest.mark.parametrize(
    ("tail", "named"),
    [
        ("Traceback ...\nMemoryError", "memory limit (ORCH_AGENT_MAX_MEMORY_MB=256"),
        ("bash: fork: retry: Resource temporarily unavailable", "process limit (ORCH_AGENT_MAX_PROCESSES=20"),
        ("OSError: [Errno 24] Too many open files", "open-file limit (ORCH_AGENT_MAX_OPEN_FILES=64"),
    ],
)
def test_a_failure_names_the_limit_it_shows_signs_of(tail: str, named: str) -> None:
    sandbox = AgentSandbox(
        run_as=resolve_user("nobody", is_root=True), max_memory_mb=256, max_processes=20, max_open_files=64
    )
    hint = sandbox.limit_hint(tail)
    assert hint is not None and named in hint
    assert sandbox.limit_hint("exit code 2: tests failed") is None
    assert AgentSandbox().limit_hint(tail) is None  # no limit set: none to blame


def test_the_agents_own_program_and_its_interpreter_stay_findable(tmp_path: Path) -> None:
    script = tmp_path / "my-agent"
    script.write_text("#!/usr/bin/env -S python3 -u\nprint('hi')\n")
    script.chmod(0o755)
    assert program_of("my-agent --fast", str(tmp_path)) == ["my-agent", "python3"]
    assert program_of(f"MODE=x {script} --fast", None) == ["python3"]
    assert program_of("/bin/true", None) == []


def test_claude_limited_to_commands_gets_only_bash_for_those_commands() -> None:
    argv = get_adapter("claude-code", {"allowed_commands": ["orchestrator"]}).build_command(
        "hi", Path("/w"), None
    )[0]
    assert "bypassPermissions" not in argv
    assert argv[argv.index("--permission-mode") + 1] == "dontAsk"
    assert argv[argv.index("--tools") + 1] == "Bash"
    assert argv[argv.index("--allowedTools") + 1] == "Bash(orchestrator:*)"
    assert argv[argv.index("--setting-sources") + 1] == ""  # no settings file can add an allow rule


def test_an_unlimited_claude_keeps_todays_flags() -> None:
    argv = get_adapter("claude-code", {"permissions": "bypass"}).build_command("hi", Path("/w"), None)[0]
    assert "--tools" not in argv and argv[argv.index("--permission-mode") + 1] == "bypassPermissions"


@pytest.mark.parametrize("agent", ["codex", "factory-droid"])
def test_agents_that_cannot_limit_commands_refuse_a_limited_worker(agent: str) -> None:
    with pytest.raises(ValueError, match="cannot limit the agent to the commands"):
        get_adapter(agent, {"allowed_commands": ["orchestrator"]})
    assert get_adapter(agent, {}) is not None


def test_a_limited_command_agent_has_a_path_of_its_commands() -> None:
    adapter = get_adapter("command", {"command": "/bin/true", "allowed_commands": ["orchestrator"]})
    assert adapter.command_path({"PATH": "/usr/bin"}) == ["orchestrator"]
    assert get_adapter("command", {"command": "/bin/true"}).command_path({}) is None
