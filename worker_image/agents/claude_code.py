"""Claude Code in headless mode: `claude -p PROMPT --output-format stream-json --verbose`.

Each stdout line is one JSON message: `system`/`init` (session id, model, tools), `assistant`
(content blocks: text, thinking, tool_use), `user` (tool_result blocks), and one final
`result` (`subtype` success | error_max_turns | error_during_execution, `is_error`, `result`,
`session_id`, `total_cost_usd`, `usage`, `modelUsage`, `duration_ms`, `num_turns`). The cost comes
only with the final `result` (assistant messages carry tokens, not dollars), so a budget stops a Claude
Code run only at its end; see docs/agent-usage.md.

**Permissions, root and not** (docs/real-agents.md): the CLI refuses `bypassPermissions` (it becomes
`--dangerously-skip-permissions`) when run as root, and headless it cannot ask anyone. So `permissions`
"auto" means: not root, `bypassPermissions` (a worker is a throwaway sandbox); root (the embedded stack on
most servers), `dontAsk` with the tools a developer round needs allowed explicitly (`--allowedTools`):
what is allowed runs, anything else is refused and reported to the model as a denied tool call, never
waits for a prompt. A root wrapper with a sandbox runs the agent as another user (worker_image/agents/sandbox.py);
"auto" looks at the wrapper's uid, and `allowlist` works under either. A worker with `allowed_commands` gets
`restricted_args` whatever `permissions` says.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from worker_image.agents.base import (
    TOOL_TEXT_CHARS,
    AgentAdapter,
    AgentCommand,
    AgentEvent,
    AgentResult,
    SessionFiles,
    data_dict,
    data_int,
    data_str,
    home_dir,
    path_slug,
    prompt_fits_argv,
    raw_event,
    tool_summary,
)

SESSION_NOT_FOUND = "No conversation found with session ID"
"""What `claude --resume ID` prints, and exits 1 with, when it has no file for that session."""
_IGNORED_TYPES = frozenset({"stream_event", "rate_limit_event"})
"""Partial-message deltas and rate-limit notices: the complete messages carry the same content."""
ALLOWED_TOOLS = (
    "Bash",
    "Edit",
    "Write",
    "Read",
    "Glob",
    "Grep",
    "NotebookEdit",
    "TodoWrite",
    "Task",
    "WebFetch",
    "WebSearch",
)
"""What a developer round may use when `bypassPermissions` is not available (root): Claude Code's built-in
tools for reading, editing and running commands, sub-agents and the web, as `bypassPermissions` would."""
Permissions = Literal["auto", "bypass", "allowlist"]


@dataclass(frozen=True)
class ClaudeCodeAdapter(AgentAdapter):
    """Claude Code; edits without asking: `bypassPermissions` (the worker is a throwaway sandbox), or as root
    `dontAsk` with `allowed_tools` (see the module's docstring)."""

    name: ClassVar[str] = "claude-code"
    instructions_file: ClassVar[str] = "CLAUDE.md"

    executable: str = "claude"
    model: str | None = None
    max_turns: int | None = None
    extra_args: tuple[str, ...] = ()
    permissions: Permissions = "auto"
    allowed_tools: tuple[str, ...] = ALLOWED_TOOLS
    disallowed_tools: tuple[str, ...] = ()
    allowed_commands: tuple[str, ...] = ()
    """When set, the agent may run only these commands: see `restricted_args`."""

    def restricted_args(self) -> list[str]:
        """Only `Bash` among the built-in tools, and only for the allowed commands (`Bash(NAME:*)`, which
        the CLI checks per sub-command: `orchestrator x && curl y` and `orchestrator $(curl y)` are refused),
        everything else refused without asking (`dontAsk`); no settings file or MCP server can add to that."""
        rules = [f"Bash({name}:*)" for name in self.allowed_commands]
        return [
            "--permission-mode",
            "dontAsk",
            "--tools",
            "Bash",
            "--allowedTools",
            ",".join(rules),
            "--setting-sources",
            "",
            "--strict-mcp-config",
        ]

    def permission_args(self) -> list[str]:
        """`--permission-mode ...` for this process's user: see the module's docstring."""
        if self.allowed_commands:
            args = self.restricted_args()
            return args + (
                ["--disallowedTools", ",".join(self.disallowed_tools)] if self.disallowed_tools else []
            )
        mode = self.permissions
        if mode == "auto":
            mode = "allowlist" if os.geteuid() == 0 else "bypass"
        args = ["--permission-mode", "bypassPermissions"]
        if mode == "allowlist":
            args = ["--permission-mode", "dontAsk", "--allowedTools", ",".join(self.allowed_tools)]
        if self.disallowed_tools:
            args += ["--disallowedTools", ",".join(self.disallowed_tools)]
        return args

    def build_command(self, prompt: str, workspace: Path, session_id: str | None) -> AgentCommand:
        argv = [self.executable, "-p"]
        on_argv = prompt_fits_argv(prompt)
        if on_argv:
            argv.append(prompt)
        argv += ["--output-format", "stream-json", "--verbose", *self.permission_args()]
        if self.model:
            argv += ["--model", self.model]
        if self.max_turns:
            argv += ["--max-turns", str(self.max_turns)]
        if session_id:
            argv += ["--resume", session_id]
        argv += list(self.extra_args)
        # Without a prompt argument, `claude -p` reads the prompt from stdin.
        return AgentCommand(argv=argv, stdin_text=None if on_argv else prompt, extra_env={})

    def session_files(self, workspace: Path, env: Mapping[str, str], session_id: str | None) -> SessionFiles:
        """`$CLAUDE_CONFIG_DIR/projects/<workspace slug>/` (default `~/.claude`): a folder per working
        directory, so a resumed session needs the same workspace path."""
        config = env.get("CLAUDE_CONFIG_DIR") or str(home_dir(env) / ".claude")
        return SessionFiles(Path(config) / "projects" / path_slug(workspace))

    def session_lost(self, result: AgentResult) -> bool:
        return result.status == "failed" and SESSION_NOT_FOUND in result.output_tail

    def parse_line(self, line: str) -> list[AgentEvent]:
        try:
            message = json.loads(line)
        except ValueError:
            return raw_event(line)
        if not isinstance(message, dict):
            return raw_event(line, "not a JSON object")
        kind = message.get("type")
        if kind == "system":
            if message.get("subtype") != "init":
                return []
            session_id = data_str(message, "session_id")
            tools = message.get("tools")
            return [
                AgentEvent(
                    kind="session",
                    text=f"session {session_id}" if session_id else "session started",
                    data={
                        "session_id": session_id,
                        "model": message.get("model"),
                        "tools": len(tools) if isinstance(tools, list) else None,
                    },
                )
            ]
        if kind == "assistant":
            return _assistant_events(message)
        if kind == "user":
            return _tool_result_events(message)
        if kind == "result":
            return [_result_event(message)]
        if kind in _IGNORED_TYPES:
            return []
        return raw_event(line, f"unknown type {kind!r}")


def _content(message: dict[str, Any]) -> list[dict[str, Any]]:
    inner = message.get("message")
    content = inner.get("content") if isinstance(inner, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def _assistant_events(message: dict[str, Any]) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    for block in _content(message):
        block_type = block.get("type")
        if block_type == "text" and isinstance(block.get("text"), str):
            events.append(AgentEvent(kind="text", text=block["text"], data={"channel": "message"}))
        elif block_type == "thinking" and isinstance(block.get("thinking"), str):
            events.append(AgentEvent(kind="text", text=block["thinking"], data={"channel": "reasoning"}))
        elif block_type == "tool_use":
            name = str(block.get("name") or "tool")
            tool_input = data_dict(block, "input")
            events.append(
                AgentEvent(
                    kind="tool",
                    text=tool_summary(name, tool_input),
                    data={"phase": "call", "name": name, "input": tool_input, "id": block.get("id")},
                )
            )
    return events


def _tool_result_events(message: dict[str, Any]) -> list[AgentEvent]:
    events: list[AgentEvent] = []
    for block in _content(message):
        if block.get("type") != "tool_result":
            continue
        content = block.get("content")
        if isinstance(content, list):
            content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        text = str(content or "")
        events.append(
            AgentEvent(
                kind="tool",
                text=text[:TOOL_TEXT_CHARS],
                data={
                    "phase": "result",
                    "id": block.get("tool_use_id"),
                    "is_error": bool(block.get("is_error")),
                },
            )
        )
    return events


def main_model(model_usage: Mapping[str, Any]) -> str | None:
    """The model that cost the most in a result's `modelUsage` ({model: {costUSD, inputTokens, ...}}):
    a run may use a small model on the side (titles, summaries), the ledger names the one doing the work."""
    costs = {
        name: float(usage.get("costUSD") or 0)
        for name, usage in model_usage.items()
        if isinstance(name, str) and name and isinstance(usage, dict)
    }
    return max(costs, key=lambda name: costs[name]) if costs else None


def _result_event(message: dict[str, Any]) -> AgentEvent:
    usage = data_dict(message, "usage")
    subtype = data_str(message, "subtype")
    cost = message.get("total_cost_usd", message.get("cost_usd"))
    return AgentEvent(
        kind="result",
        text=data_str(message, "result") or "",
        data={
            "subtype": subtype,
            # error_max_turns / error_during_execution are failures whatever is_error says.
            "is_error": bool(message.get("is_error")) or bool(subtype and subtype.startswith("error")),
            "session_id": data_str(message, "session_id"),
            # Cached prompt tokens are input tokens too (Codex counts them the same way).
            "input_tokens": data_int(
                usage, "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"
            ),
            "output_tokens": data_int(usage, "output_tokens"),
            "cache_tokens": data_int(usage, "cache_creation_input_tokens", "cache_read_input_tokens"),
            "cost_usd": cost if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
            "model": main_model(data_dict(message, "modelUsage")),
            "num_turns": message.get("num_turns"),
            "duration_ms": message.get("duration_ms"),
        },
    )
