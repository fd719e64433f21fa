"""The adapters without processes: command lines, line parsing and the verdict on recorded streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker_image.agents import (
    AgentEnvironment,
    AgentEvent,
    ClaudeCodeAdapter,
    CodexAdapter,
    CommandAdapter,
    FactoryDroidAdapter,
    get_adapter,
    known_agents,
)
from worker_image.agents.base import OUTPUT_TAIL_CHARS, AgentAdapter, blocked_reason, exit_reason
from worker_image.agents.process import combine_tails, redact_event

WORKSPACE = Path("/work/ws")
SESSION = "5f1d7c1e-0000-4000-8000-000000000001"


def _lines(*events: dict[str, Any] | str) -> list[str]:
    return [e if isinstance(e, str) else json.dumps(e) for e in events]


# Streams in each CLI's real headless format (trimmed to the fields the adapters read).
CLAUDE_OK = _lines(
    {
        "type": "system",
        "subtype": "init",
        "session_id": SESSION,
        "model": "claude-sonnet-4-5",
        "tools": ["Edit"],
    },
    {"type": "assistant", "message": {"content": [{"type": "thinking", "thinking": "plan"}]}},
    {
        "type": "assistant",
        "message": {"content": [{"type": "text", "text": "Editing."}]},
        "session_id": SESSION,
    },
    {
        "type": "assistant",
        "message": {
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "Edit", "input": {"file_path": "app.py"}}
            ]
        },
    },
    {
        "type": "user",
        "message": {"content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "updated"}]},
    },
    {"type": "stream_event", "event": {"type": "content_block_delta"}},
    {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "All done.",
        "session_id": SESSION,
        "total_cost_usd": 0.5,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 100,
            "output_tokens": 7,
        },
        "modelUsage": {
            "claude-haiku-4-5": {"inputTokens": 3, "costUSD": 0.01},
            "claude-sonnet-4-5": {"inputTokens": 112, "costUSD": 0.49},
        },
        "duration_ms": 900,
        "num_turns": 2,
    },
)
DROID_OK = _lines(
    {"type": "system", "subtype": "init", "session_id": SESSION, "model": "gpt-5-codex", "tools": []},
    {"type": "message", "role": "user", "text": "the prompt", "session_id": SESSION},
    {"type": "message", "role": "assistant", "text": "Editing.", "session_id": SESSION},
    {"type": "tool_call", "id": "c1", "toolName": "Execute", "parameters": {"command": "pytest -q"}},
    {"type": "tool_result", "id": "c1", "isError": False, "value": "3 passed"},
    {
        "type": "completion",
        "finalText": "All done.",
        "numTurns": 2,
        "durationMs": 1500,
        "session_id": SESSION,
        "usage": {"input_tokens": 40, "output_tokens": 9},
    },
)
CODEX_OK = _lines(
    {"type": "thread.started", "thread_id": SESSION},
    {"type": "turn.started"},
    {"type": "item.completed", "item": {"id": "i0", "type": "reasoning", "text": "plan"}},
    {
        "type": "item.started",
        "item": {"id": "i1", "type": "command_execution", "command": "ls", "status": "in_progress"},
    },
    {
        "type": "item.completed",
        "item": {
            "id": "i1",
            "type": "command_execution",
            "command": "ls",
            "aggregated_output": "a\n",
            "exit_code": 0,
        },
    },
    {
        "type": "item.completed",
        "item": {"id": "i2", "type": "file_change", "changes": [{"path": "a", "kind": "add"}]},
    },
    {"type": "item.completed", "item": {"id": "i3", "type": "agent_message", "text": "All done."}},
    {
        "type": "turn.completed",
        "usage": {"input_tokens": 300, "cached_input_tokens": 200, "output_tokens": 20},
    },
)
ADAPTERS: dict[str, AgentAdapter] = {
    "claude-code": ClaudeCodeAdapter(),
    "factory-droid": FactoryDroidAdapter(),
    "codex": CodexAdapter(),
    "command": CommandAdapter(command="./agent.sh"),
}
STRUCTURED = ["claude-code", "factory-droid", "codex"]
OK_STREAMS = {"claude-code": CLAUDE_OK, "factory-droid": DROID_OK, "codex": CODEX_OK}


def _parse(adapter: AgentAdapter, lines: list[str]) -> list[AgentEvent]:
    return [event for line in lines for event in adapter.parse_line(line)]


def _finish(
    adapter: AgentAdapter,
    lines: list[str],
    exit_code: int | None = 0,
    timed_out: bool = False,
    tail: str = "",
) -> Any:
    return adapter.finish(_parse(adapter, lines), exit_code, timed_out, tail, 1234)


# --- registry --------------------------------------------------------------------------------------------


def test_registry_knows_the_four_agents_and_their_instruction_files() -> None:
    assert known_agents() == ["claude-code", "codex", "command", "factory-droid"]
    env = AgentEnvironment(agent_command="./agent.sh")
    files = {name: get_adapter(name, env=env).instructions_file for name in known_agents()}
    assert files == {
        "claude-code": "CLAUDE.md",
        "codex": "AGENTS.md",
        "command": "AGENTS.md",
        "factory-droid": "AGENTS.md",
    }


def test_unknown_agent_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown agent 'gemini'; known agents: claude-code, codex"):
        get_adapter("gemini")


def test_command_agent_without_a_command_line_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="ORCH_AGENT_COMMAND"):
        get_adapter("command")


def test_executables_come_from_the_env_and_job_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    monkeypatch.setenv("ORCH_CLAUDE_BIN", "/opt/claude/bin/claude")
    monkeypatch.setenv("ORCH_DROID_BIN", "droid-nightly")
    monkeypatch.setenv("ORCH_CODEX_BIN", "codex-1")
    monkeypatch.setenv("ORCH_AGENT_COMMAND", "python agent.py")
    # when
    argv0 = {name: get_adapter(name).build_command("p", WORKSPACE, None).argv[0] for name in STRUCTURED}
    # then
    assert argv0 == {
        "claude-code": "/opt/claude/bin/claude",
        "factory-droid": "droid-nightly",
        "codex": "codex-1",
    }
    assert get_adapter("command").build_command("p", WORKSPACE, None).argv == [
        "/bin/sh",
        "-c",
        "python agent.py",
    ]
    assert (
        get_adapter("claude-code", {"bin": "my-claude"}).build_command("p", WORKSPACE, None).argv[0]
        == "my-claude"
    )


def test_unknown_job_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="modle"):
        get_adapter("claude-code", {"modle": "opus"})


# --- command lines ---------------------------------------------------------------------------------------


def test_claude_command_line() -> None:
    adapter = get_adapter("claude-code", {"model": "opus", "max_turns": 40, "permissions": "bypass"})
    command = adapter.build_command("Implement TASK.md", WORKSPACE, None)
    assert command.argv == [
        "claude",
        "-p",
        "Implement TASK.md",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "bypassPermissions",
        "--model",
        "opus",
        "--max-turns",
        "40",
    ]
    assert command.stdin_text is None
    resumed = adapter.build_command("go on", WORKSPACE, SESSION).argv
    assert resumed[-2:] == ["--resume", SESSION]


@pytest.mark.parametrize(("euid", "mode"), [(0, "dontAsk"), (1000, "bypassPermissions")])
def test_claude_permissions_follow_the_user(euid: int, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI refuses bypassPermissions as root: root gets dontAsk with the tools allowed by name."""
    monkeypatch.setattr("os.geteuid", lambda: euid)
    argv = get_adapter("claude-code").build_command("p", WORKSPACE, None).argv
    at = argv.index("--permission-mode")
    assert argv[at + 1] == mode
    if euid == 0:
        assert argv[at + 2] == "--allowedTools" and {"Bash", "Edit", "Write"} <= set(argv[at + 3].split(","))
    else:
        assert "--allowedTools" not in argv


