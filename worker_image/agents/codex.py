"""OpenAI Codex CLI in headless mode: `codex exec --json --sandbox workspace-write --skip-git-repo-check PROMPT`.

JSONL events: `thread.started` (thread_id, the id to resume), `turn.started`,
`item.started` / `item.updated` / `item.completed` with an `item` (agent_message, reasoning,
command_execution, file_change, mcp_tool_call, web_search, todo_list, error),
`turn.completed` (usage), `turn.failed` (error.message) and `error` (message). There is no
final-answer event: the answer is the last agent_message, and `turn.completed` is the result.
`turn.completed`'s usage has tokens but no cost (nor do any other events, nor the model): a codex run
reports no cost, so a budget cannot stop it mid-run; the model is the one the adapter asked for.
Resume with `codex exec [options] resume THREAD_ID PROMPT`.

**Endpoint**: codex (0.171) ignores OPENAI_BASE_URL and tries a WebSocket before HTTPS. With `base_url`
(the machine's OPENAI_BASE_URL, see `AgentEnvironment`) the adapter declares a model provider for it
(`-c model_providers.orchestrator={...}`): the Responses API over HTTPS, the key from OPENAI_API_KEY.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from worker_image.agents.base import (
    TOOL_TEXT_CHARS,
    AgentAdapter,
    AgentCommand,
    AgentEvent,
    SessionFiles,
    data_dict,
    data_int,
    data_str,
    home_dir,
    prompt_fits_argv,
    raw_event,
)

PROVIDER = "orchestrator"
"""The model provider the adapter declares for a configured endpoint (TOML strings are JSON-quoted)."""
RECONNECTING = "Reconnecting..."
"""How codex announces a retried model request (`error` events): not the end of the turn."""


@dataclass(frozen=True)
class CodexAdapter(AgentAdapter):
    """Codex; its workspace-write sandbox lets it write in the workspace, `--skip-git-repo-check` runs it
    anywhere."""

    name: ClassVar[str] = "codex"
    result_event_name: ClassVar[str] = "turn.completed"

    executable: str = "codex"
    model: str | None = None
    sandbox: Literal["full-auto", "bypass"] = "full-auto"
    extra_args: tuple[str, ...] = ()
    base_url: str | None = None

    def build_command(self, prompt: str, workspace: Path, session_id: str | None) -> AgentCommand:
        # codex 0.171 has no --full-auto any more: its workspace-write sandbox is `--sandbox workspace-write`
        # (exec never asks for approval).
        autonomy = (
            ["--sandbox", "workspace-write"]
            if self.sandbox == "full-auto"
            else ["--dangerously-bypass-approvals-and-sandbox"]
        )
        # Options belong to `exec` and go before the `resume` subcommand.
        argv = [self.executable, "exec", "--json", *autonomy, "--skip-git-repo-check"]
        if self.model:
            argv += ["--model", self.model]
        if self.base_url:
            provider = (
                f"{{name={json.dumps(PROVIDER)}, base_url={json.dumps(self.base_url)}, "
                'env_key="OPENAI_API_KEY", wire_api="responses", supports_websockets=false}'
            )
            argv += [
                "-c",
                f"model_provider={json.dumps(PROVIDER)}",
                "-c",
                f"model_providers.{PROVIDER}={provider}",
            ]
        argv += list(self.extra_args)
        if session_id:
            argv += ["resume", session_id]
        on_argv = prompt_fits_argv(prompt)
        argv.append(prompt if on_argv else "-")  # "-": read the prompt from stdin
        return AgentCommand(argv=argv, stdin_text=None if on_argv else prompt, extra_env={})

    def session_files(
        self, workspace: Path, env: Mapping[str, str], session_id: str | None
    ) -> SessionFiles | None:
        """`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread id>.jsonl` (default `~/.codex`): one
        folder for every workspace, so only the files of this thread are carried."""
        if not session_id:
            return None
        home = env.get("CODEX_HOME") or str(home_dir(env) / ".codex")
        return SessionFiles(Path(home) / "sessions", (f"**/rollout-*{session_id}.jsonl",))

    def parse_line(self, line: str) -> list[AgentEvent]:
        try:
            event = json.loads(line)
        except ValueError:
            return raw_event(line)
        if not isinstance(event, dict):
            return raw_event(line, "not a JSON object")
        kind = event.get("type")
        if kind == "thread.started":
            thread_id = data_str(event, "thread_id")
            return [
                AgentEvent(
                    kind="session",
                    text=f"thread {thread_id}" if thread_id else "thread started",
                    data={"session_id": thread_id},
                )
            ]
        if kind in ("item.started", "item.updated", "item.completed"):
            item = event.get("item")
            if not isinstance(item, dict):
                return raw_event(line, "item event without an item")
            return _item_events(kind, item)
        if kind == "turn.completed":
            usage = data_dict(event, "usage")
            return [
                AgentEvent(
                    kind="result",
                    text="",
                    data={
                        "is_error": False,
                        # cached_input_tokens is the cached part of input_tokens, not an addition.
                        "input_tokens": data_int(usage, "input_tokens"),
                        "cached_input_tokens": data_int(usage, "cached_input_tokens"),
                        "cache_tokens": data_int(usage, "cached_input_tokens"),
                        "output_tokens": data_int(usage, "output_tokens"),
                    },
                )
            ]
        if kind == "turn.failed":
            error = event.get("error")
            message = data_str(error, "message") if isinstance(error, dict) else None
            return [AgentEvent(kind="error", text=message or "turn failed", data={"fatal": True})]
        if kind == "error":
            message = data_str(event, "message") or line
            return [
                AgentEvent(kind="error", text=message, data={"fatal": not message.startswith(RECONNECTING)})
            ]
        if kind == "turn.started":
            return []
        return raw_event(line, f"unknown type {kind!r}")


def _item_events(phase: str, item: dict[str, Any]) -> list[AgentEvent]:
    item_type = item.get("type")
    done = phase == "item.completed"
    if item_type in ("agent_message", "reasoning"):
        text = data_str(item, "text")
        if not done or text is None:
            return []
        channel = "message" if item_type == "agent_message" else "reasoning"
        return [AgentEvent(kind="text", text=text, data={"channel": channel})]
    if item_type == "command_execution":
        command = str(item.get("command") or "")
        if phase == "item.started":
            return [_tool("call", "command", f"$ {command}", {"command": command})]
        if done:
            output = str(item.get("aggregated_output") or "")
            data = {"command": command, "exit_code": item.get("exit_code"), "status": item.get("status")}
            return [_tool("result", "command", output[-TOOL_TEXT_CHARS:], data)]
        return []
    if item_type == "file_change" and done:
        changes = [c for c in item.get("changes") or [] if isinstance(c, dict)]
        summary = ", ".join(f"{c.get('kind', 'update')} {c.get('path', '?')}" for c in changes)
        return [_tool("result", "file_change", summary or "file change", {"changes": changes})]
    if item_type == "mcp_tool_call" and phase == "item.started":
        name = f"{item.get('server', 'mcp')}.{item.get('tool', 'tool')}"
        arguments = item.get("arguments")
        return [_tool("call", name, name, {"arguments": arguments} if arguments is not None else {})]
    if item_type == "web_search" and done:
        query = str(item.get("query") or "")
        return [_tool("call", "web_search", f"web_search {query}", {"query": query})]
    if item_type == "error" and done:
        # A non-fatal error item (e.g. a retried request); fatal ones come as turn.failed / error.
        return [AgentEvent(kind="error", text=data_str(item, "message") or "error", data={"fatal": False})]
    return []


def _tool(phase: str, name: str, text: str, data: dict[str, Any]) -> AgentEvent:
    return AgentEvent(kind="tool", text=text, data={"phase": phase, "name": name, **data})
