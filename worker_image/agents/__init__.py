"""Coding-agent adapters: one interface over Claude Code, Factory Droid, Codex and a plain command.

    adapter = get_adapter("claude-code", {"model": "sonnet"})
    result = run_agent(adapter, prompt, workspace, timeout_s=1800, on_event=publish, redact=redactor.redact)

Decisions a newcomer may question:

- **Success needs the CLI's final event**, not just exit 0: the CLIs exit 0 after some failures
  (a dropped model stream), so exit 0 without `result` / `completion` / `turn.completed` is
  "crashed mid-stream". Exit 0 with only unparsable lines is "malformed output".
- **`BLOCKED:`** at the start (or on the last line) of the final answer means "needs a person";
  the instructions tell agents to answer so, and the result is `blocked`, not `failed`.
- **The process group is killed even after a normal exit**: an agent that started a dev server
  with `&` must not leave it running in the worker. The leader is waited for without being
  reaped first, so its pid (the group id) cannot be reused before the group is killed.
- **`env` is the agent's whole environment** when given: the wrapper, which holds credentials,
  decides what the agent sees instead of passing everything on.
- **Long prompts (> 100 kB) and prompts starting with "-" go through stdin**, which each CLI
  reads when it gets no prompt argument.
- **Event formats**: Claude Code's stream-json and Codex's `exec --json` JSONL are documented;
  Factory Droid's stream-json shape (`system`/`message`/`tool_call`/`tool_result`/`completion`)
  comes from public integrations, so its parser is the most tolerant (unknown events are kept
  as `raw`, alternative field names are accepted).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker_image.agents.base import (
    BLOCKED_PREFIX,
    AgentAdapter,
    AgentCommand,
    AgentEvent,
    AgentResult,
    EventKind,
    ResultStatus,
)
from worker_image.agents.claude_code import ClaudeCodeAdapter
from worker_image.agents.codex import CodexAdapter
from worker_image.agents.command import CommandAdapter
from worker_image.agents.config import AgentEnvironment, AgentOptions
from worker_image.agents.factory_droid import FactoryDroidAdapter
from worker_image.agents.process import run_agent
from worker_image.agents.sandbox import AgentSandbox, SandboxSettings

__all__ = [
    "BLOCKED_PREFIX",
    "AgentAdapter",
    "AgentCommand",
    "AgentEnvironment",
    "AgentEvent",
    "AgentOptions",
    "AgentResult",
    "AgentSandbox",
    "ClaudeCodeAdapter",
    "CodexAdapter",
    "CommandAdapter",
    "EventKind",
    "FactoryDroidAdapter",
    "ResultStatus",
    "SandboxSettings",
    "get_adapter",
    "known_agents",
    "run_agent",
]


def _claude(options: AgentOptions, env: AgentEnvironment) -> AgentAdapter:
    return ClaudeCodeAdapter(
        executable=options.bin or env.claude_bin,
        model=options.model or env.claude_model,
        max_turns=options.max_turns,
        extra_args=options.extra_args,
        permissions=options.permissions,
        disallowed_tools=options.disallowed_tools,
        allowed_commands=options.allowed_commands,
    )


def _unrestricted(name: str, options: AgentOptions) -> None:
    """codex and droid have no way to allow one command and refuse the rest (codex's exec policy forbids
    prefixes but runs the unmatched; droid's autonomy levels always allow read-only commands such as cat):
    a worker limited to some commands does not start on them rather than run unlimited."""
    if options.allowed_commands:
        raise ValueError(
            f"{name} cannot limit the agent to the commands {list(options.allowed_commands)}: "
            "use claude-code or command for this worker"
        )


def _droid(options: AgentOptions, env: AgentEnvironment) -> AgentAdapter:
    _unrestricted(FactoryDroidAdapter.name, options)
    return FactoryDroidAdapter(
        executable=options.bin or env.droid_bin,
        model=options.model or env.droid_model,
        autonomy=options.autonomy,
        extra_args=options.extra_args,
    )


def _codex(options: AgentOptions, env: AgentEnvironment) -> AgentAdapter:
    _unrestricted(CodexAdapter.name, options)
    return CodexAdapter(
        executable=options.bin or env.codex_bin,
        model=options.model or env.codex_model,
        sandbox=options.sandbox,
        extra_args=options.extra_args,
        base_url=env.openai_base_url,
    )


def _command(options: AgentOptions, env: AgentEnvironment) -> AgentAdapter:
    command = options.command or env.agent_command
    if not command or not command.strip():
        raise ValueError(
            "the command agent needs a command line in ORCH_AGENT_COMMAND, set where the stack starts: "
            "restart it with it (orchestrator local down && ORCH_AGENT_COMMAND='./my-agent' orchestrator "
            "local up --detach); run through /bin/sh -c, prompt on stdin, TASK.md path in ORCH_TASK_FILE"
        )
    return CommandAdapter(command=command, allowed_commands=options.allowed_commands)


_FACTORIES: dict[str, Callable[[AgentOptions, AgentEnvironment], AgentAdapter]] = {
    ClaudeCodeAdapter.name: _claude,
    FactoryDroidAdapter.name: _droid,
    CodexAdapter.name: _codex,
    CommandAdapter.name: _command,
}


def known_agents() -> list[str]:
    """The names `get_adapter` accepts."""
    return sorted(_FACTORIES)


def get_adapter(
    name: str, settings: Mapping[str, Any] | None = None, *, env: AgentEnvironment | None = None
) -> AgentAdapter:
    """The adapter for `name`, configured from the job's `settings` and the machine's env (`ORCH_*_BIN`,
    `ORCH_AGENT_COMMAND`). Raises ValueError for an unknown name, unknown settings or a missing command."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(known_agents())}")
    options = AgentOptions.model_validate(dict(settings or {}))
    return factory(options, env or AgentEnvironment())
