"""Any program as an agent: the command line in `ORCH_AGENT_COMMAND`, run through `/bin/sh -c`.

The contract is the smallest a script can meet: the prompt on stdin, the workspace as the
working directory, the path of `TASK.md` in `ORCH_TASK_FILE`, exit 0 when done; a folder to remember
things in across the messages of a conversation is in `ORCH_AGENT_SESSION_DIR`. Each stdout
line is a progress event; the final answer is the tail of stdout. Used for local runs and tests
without a paid agent, and for home-made agents.

A command reports what it spends with stdout lines `ORCHESTRATOR_USAGE {json}`, each an INCREMENT since
its previous one: `{"cost_usd": 0.12, "input_tokens": 100, "output_tokens": 50, "cache_tokens": 0,
"model": "m"}` (every field optional). They are summed into the run's result, count against the
message's budget as they arrive, and are neither progress nor part of the answer (docs/agent-usage.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker_image.agents.base import (
    AgentAdapter,
    AgentCommand,
    AgentEvent,
    AgentResult,
    SessionFiles,
    events_model,
    exit_reason,
    judge_answer,
    last_output_line,
)
from worker_image.agents.sandbox import program_of

TASK_FILE_ENV = "ORCH_TASK_FILE"
SESSION_DIR_ENV = "ORCH_AGENT_SESSION_DIR"
"""A folder the command may keep its memory in: saved after each message of a conversation and put back
for the next worker of the same conversation (e.g. a person's Product Owner)."""
ANSWER_LINES = 50
ANSWER_CHARS = 4000
SHELL = "/bin/sh"
USAGE_PREFIX = "ORCHESTRATOR_USAGE"
"""Starts a stdout line that reports spend (see the module's docstring), followed by one JSON object."""


class UsageIncrement(BaseModel):
    """One ORCHESTRATOR_USAGE line: what the command spent since its previous line. Negative amounts are
    refused: a report can only add to what a budget sees."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cost_usd: Annotated[
        float, Field(ge=0, allow_inf_nan=False, description="USD spent since the last line.")
    ] = 0
    input_tokens: Annotated[int, Field(ge=0, description="Prompt tokens, the cached ones included.")] = 0
    output_tokens: Annotated[int, Field(ge=0, description="Generated tokens.")] = 0
    cache_tokens: Annotated[int, Field(ge=0, description="The cached part of input_tokens.")] = 0
    model: Annotated[str | None, Field(max_length=128, description="The model that spent it.")] = None


def parse_usage_line(line: str) -> AgentEvent | None:
    """The `usage` event of an ORCHESTRATOR_USAGE line; a non-fatal error event when its JSON is not a
    valid increment (the person sees the agent's mistake); None when the line is not a usage line."""
    head, _, rest = line.strip().partition(" ")
    if head != USAGE_PREFIX:
        return None
    try:
        usage = UsageIncrement.model_validate_json(rest or "{}")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "line"
        return AgentEvent(
            kind="error", text=f"{USAGE_PREFIX} line ignored: {where}: {first['msg']}", data={"fatal": False}
        )
    return AgentEvent(kind="usage", text="", data=usage.model_dump())


def session_dir(workspace: Path) -> Path:
    """Beside the workspace, not in it: a checkout's commits must not pick up the agent's memory."""
    return workspace.parent / f"{workspace.name}.session"


@dataclass(frozen=True)
class CommandAdapter(AgentAdapter):
    """A shell command line; its session is a folder of its own, its spend what its ORCHESTRATOR_USAGE lines
    say, exit code is the verdict."""

    name: ClassVar[str] = "command"

    command: str
    allowed_commands: tuple[str, ...] = ()
    """When set, the agent's PATH holds only these (and what starts the agent itself): see `command_path`."""

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise ValueError("the command agent needs a command line (ORCH_AGENT_COMMAND is empty)")

    def build_command(self, prompt: str, workspace: Path, session_id: str | None) -> AgentCommand:
        # A session id means nothing to an arbitrary command: what it remembers is in its session folder.
        return AgentCommand(
            argv=[SHELL, "-c", self.command],
            stdin_text=prompt,
            extra_env={
                TASK_FILE_ENV: str(workspace / "TASK.md"),
                SESSION_DIR_ENV: str(session_dir(workspace)),
            },
        )

    def command_path(self, env: Mapping[str, str]) -> list[str] | None:
        """A command line cannot be told which commands it may run: its PATH is cut down to them instead,
        plus its own program and that program's `env` interpreter, or it could not start."""
        if not self.allowed_commands:
            return None
        return [*self.allowed_commands, *program_of(self.command, env.get("PATH"))]

    def session_files(self, workspace: Path, env: Mapping[str, str], session_id: str | None) -> SessionFiles:
        return SessionFiles(session_dir(workspace))

    def parse_line(self, line: str) -> list[AgentEvent]:
        usage = parse_usage_line(line)
        if usage is not None:
            return [usage]
        return [AgentEvent(kind="text", text=line, data={"channel": "stdout"})]

    def finish(
        self,
        events: Sequence[AgentEvent],
        exit_code: int | None,
        timed_out: bool,
        output_tail: str,
        duration_ms: int,
    ) -> AgentResult:
        """Exit 0 is success (or blocked, if the answer says so); anything else fails with the tail. Usage
        is the sum of the ORCHESTRATOR_USAGE lines (None when there were none)."""
        stdout_lines = [e.text for e in events if e.kind == "text"]
        answer = "\n".join(stdout_lines[-ANSWER_LINES:]).strip()[-ANSWER_CHARS:]
        usage = [e.data for e in events if e.kind == "usage"]
        common: dict[str, Any] = {
            "final_answer": answer,
            "session_id": None,
            "input_tokens": sum(u["input_tokens"] for u in usage) if usage else None,
            "output_tokens": sum(u["output_tokens"] for u in usage) if usage else None,
            "cost_usd": round(sum(u["cost_usd"] for u in usage), 6) if usage else None,  # micro-USD
            "cache_tokens": sum(u["cache_tokens"] for u in usage) if usage else None,
            "model": events_model(events),
            "duration_ms": duration_ms,
            "exit_code": exit_code,
            "output_tail": output_tail,
        }
        if timed_out:
            return AgentResult(status="failed", reason=f"timeout after {duration_ms / 1000:.1f}s", **common)
        if exit_code != 0:
            reason = exit_reason(exit_code, last_output_line(output_tail))
            return AgentResult(status="failed", reason=reason, **common)
        return judge_answer(common)
