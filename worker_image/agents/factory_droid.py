"""Factory Droid in headless mode: `droid exec --output-format stream-json --auto high PROMPT`.

Each stdout line is one JSON event: `system`/`init` (session_id, model, tools), `message`
(role user|assistant, text), `tool_call` (toolName, parameters), `tool_result` (isError,
value), `error` (message) and one final `completion` (finalText, numTurns, durationMs,
session_id, usage). The `result` shape of `--output-format json` is read too, in case a
version streams it. Sessions continue with `--session-id`.
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


@dataclass(frozen=True)
class FactoryDroidAdapter(AgentAdapter):
    """Factory Droid; `--auto high` because its default is read-only and a worker must edit and commit."""

    name: ClassVar[str] = "factory-droid"
    result_event_name: ClassVar[str] = "completion"

    executable: str = "droid"
    model: str | None = None
    autonomy: Literal["low", "medium", "high"] = "high"
    extra_args: tuple[str, ...] = ()

    def build_command(self, prompt: str, workspace: Path, session_id: str | None) -> AgentCommand:
        argv = [self.executable, "exec", "--output-format", "stream-json", "--auto", self.autonomy]
        if self.model:
            argv += ["--model", self.model]
        if session_id:
            argv += ["--session-id", session_id]
        argv += list(self.extra_args)
        on_argv = prompt_fits_argv(prompt)
        if on_argv:
            argv.append(prompt)
        # Without a prompt argument, `droid exec` reads it from stdin (`echo ... | droid exec`).
        return AgentCommand(argv=argv, stdin_text=None if on_argv else prompt, extra_env={})

    def session_files(self, workspace: Path, env: Mapping[str, str], session_id: str | None) -> SessionFiles:
        """`~/.factory/sessions/<workspace slug>/` (`<id>.jsonl` and `<id>.settings.json` per session)."""
        return SessionFiles(home_dir(env) / ".factory" / "sessions" / path_slug(workspace))

    def session_lost(self, result: AgentResult) -> bool:
        """`droid exec --session-id` fetches the session from Factory's service, not from the local files
        (0.215): unreachable (offline, a gateway-only network) or unknown there, it exits 1 having printed
        nothing at all. Asked only when a session was being resumed; a new session then answers."""
        return result.status == "failed" and result.exit_code == 1 and not result.output_tail.strip()

    def parse_line(self, line: str) -> list[AgentEvent]:
        try:
            event = json.loads(line)
        except ValueError:
            return raw_event(line)
        if not isinstance(event, dict):
            return raw_event(line, "not a JSON object")
        kind = event.get("type")
        if kind == "system":
            if event.get("subtype") != "init":
                return []
            session_id = data_str(event, "session_id", "sessionId")
            return [
                AgentEvent(
                    kind="session",
                    text=f"session {session_id}" if session_id else "session started",
                    data={"session_id": session_id, "model": event.get("model")},
                )
            ]
        if kind == "message":
            text = data_str(event, "text", "content")
            if event.get("role") != "assistant" or text is None:
                return []  # the echo of our own prompt
            return [AgentEvent(kind="text", text=text, data={"channel": "message"})]
        if kind == "tool_call":
            name = data_str(event, "toolName", "toolId", "name") or "tool"
            params = event.get("parameters", event.get("input"))
            tool_input: dict[str, Any] = params if isinstance(params, dict) else {}
            return [
                AgentEvent(
                    kind="tool",
                    text=tool_summary(name, tool_input),
                    data={"phase": "call", "name": name, "input": tool_input, "id": event.get("id")},
                )
            ]
        if kind == "tool_result":
            value = event.get("value", event.get("result", ""))
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            return [
                AgentEvent(
                    kind="tool",
                    text=text[:TOOL_TEXT_CHARS],
                    data={"phase": "result", "id": event.get("id"), "is_error": bool(event.get("isError"))},
                )
            ]
        if kind == "error":
            message = data_str(event, "message", "error") or json.dumps(event)
            return [AgentEvent(kind="error", text=message, data={"fatal": True})]
        if kind in ("completion", "result"):
            return [_completion_event(event)]
        return raw_event(line, f"unknown type {kind!r}")


def _completion_event(event: dict[str, Any]) -> AgentEvent:
    usage = data_dict(event, "usage")
    subtype = data_str(event, "subtype")
    cost = event.get("total_cost_usd", event.get("cost_usd"))
    return AgentEvent(
        kind="result",
        text=data_str(event, "finalText", "result") or "",
        data={
            "subtype": subtype,
            "is_error": bool(event.get("is_error") or event.get("isError"))
            or bool(subtype and subtype.startswith("error")),
            "session_id": data_str(event, "session_id", "sessionId"),
            "input_tokens": data_int(
                usage, "input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"
            ),
            "output_tokens": data_int(usage, "output_tokens"),
            "cache_tokens": data_int(usage, "cache_creation_input_tokens", "cache_read_input_tokens"),
            "cost_usd": cost if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
            "model": data_str(event, "model"),
            "num_turns": event.get("numTurns", event.get("num_turns")),
            "duration_ms": event.get("durationMs", event.get("duration_ms")),
        },
    )
