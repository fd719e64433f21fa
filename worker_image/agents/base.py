"""One interface over every CLI coding agent, and the helpers adapters share to read and judge a run.

An adapter only knows its CLI: how to call it (`build_command`), how to read one line of its
output (`parse_line`) and how to judge the run (`finish`). `worker_image.agents.process.run_agent`
owns the process: its own process group, a hard timeout that kills the whole group, stderr kept
in a bounded buffer, secrets redacted before anything leaves, and no process left behind.
"""

from __future__ import annotations

import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

EventKind = Literal["session", "text", "tool", "result", "error", "raw", "usage"]
ResultStatus = Literal["success", "failed", "blocked", "budget"]
"""`budget`: stopped (or never started) because the running cost passed the budget the message carried."""

BLOCKED_PREFIX = "BLOCKED:"
"""An agent that cannot go on without a person (a missing token, an ambiguous spec) starts its answer so."""
OUTPUT_TAIL_CHARS = 4000
"""How much of the output a failed result carries: enough to see the error, small enough for a message."""
PROMPT_ARGV_LIMIT = 100_000
"""Linux refuses one argv string over 128 KiB (MAX_ARG_STRLEN); longer prompts go through stdin."""
_STDERR_KEEP_CHARS = 16_000
TOOL_TEXT_CHARS = 500
"""Tool output in a progress event is clipped to this: the event says what happened, the repo has the rest."""


@dataclass(frozen=True)
class AgentEvent:
    """One thing the agent did or said, normalised across CLIs (progress events are made from these).

    `data` carries the details a consumer may want: `session_id` (and `model`) on session events, `name`
    and `input` on tool calls, token counts, cost and model on result events, `fatal` on errors. A `usage`
    event is an INCREMENT of spend reported mid-run (a `command` agent's ORCHESTRATOR_USAGE line):
    `cost_usd`, `input_tokens`, `output_tokens`, `cache_tokens`, `model`; it is never progress text.
    """

    kind: EventKind
    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentResult:
    """How a run ended: what the worker reports back, whichever CLI did the work."""

    status: ResultStatus
    final_answer: str
    session_id: str | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    duration_ms: int
    exit_code: int | None
    reason: str | None
    """Why it failed or is blocked ("timeout after 30s", "exit code 2: ..."); None on success."""
    output_tail: str
    """The last ~4000 characters of stdout and stderr, for a person reading a failure."""
    cache_tokens: int | None = None
    """The cached part of `input_tokens` (read from or written to the prompt cache), where the CLI says."""
    model: str | None = None
    """The model that did (most of) the work, as the CLI names it; else the one the adapter asked for."""
    cpu_s: float | None = None
    """CPU seconds (user + system) of the run's process and of every process it waited for (a test runner
    under `make`, say), from the kernel's accounting as it was reaped; None when it never started. What the
    agent or a command cost this machine, apart from the worker's own work (issue 24 measures that)."""


class AgentCommand(NamedTuple):
    """What to execute: the argv, the text for stdin (None = no stdin) and variables to add to the env."""

    argv: list[str]
    stdin_text: str | None
    extra_env: dict[str, str]


@dataclass(frozen=True)
class SessionFiles:
    """Where a CLI keeps one workspace's session on disk: the files under `root` matching `patterns`.

    A worker saves these after each message and the next worker of the same conversation puts them
    back, at the same place, before resuming: the CLIs resume only from their own files.
    """

    root: Path
    patterns: tuple[str, ...] = ("**/*",)


def path_slug(path: Path) -> str:
    """A directory as these CLIs name its session folder: every character that is not a letter or a
    digit becomes "-" (Claude Code and Factory Droid turn "/" and "." into "-"; a stable workspace path
    uses only letters, digits, "-" and "/", so every variant of the rule gives the same name)."""
    return "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in str(path))


def home_dir(env: Mapping[str, str]) -> Path:
    """The agent's home directory (its HOME, else this process's)."""
    return Path(env.get("HOME") or os.path.expanduser("~"))