def test_claude_disallowed_tools_and_explicit_allowlist() -> None:
    argv = (
        get_adapter(
            "claude-code", {"permissions": "allowlist", "disallowed_tools": ["Bash(git push *)", "WebFetch"]}
        )
        .build_command("p", WORKSPACE, None)
        .argv
    )
    assert "dontAsk" in argv
    assert argv[argv.index("--disallowedTools") + 1] == "Bash(git push *),WebFetch"


def test_droid_command_line() -> None:
    command = get_adapter("factory-droid", {"model": "gpt-5-codex"}).build_command(
        "Do it", WORKSPACE, SESSION
    )
    assert command.argv == [
        "droid",
        "exec",
        "--output-format",
        "stream-json",
        "--auto",
        "high",
        "--model",
        "gpt-5-codex",
        "--session-id",
        SESSION,
        "Do it",
    ]


def test_codex_command_line_puts_options_before_resume() -> None:
    adapter = get_adapter("codex", {"model": "gpt-5"})
    assert adapter.build_command("Do it", WORKSPACE, None).argv == [
        "codex",
        "exec",
        "--json",
        "--sandbox",
        "workspace-write",
        "--skip-git-repo-check",
        "--model",
        "gpt-5",
        "Do it",
    ]
    assert adapter.build_command("Go on", WORKSPACE, SESSION).argv[-3:] == ["resume", SESSION, "Go on"]
    bypass = get_adapter("codex", {"sandbox": "bypass"}).build_command("x", WORKSPACE, None).argv
    assert "--dangerously-bypass-approvals-and-sandbox" in bypass and "--sandbox" not in bypass


