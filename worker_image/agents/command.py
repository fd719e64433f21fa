"""Any program as an agent: the command line in `ORCH_AGENT_COMMAND`, run through `/bin/sh -c`.

The contract is the smallest a script can meet: the prompt on stdin, the workspace as the
working directory, the path of `TASK.md` in `ORCH_TASK_FILE`, exit 0 when done. Each stdout
line is a progress event; the final answer is the tail of stdout. Used for local runs and tests
without a paid agent, and for home-made agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from worker_image.agents.base import (
    AgentAdapter,
    AgentCommand,
    AgentEvent,
    AgentResult,
    exit_reason,
    judge_answer,
    last_output_line,
)

TASK_FILE_ENV = "ORCH_TASK_FILE"
ANSWER_LINES = 50
ANSWER_CHARS = 4000
SHELL = "/bin/sh"


@dataclass(frozen=True)
class CommandAdapter(AgentAdapter):
    """A shell command line; no sessions, no token counts, exit code is the verdict."""

    name: ClassVar[str] = "command"

    command: str

    def __post_init__(self) -> None:
        if not self.command.strip():
            raise ValueError("the command agent needs a command line (ORCH_AGENT_COMMAND is empty)")

    def build_command(self, prompt: str, workspace: Path, session_id: str | None) -> AgentCommand:
        # A session id means nothing to an arbitrary command: every run starts afresh.
        return AgentCommand(
            argv=[SHELL, "-c", self.command],
            stdin_text=prompt,
            extra_env={TASK_FILE_ENV: str(workspace / "TASK.md")},
        )

    def parse_line(self, line: str) -> list[AgentEvent]:
        return [AgentEvent(kind="text", text=line, data={"channel": "stdout"})]

    def finish(
        self,
        events: Sequence[AgentEvent],
        exit_code: int | None,
        timed_out: bool,
        output_tail: str,
        duration_ms: int,
    ) -> AgentResult:
        """Exit 0 is success (or blocked, if the answer says so); anything else fails with the tail."""
        stdout_lines = [e.text for e in events if e.kind == "text"]
        answer = "\n".join(stdout_lines[-ANSWER_LINES:]).strip()[-ANSWER_CHARS:]
        common: dict[str, Any] = {
            "final_answer": answer,
            "session_id": None,
            "input_tokens": None,
            "output_tokens": None,
            "cost_usd": None,
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