class AgentAdapter(ABC):
    """A CLI coding agent behind one interface, selected by name (see `worker_image.agents.get_adapter`)."""

    name: ClassVar[str]
    model: str | None = None
    """The model asked for (--model), if any: the run's model when its events name none (codex)."""
    instructions_file: ClassVar[str] = "AGENTS.md"
    """The file the wrapper writes the instructions to, where this CLI looks for them."""
    result_event_name: ClassVar[str] = "result"
    """How this CLI calls its final event, for failure reasons a person can match against the CLI's docs."""

    @abstractmethod
    def build_command(self, prompt: str, workspace: Path, session_id: str | None) -> AgentCommand:
        """The process to start in `workspace`; `session_id` continues an earlier session."""

    @abstractmethod
    def parse_line(self, line: str) -> list[AgentEvent]:
        """Events from one line of stdout. Never raises: what it cannot read becomes a `raw` event."""

    def session_files(
        self, workspace: Path, env: Mapping[str, str], session_id: str | None
    ) -> SessionFiles | None:
        """Where this CLI keeps the session of a run in `workspace` with environment `env` (None: it
        keeps none, or none worth carrying to another worker)."""
        return None

    def command_path(self, env: Mapping[str, str]) -> list[str] | None:
        """The only commands the agent may find on its PATH (see `worker_image.agents.sandbox.allowed_path`),
        for an adapter whose CLI cannot restrict its commands itself; None: PATH as given."""
        return None

    def session_lost(self, result: AgentResult) -> bool:
        """Whether a run failed only because the session to resume was not found (then it is run again
        as a new session rather than failing the message)."""
        return False

    def finish(
        self,
        events: Sequence[AgentEvent],
        exit_code: int | None,
        timed_out: bool,
        output_tail: str,
        duration_ms: int,
    ) -> AgentResult:
        """Judge a structured (JSON-streaming) run.

        Success needs exit 0 *and* a final result event that is not an error, because these CLIs
        exit 0 in cases where the work did not finish (a crash of the model stream, a killed tool).
        """
        result_index = _last_index(events, "result")
        result_event = events[result_index] if result_index is not None else None
        results = [e for e in events if e.kind == "result"]
        fatal = [
            (i, e)
            for i, e in enumerate(events)
            if e.kind == "error" and e.data.get("fatal", True) is not False
        ]
        final_answer = _final_answer(events, result_event)
        common: dict[str, Any] = {
            "final_answer": final_answer,
            "session_id": _session_id(events),
            "input_tokens": _sum_int(results, "input_tokens"),
            "output_tokens": _sum_int(results, "output_tokens"),
            "cost_usd": _sum_data(results, "cost_usd"),
            "cache_tokens": _sum_int(results, "cache_tokens"),
            "model": events_model(events) or self.model,
            "duration_ms": duration_ms,
            "exit_code": exit_code,
            "output_tail": output_tail,
        }
        last_error = fatal[-1][1].text if fatal else None

        def failed(reason: str) -> AgentResult:
            return AgentResult(status="failed", reason=reason, **common)

        if timed_out:
            return failed(f"timeout after {duration_ms / 1000:.1f}s")
        if exit_code != 0:
            if result_event is not None and result_event.data.get("is_error"):
                # claude exits 1 at --max-turns, after its result: the result says why, its JSON does not
                return failed(exit_reason(exit_code, _reported_error(result_event, last_error)))
            return failed(exit_reason(exit_code, last_error or last_output_line(output_tail)))
        if result_event is None:
            if events and all(e.kind == "raw" for e in events):
                return failed(f"malformed output: no {self.name} JSON event in {len(events)} line(s)")
            if last_error:
                return failed(f"agent error: {_clip(last_error)}")
            return failed(f"crashed mid-stream: no {self.result_event_name} event")
        assert result_index is not None
        if result_event.data.get("is_error"):
            return failed(_reported_error(result_event, last_error))
        late_errors = [e for i, e in fatal if i > result_index]
        if late_errors:
            return failed(f"agent error after its result: {_clip(late_errors[-1].text)}")
        return judge_answer(common)


def _reported_error(result_event: AgentEvent, last_error: str | None) -> str:
    """ "agent reported an error (error_max_turns): ..." from a final event that says the run failed."""
    subtype = result_event.data.get("subtype")
    detail = result_event.text or last_error
    return f"agent reported an error{f' ({subtype})' if subtype else ''}" + (
        f": {_clip(detail)}" if detail else ""
    )


def judge_answer(common: dict[str, Any]) -> AgentResult:
    """Success, or blocked when the answer says so (see `BLOCKED_PREFIX`)."""
    blocked = blocked_reason(common["final_answer"])
    if blocked is not None:
        return AgentResult(status="blocked", reason=blocked, **common)
    return AgentResult(status="success", reason=None, **common)