@pytest.mark.parametrize("agent", STRUCTURED)
@pytest.mark.parametrize("prompt", ["x" * 200_000, "-rf looks like an option"])
def test_long_or_dash_prompts_go_through_stdin(agent: str, prompt: str) -> None:
    command = ADAPTERS[agent].build_command(prompt, WORKSPACE, None)
    assert command.stdin_text == prompt
    assert prompt not in command.argv


def test_command_agent_gets_prompt_on_stdin_and_the_task_file_in_env() -> None:
    command = ADAPTERS["command"].build_command("the prompt", WORKSPACE, SESSION)
    assert command.argv == ["/bin/sh", "-c", "./agent.sh"]
    assert command.stdin_text == "the prompt"
    assert command.extra_env == {
        "ORCH_TASK_FILE": str(WORKSPACE / "TASK.md"),
        "ORCH_AGENT_SESSION_DIR": str(WORKSPACE.parent / f"{WORKSPACE.name}.session"),  # beside, not inside
    }


# --- parsing ---------------------------------------------------------------------------------------------


def test_claude_stream_becomes_events() -> None:
    events = _parse(ADAPTERS["claude-code"], CLAUDE_OK)
    assert [e.kind for e in events] == ["session", "text", "text", "tool", "tool", "result"]
    assert events[0].data["session_id"] == SESSION
    assert events[1].data["channel"] == "reasoning"
    assert events[3].text == "Edit app.py" and events[3].data["input"] == {"file_path": "app.py"}
    assert events[4].data["phase"] == "result" and events[4].text == "updated"
    assert events[5].data["input_tokens"] == 115 and events[5].data["cost_usd"] == 0.5


def test_droid_stream_becomes_events() -> None:
    events = _parse(ADAPTERS["factory-droid"], DROID_OK)
    assert [e.kind for e in events] == ["session", "text", "tool", "tool", "result"]
    assert events[1].text == "Editing."  # the user message (our prompt) is not echoed back
    assert events[2].text == "Execute pytest -q"
    assert events[4].text == "All done." and events[4].data["num_turns"] == 2


def test_codex_stream_becomes_events() -> None:
    events = _parse(ADAPTERS["codex"], CODEX_OK)
    assert [e.kind for e in events] == ["session", "text", "tool", "tool", "tool", "text", "result"]
    assert events[2].text == "$ ls"
    assert events[3].data["exit_code"] == 0
    assert events[4].text == "add a"
    assert events[6].data == {
        "is_error": False,
        "input_tokens": 300,
        "cached_input_tokens": 200,
        "cache_tokens": 200,
        "output_tokens": 20,
    }


GARBAGE = [
    "not json at all",
    "{broken",
    "null",
    "[1, 2]",
    "42",
    "{}",
    '{"type": 5}',
    '{"type": "assistant", "message": null}',
    '{"type": "assistant", "message": {"content": "plain string content"}}',
    '{"type": "assistant", "message": {"content": [null, 3, {"type": "tool_use", "input": "x"}]}}',
    '{"type": "user", "message": {"content": [{"type": "tool_result", "content": [{"text": 1}]}]}}',
    '{"type": "result", "usage": "lots", "total_cost_usd": "free"}',
    '{"type": "item.completed", "item": "x"}',
    '{"type": "item.completed", "item": {"type": "file_change", "changes": [1, null]}}',
    '{"type": "turn.failed", "error": "no dict"}',
    '{"type": "tool_call", "parameters": [1]}',
    '{"type": "tool_result", "value": {"nested": true}}',
    '{"type": "completion", "usage": null}',
    "\x00\x1b[31m\udcff",
]