def blocked_reason(answer: str) -> str | None:
    """What the agent is blocked on, if its answer (or its last line) starts with `BLOCKED:`."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    for candidate in (lines[0], lines[-1]) if lines else ():
        if candidate.upper().startswith(BLOCKED_PREFIX):
            return candidate[len(BLOCKED_PREFIX) :].strip() or "blocked"
    return None


def exit_reason(exit_code: int | None, detail: str | None = None) -> str:
    """A short, human reason for a non-zero exit or a death by signal."""
    if exit_code is None:
        reason = "no exit code"
    elif exit_code < 0:
        try:
            reason = f"killed by signal {signal.Signals(-exit_code).name}"
        except ValueError:
            reason = f"killed by signal {-exit_code}"
    elif exit_code == 127:
        reason = "exit code 127 (command not found)"
    elif 128 < exit_code <= 128 + 64 and _signal_name(exit_code - 128):
        reason = f"exit code {exit_code} ({_signal_name(exit_code - 128)})"  # a shell's report of a signal
    else:
        reason = f"exit code {exit_code}"
    return f"{reason}: {_clip(detail)}" if detail else reason


def _signal_name(number: int) -> str | None:
    try:
        return signal.Signals(number).name
    except ValueError:
        return None


def prompt_fits_argv(prompt: str) -> bool:
    """Whether the prompt can go on the command line: not too long, and not mistakable for an option."""
    return len(prompt.encode()) <= PROMPT_ARGV_LIMIT and not prompt.startswith("-")


def data_str(obj: Mapping[str, Any], *keys: str) -> str | None:
    """The first of `keys` that holds a non-empty string (CLIs rename fields between versions)."""
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def data_dict(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    """`obj[key]` when it is a JSON object, else an empty one: a missing `usage` is not an error."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def data_int(obj: Mapping[str, Any], *keys: str) -> int | None:
    """The sum of the integer fields among `keys`; None when none is present."""
    values = [obj[k] for k in keys if isinstance(obj.get(k), int) and not isinstance(obj.get(k), bool)]
    return sum(values) if values else None


def raw_event(line: str, why: str = "not JSON") -> list[AgentEvent]:
    """A line the parser could not read, kept so nothing the agent printed is lost."""
    return [AgentEvent(kind="raw", text=line, data={"why": why})]


def tool_summary(name: str, tool_input: Mapping[str, Any]) -> str:
    """A one-line description of a tool call for progress messages: `Edit src/app.py`, `Bash pytest -q`."""
    for key in ("file_path", "path", "command", "pattern", "url", "query", "description"):
        value = tool_input.get(key)
        if isinstance(value, str) and value.strip():
            return f"{name} {value.strip().splitlines()[0][:200]}"
    return name


def _clip(text: str | None, limit: int = 300) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def last_output_line(text: str) -> str | None:
    """The last non-empty line of an output tail: usually the error message."""
    lines = [line for line in text.splitlines() if line.strip() and line.strip() != "[stderr]"]
    return lines[-1] if lines else None


def _last_index(events: Sequence[AgentEvent], kind: EventKind) -> int | None:
    for index in range(len(events) - 1, -1, -1):
        if events[index].kind == kind:
            return index
    return None


def _final_answer(events: Sequence[AgentEvent], result_event: AgentEvent | None) -> str:
    if result_event is not None and result_event.text:
        return result_event.text
    # Codex has no answer in its final event, and a crashed run has none: the last message stands in.
    for event in reversed(events):
        if event.kind == "text" and event.data.get("channel") != "reasoning":
            return event.text
    return ""


def events_model(events: Sequence[AgentEvent]) -> str | None:
    """The model the run's events name last (a result's over a session's, which comes first)."""
    found: str | None = None
    for event in events:
        value = event.data.get("model")
        if event.kind in ("session", "result", "usage") and isinstance(value, str) and value:
            found = value
    return found


def spent_usd(event: AgentEvent) -> float:
    """What an event adds to the run's cost: a result's cost (Claude Code and Droid report one per run)
    or a usage increment's; 0 for everything else."""
    value = event.data.get("cost_usd")
    if event.kind not in ("result", "usage") or isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def format_usd(amount: float) -> str:
    """Dollars for a person: cents, or up to four decimals for an amount cents would hide ($0.0123)."""
    if abs(amount - round(amount, 2)) < 5e-7:
        return f"${amount:,.2f}"
    return f"${amount:,.4f}"


def budget_reason(spent: float, budget: float) -> str:
    """Why a run was stopped (or not started) at its budget: "budget: spent $X of the $Y left"."""
    return f"budget: spent {format_usd(spent)} of the {format_usd(max(budget, 0.0))} left"


def _session_id(events: Sequence[AgentEvent]) -> str | None:
    found: str | None = None
    for event in events:
        value = event.data.get("session_id")
        if event.kind in ("session", "result") and isinstance(value, str) and value:
            found = value
    return found


def _sum_data(events: Sequence[AgentEvent], key: str) -> float | None:
    values = [
        float(e.data[key])
        for e in events
        if isinstance(e.data.get(key), int | float) and not isinstance(e.data.get(key), bool)
    ]
    return sum(values) if values else None


def _sum_int(events: Sequence[AgentEvent], key: str) -> int | None:
    total = _sum_data(events, key)
    return None if total is None else int(total)