@pytest.mark.parametrize("agent", list(ADAPTERS))
def test_parse_line_never_raises_and_keeps_garbage_as_raw(agent: str) -> None:
    adapter = ADAPTERS[agent]
    for line in GARBAGE:
        events = adapter.parse_line(line)
        assert all(isinstance(e, AgentEvent) for e in events)
    if agent != "command":
        assert adapter.parse_line("not json at all") == [
            AgentEvent(kind="raw", text="not json at all", data={"why": "not JSON"})
        ]
        assert [e.kind for e in adapter.parse_line('{"type": "brand_new_event"}')] == ["raw"]


# --- verdicts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "tokens", "cost"),
    [("claude-code", (115, 7), 0.5), ("factory-droid", (40, 9), None), ("codex", (300, 20), None)],
)
def test_a_complete_stream_is_a_success_with_usage(
    agent: str, tokens: tuple[int, int], cost: float | None
) -> None:
    result = _finish(ADAPTERS[agent], OK_STREAMS[agent])
    assert (result.status, result.reason, result.final_answer) == ("success", None, "All done.")
    assert (result.input_tokens, result.output_tokens, result.cost_usd) == (*tokens, cost)
    assert result.session_id == SESSION
    assert (result.exit_code, result.duration_ms) == (0, 1234)


@pytest.mark.parametrize(
    ("adapter", "lines", "cache_tokens", "model"),
    [
        # claude: cache writes + reads; the model that cost the most in modelUsage, not the init's
        (ClaudeCodeAdapter(), CLAUDE_OK, 105, "claude-sonnet-4-5"),
        (
            ClaudeCodeAdapter(model="opus"),
            [*CLAUDE_OK[:-1], json.dumps({"type": "result", "result": "ok"})],
            None,
            "claude-sonnet-4-5",
        ),
        # droid: no cache fields in this stream; the init names the model
        (FactoryDroidAdapter(), DROID_OK, None, "gpt-5-codex"),
        # codex: the cached part of the input; no event names a model, so the one asked for
        (CodexAdapter(), CODEX_OK, 200, None),
        (CodexAdapter(model="gpt-5"), CODEX_OK, 200, "gpt-5"),
    ],
)
def test_results_carry_the_cached_tokens_and_the_model(
    adapter: AgentAdapter, lines: list[str], cache_tokens: int | None, model: str | None
) -> None:
    result = _finish(adapter, lines)
    assert (result.cache_tokens, result.model) == (cache_tokens, model)


@pytest.mark.parametrize("agent", STRUCTURED)
def test_exit_zero_without_a_result_is_a_crash(agent: str) -> None:
    result = _finish(ADAPTERS[agent], OK_STREAMS[agent][:-1])
    assert result.status == "failed"
    assert result.reason.startswith("crashed mid-stream: no ")
    last_message = {"claude-code": "Editing.", "factory-droid": "Editing.", "codex": "All done."}[agent]
    assert result.final_answer == last_message  # what it said last is still reported
    assert result.session_id == SESSION


@pytest.mark.parametrize("agent", STRUCTURED)
def test_only_garbage_is_malformed_output(agent: str) -> None:
    result = _finish(ADAPTERS[agent], ["<html>502 Bad Gateway</html>", "oops"])
    assert result.status == "failed"
    assert result.reason == f"malformed output: no {agent} JSON event in 2 line(s)"


@pytest.mark.parametrize("agent", STRUCTURED)
def test_non_zero_exit_fails_with_code_and_last_line_even_after_a_result(agent: str) -> None:
    result = _finish(
        ADAPTERS[agent], OK_STREAMS[agent], exit_code=2, tail="...\n[stderr]\nError: quota exceeded"
    )
    assert result.status == "failed"
    assert result.reason == "exit code 2: Error: quota exceeded"


@pytest.mark.parametrize("agent", list(ADAPTERS))
def test_timeout_and_signals(agent: str) -> None:
    lines = OK_STREAMS.get(agent, ["working"])[:2]
    assert _finish(ADAPTERS[agent], lines, exit_code=-15, timed_out=True).reason == "timeout after 1.2s"
    assert _finish(ADAPTERS[agent], lines, exit_code=-9).reason == "killed by signal SIGKILL"


@pytest.mark.parametrize("agent", STRUCTURED)
def test_blocked_answer(agent: str) -> None:
    lines = [line.replace("All done.", "BLOCKED: need the API token") for line in OK_STREAMS[agent]]
    result = _finish(ADAPTERS[agent], lines)
    assert (result.status, result.reason) == ("blocked", "need the API token")


def test_claude_error_results_fail_even_when_is_error_is_false() -> None:
    max_turns = {"type": "result", "subtype": "error_max_turns", "is_error": False, "session_id": SESSION}
    result = _finish(ADAPTERS["claude-code"], [*CLAUDE_OK[:-1], json.dumps(max_turns)])
    assert result.status == "failed"
    assert result.reason == "agent reported an error (error_max_turns)"
    api_error = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "result": "API Error: 529 Overloaded",
    }
    result = _finish(ADAPTERS["claude-code"], [json.dumps(api_error)])
    assert result.reason == "agent reported an error (success): API Error: 529 Overloaded"


def test_codex_turn_failed_is_the_reason() -> None:
    lines = _lines(
        {"type": "thread.started", "thread_id": SESSION},
        {"type": "item.completed", "item": {"type": "error", "message": "retrying (1/5)"}},
        {"type": "turn.failed", "error": {"message": "stream disconnected"}},
    )
    assert _finish(ADAPTERS["codex"], lines).reason == "agent error: stream disconnected"
    assert _finish(ADAPTERS["codex"], lines, exit_code=1).reason == "exit code 1: stream disconnected"
    # a non-fatal error item does not spoil a completed turn
    ok = [*CODEX_OK[:-1], lines[1], CODEX_OK[-1]]
    assert _finish(ADAPTERS["codex"], ok).status == "success"


def test_codex_sums_usage_over_turns() -> None:
    result = _finish(ADAPTERS["codex"], [*CODEX_OK, CODEX_OK[-1]])
    assert (result.input_tokens, result.output_tokens) == (600, 40)


def test_droid_error_event_without_completion() -> None:
    lines = [*DROID_OK[:3], json.dumps({"type": "error", "source": "cli", "message": "model unavailable"})]
    assert _finish(ADAPTERS["factory-droid"], lines).reason == "agent error: model unavailable"


def test_command_answer_is_the_tail_of_stdout() -> None:
    lines = [f"line {i}" for i in range(80)]
    result = _finish(ADAPTERS["command"], lines)
    assert result.status == "success"
    assert result.final_answer.splitlines() == [f"line {i}" for i in range(30, 80)]
    assert (result.session_id, result.input_tokens, result.cost_usd) == (None, None, None)
    blocked = _finish(ADAPTERS["command"], ["working", "BLOCKED: need the API token"])
    assert (blocked.status, blocked.reason) == ("blocked", "need the API token")
    missing = _finish(ADAPTERS["command"], [], exit_code=127, tail="[stderr]\nsh: 1: nope: not found")
    assert missing.reason == "exit code 127 (command not found): sh: 1: nope: not found"


# --- helpers ---------------------------------------------------------------------------------------------


def test_blocked_reason_reads_the_first_or_last_line() -> None:
    assert blocked_reason("BLOCKED: need a token") == "need a token"
    assert blocked_reason("I tried.\n\nBLOCKED: no access to the repo\n") == "no access to the repo"
    assert blocked_reason("Everything is done; nothing BLOCKED: here") is None
    assert blocked_reason("") is None


def test_exit_reason_names_signals() -> None:
    assert exit_reason(2) == "exit code 2"
    assert exit_reason(-6, "core dumped") == "killed by signal SIGABRT: core dumped"
    assert exit_reason(137) == "exit code 137 (SIGKILL)"  # how /bin/sh reports a killed child


def test_combine_tails_keeps_both_streams_within_the_limit() -> None:
    assert combine_tails("out\n", "") == "out"
    both = combine_tails("o" * 10_000, "e" * 10_000)
    assert len(both) == OUTPUT_TAIL_CHARS and "\n[stderr]\n" in both
    assert both.endswith("e" * 100) and both.startswith("o")
    short_err = combine_tails("o" * 10_000, "boom")
    assert short_err.endswith("\n[stderr]\nboom") and len(short_err) == OUTPUT_TAIL_CHARS


def test_redact_event_scrubs_text_and_nested_data() -> None:
    event = AgentEvent(
        kind="tool", text="curl -H 'token: s3cret'", data={"input": {"cmd": ["s3cret"], "n": 1}}
    )
    clean = redact_event(event, lambda text: text.replace("s3cret", "***"))
    assert clean.text == "curl -H 'token: ***'"
    assert clean.data == {"input": {"cmd": ["***"], "n": 1}}
