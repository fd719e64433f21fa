"""`run_agent`: the one place that runs a CLI coding agent as a process.

The process gets its own process group and a hard timeout that kills the whole group; stdout goes
line by line to the adapter's parser, stderr into a bounded buffer, and secrets are redacted before
anything leaves. Whatever happens (a timeout, an exception in `on_event`, a normal exit), no process
of the group is left behind.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, Literal

from worker_image.agents.base import (
    OUTPUT_TAIL_CHARS,
    AgentAdapter,
    AgentCommand,
    AgentEvent,
    AgentResult,
    budget_reason,
    raw_event,
    spent_usd,
)
from worker_image.agents.sandbox import AgentSandbox, allowed_path, protect_wrapper

KILL_GRACE_S = 3.0
"""Time between SIGTERM and SIGKILL: lets an agent flush its session file, not long enough to matter."""
_STDERR_KEEP_CHARS = 16_000

_PipeThreads = list[tuple[threading.Thread, IO[bytes]]]
"""Each thread that serves one of the agent's pipes, with that pipe."""


def run_agent(
    adapter: AgentAdapter,
    prompt: str,
    workspace: Path,
    timeout_s: float,
    on_event: Callable[[AgentEvent], None],
    session_id: str | None = None,
    env: Mapping[str, str] | None = None,
    redact: Callable[[str], str] | None = None,
    *,
    kill_grace_s: float = KILL_GRACE_S,
    sandbox: AgentSandbox | None = None,
    budget_usd: float | None = None,
) -> AgentResult:
    """Run the agent in `workspace` until it ends or `timeout_s` passes; stream its events to `on_event`.

    `env` is the child's whole environment (None = inherit this process's), so the wrapper decides
    exactly what the agent sees; the adapter's own variables are added to it. Every string that
    leaves (events, final answer, reason, output tail) has gone through `redact`. The process runs
    in its own group, and the group is killed on timeout, on any exception (KeyboardInterrupt or a
    failing `on_event` included) and after a normal exit too, so background processes the agent
    started do not outlive it. Failures to start come back as a failed result, not an exception.

    `sandbox` (see `worker_image.agents.sandbox`) confines the process: another user (the work tree, its
    HOME and session folder handed to it for the run), rlimits, and for an adapter that restricts its
    commands by PATH (`AgentAdapter.command_path`) a PATH of only those commands. A failed run that shows
    the signs of a limit says which one.

    `budget_usd` (None: no limit) is what the run may spend: its running cost is the sum of what its events
    report as they stream (`spent_usd`); once it is above the budget the group is stopped as on a timeout
    and the result is `budget`, with what was spent as its cost. A budget <= 0 starts nothing.
    """
    if budget_usd is not None and budget_usd <= 0:
        return not_started_at_budget(budget_usd)
    run = functools.partial(
        _run,
        adapter,
        prompt,
        workspace,
        timeout_s,
        on_event,
        session_id,
        redact=redact,
        kill_grace_s=kill_grace_s,
        budget_usd=budget_usd,
    )
    if sandbox is None:
        return run(env=env)
    protect_wrapper()
    env = sandbox.environment(os.environ if env is None else env, workspace)
    unreachable = sandbox.unreachable(workspace)
    if unreachable is not None:
        return _not_started(unreachable, time.monotonic())
    session = adapter.session_files(workspace, env, session_id)
    commands = adapter.command_path(env)
    with contextlib.ExitStack() as stack:
        stack.enter_context(sandbox.handed_over(workspace, [session.root] if session else []))
        if commands is not None:
            env = {**env, "PATH": stack.enter_context(allowed_path(commands, env))}
        result = run(env=env, sandbox=sandbox)
    hint = sandbox.limit_hint(result.output_tail) if result.status == "failed" else None
    return replace(result, reason=f"{hint}; {result.reason}") if hint else result


def _run(
    adapter: AgentAdapter,
    prompt: str,
    workspace: Path,
    timeout_s: float,
    on_event: Callable[[AgentEvent], None],
    session_id: str | None,
    env: Mapping[str, str] | None,
    redact: Callable[[str], str] | None,
    kill_grace_s: float,
    sandbox: AgentSandbox | None = None,
    budget_usd: float | None = None,
) -> AgentResult:
    """`run_agent` once the sandbox is set up (or without one)."""
    scrub: Callable[[str], str] = redact or (lambda text: text)
    started = time.monotonic()
    command = adapter.build_command(prompt, workspace, session_id)
    try:
        proc = _start(command, workspace, env, sandbox.popen_kwargs() if sandbox else {})
    except _NotStarted as error:
        return _not_started(scrub(str(error)), started)
    output = _Output(adapter, on_event, scrub)
    lines: queue.Queue[object] = queue.Queue()
    threads = _start_pipe_threads(proc, command.stdin_text, lines, output.stderr_tail)
    deadline = started + timeout_s
    try:
        ending = _follow(lines, output, deadline, budget_usd)
        stopped = _end_group(proc, ending != "eof", deadline, kill_grace_s)
    finally:
        _release(proc, threads, kill_grace_s)
    _drain(lines, output)  # what a killed agent printed last still belongs to the record
    over_budget = budget_usd if ending == "budget" else None
    result = _judge(
        adapter, output, proc.returncode, stopped and ending != "budget", timeout_s, started, over_budget
    )
    return replace(result, cpu_s=getattr(proc, "orch_cpu_s", None))


class _NotStarted(Exception):
    """The agent's process could not be started; the message says why."""


def _start(
    command: AgentCommand, workspace: Path, env: Mapping[str, str] | None, confine: Mapping[str, Any]
) -> subprocess.Popen[bytes]:
    """The agent's process, in a new session (so in a process group of its own); `confine` are the
    sandbox's Popen arguments (user, group, preexec limits)."""
    child_env = dict(os.environ if env is None else env)
    child_env.update(command.extra_env)
    executable = command.argv[0]
    resolved = shutil.which(executable, path=child_env.get("PATH", os.defpath))
    if resolved is None:
        where = "" if os.sep in executable else " on PATH"
        raise _NotStarted(f"{executable} not found{where}")
    try:
        return subprocess.Popen(
            [resolved, *command.argv[1:]],
            cwd=workspace,
            env=child_env,
            stdin=subprocess.DEVNULL if command.stdin_text is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **confine,
        )
    except OSError as error:
        raise _NotStarted(f"cannot start {executable}: {error}") from error


class _Output:
    """What the agent printed: the tails of both streams, and the events parsed (and redacted) from stdout."""

    def __init__(
        self, adapter: AgentAdapter, on_event: Callable[[AgentEvent], None], scrub: Callable[[str], str]
    ) -> None:
        self.adapter, self.on_event, self.scrub = adapter, on_event, scrub
        self.stdout_tail, self.stderr_tail = _Tail(OUTPUT_TAIL_CHARS), _Tail(_STDERR_KEEP_CHARS)
        self.events: list[AgentEvent] = []
        self.spent_micros = 0
        """The running cost in micro-USD (exact sums, like the ledger's): what the events so far reported
        (see `spent_usd`)."""

    def consume(self, line: str) -> None:
        """One line of stdout: kept in the tail (unless it only reports usage), parsed, and each event
        redacted, recorded, added to the running cost and passed on."""
        if not line.strip():
            self.stdout_tail.append(line + "\n")
            return
        try:
            parsed = self.adapter.parse_line(line)
        except Exception as error:  # a parser bug must not lose the line or the run
            parsed = raw_event(line, f"parser error: {error!r}")
        if not parsed or any(event.kind != "usage" for event in parsed):
            self.stdout_tail.append(line + "\n")
        for event in parsed:
            clean = redact_event(event, self.scrub)
            self.events.append(clean)
            self.spent_micros += micros(spent_usd(clean))
            self.on_event(clean)

    def tail(self) -> str:
        return self.scrub(combine_tails(self.stdout_tail.text(), self.stderr_tail.text()))


def _start_pipe_threads(
    proc: subprocess.Popen[bytes], stdin_text: str | None, lines: queue.Queue[object], stderr_tail: _Tail
) -> _PipeThreads:
    """Started: stdout's lines go to `lines`, stderr to its tail, `stdin_text` (if any) to stdin."""
    assert proc.stdout is not None and proc.stderr is not None
    threads: _PipeThreads = [
        (threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True), proc.stdout),
        (threading.Thread(target=_read_chunks, args=(proc.stderr, stderr_tail), daemon=True), proc.stderr),
    ]
    if stdin_text is not None:
        assert proc.stdin is not None
        writer = threading.Thread(target=_write_stdin, args=(proc.stdin, stdin_text), daemon=True)
        threads.append((writer, proc.stdin))
    for thread, _stream in threads:
        thread.start()
    return threads


_Ending = Literal["eof", "timeout", "budget"]


def micros(usd: float) -> int:
    """USD as whole micro-dollars: three reports of $0.05 are exactly a budget of $0.15, not above it."""
    return round(usd * 1_000_000)


def _follow(
    lines: queue.Queue[object], output: _Output, deadline: float, budget_usd: float | None
) -> _Ending:
    """Hand stdout's lines to `output` until stdout closes ("eof"), the deadline comes ("timeout") or the
    running cost passes `budget_usd` ("budget")."""
    while True:
        try:
            item = lines.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            return "timeout"
        if item is _EOF:
            return "eof"
        assert isinstance(item, str)
        output.consume(item)
        if budget_usd is not None and output.spent_micros > micros(budget_usd):
            return "budget"


def _end_group(proc: subprocess.Popen[bytes], stop: bool, deadline: float, kill_grace_s: float) -> bool:
    """Kill what the agent left running once it exits, or stop the group now (`stop`: time or budget is
    up) or when time is up; True when the group was stopped."""
    if not stop and not _exited_unreaped(proc.pid, deadline - time.monotonic()):
        stop = True  # it closed stdout but kept running
    if stop:
        _stop_group(proc, kill_grace_s)
    else:
        _signal_group(proc.pid, signal.SIGKILL)  # leftovers (a dev server started with &)
        _reap(proc)
    return stop


def _release(proc: subprocess.Popen[bytes], threads: _PipeThreads, kill_grace_s: float) -> None:
    """Whatever happened: no process of the group left, the pipe threads done and their pipes closed."""
    if proc.returncode is None:
        _stop_group(proc, min(kill_grace_s, 1.0))
    for thread, stream in threads:
        thread.join(timeout=1.0)
        if not thread.is_alive():  # closing a pipe another thread still reads would block on its lock
            with contextlib.suppress(OSError):  # already closed by its reader: nothing left to release
                stream.close()


def _drain(lines: queue.Queue[object], output: _Output) -> None:
    while True:
        try:
            item = lines.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, str):
            output.consume(item)


def _judge(
    adapter: AgentAdapter,
    output: _Output,
    exit_code: int | None,
    timed_out: bool,
    timeout_s: float,
    started: float,
    over_budget: float | None = None,
) -> AgentResult:
    """The adapter's verdict on the run, a timeout or a stop at the budget (`over_budget`, the budget it
    passed) named as such, every string in it redacted."""
    duration_ms = int((time.monotonic() - started) * 1000)
    stopped = timed_out or over_budget is not None
    result = adapter.finish(output.events, exit_code, stopped, output.tail(), duration_ms)
    if timed_out:
        result = replace(result, status="failed", reason=f"timeout after {timeout_s:g}s")
    if over_budget is not None:
        spent = output.spent_micros / 1_000_000
        result = replace(result, status="budget", reason=budget_reason(spent, over_budget), cost_usd=spent)
    scrub = output.scrub
    return replace(
        result,
        final_answer=scrub(result.final_answer),
        reason=None if result.reason is None else scrub(result.reason),
        output_tail=scrub(result.output_tail),
    )


def _not_started(why: str, started: float) -> AgentResult:
    return AgentResult(
        status="failed",
        final_answer="",
        session_id=None,
        input_tokens=None,
        output_tokens=None,
        cost_usd=None,
        duration_ms=int((time.monotonic() - started) * 1000),
        exit_code=None,
        reason=why,
        output_tail="",
    )


def not_started_at_budget(budget_usd: float) -> AgentResult:
    """The result of a run refused before it starts: nothing (or less) left of its budget."""
    return replace(
        _not_started(f"{budget_reason(0.0, budget_usd)}: the agent was not started", time.monotonic()),
        status="budget",
        cost_usd=0.0,
    )


def redact_event(event: AgentEvent, redact: Callable[[str], str]) -> AgentEvent:
    """The event with every string in it (text, data keys and values) passed through `redact`."""
    return AgentEvent(kind=event.kind, text=redact(event.text), data=_redact_obj(event.data, redact))


def _redact_obj(obj: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {_redact_obj(k, redact): _redact_obj(v, redact) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_redact_obj(item, redact) for item in obj]
    return obj


# ---------------------------------------------------------------------------------------------------------
# The pipe threads and the process group
# ---------------------------------------------------------------------------------------------------------

_EOF = object()


class _Tail:
    """The last `limit` characters of a stream, kept without holding the whole stream."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: deque[str] = deque()
        self._size = 0
        self._lock = threading.Lock()

    def append(self, text: str) -> None:
        with self._lock:
            self._chunks.append(text)
            self._size += len(text)
            while self._size - len(self._chunks[0]) >= self._limit:
                self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        with self._lock:
            return "".join(self._chunks)[-self._limit :]


def combine_tails(stdout: str, stderr: str, limit: int = OUTPUT_TAIL_CHARS) -> str:
    """stdout then stderr in at most `limit` characters; each keeps what the other does not need."""
    stdout, stderr = stdout.rstrip("\n"), stderr.rstrip("\n")
    if not stderr:
        return stdout[-limit:]
    marker = "\n[stderr]\n" if stdout else "[stderr]\n"
    budget = max(limit - len(marker), 0)
    err_budget = max(budget - len(stdout), budget // 2)
    err = stderr[-err_budget:] if err_budget else ""
    out = stdout[-(budget - len(err)) :] if budget - len(err) > 0 else ""
    return f"{out}{marker}{err}" if out else f"[stderr]\n{err}"


def _read_lines(stream: IO[bytes], sink: queue.Queue[object]) -> None:
    try:
        for raw in iter(stream.readline, b""):
            sink.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
    except (OSError, ValueError):
        pass  # the pipe was closed under us while stopping the process
    finally:
        sink.put(_EOF)


def _read_chunks(stream: IO[bytes], tail: _Tail) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with contextlib.suppress(
        OSError, ValueError
    ):  # the pipe closed under us: the tail so far is what there is
        while chunk := stream.read1(4096):  # type: ignore[attr-defined]
            tail.append(decoder.decode(chunk))
        tail.append(decoder.decode(b"", final=True))


def _write_stdin(stream: IO[bytes], text: str) -> None:
    try:
        stream.write(text.encode())
    except (BrokenPipeError, OSError, ValueError):
        pass  # an agent that does not read its stdin is its own business
    finally:
        with contextlib.suppress(OSError):  # already closed: nothing left to release
            stream.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone (or no longer ours)
        os.killpg(pgid, sig)


def _exited_unreaped(pid: int, timeout_s: float) -> bool:
    """Wait for the leader to exit *without reaping it*, so its pid (= the group id) cannot be reused
    before the leftover members of its group are killed."""
    deadline = time.monotonic() + max(timeout_s, 0.0)
    delay = 0.002
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the whole group, SIGKILL it after `grace_s`, reap the leader."""
    pgid = proc.pid
    if proc.returncode is None:
        _signal_group(pgid, signal.SIGTERM)
        _exited_unreaped(proc.pid, grace_s)
    _signal_group(pgid, signal.SIGKILL)
    _reap(proc)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """`proc.wait()`, keeping the CPU seconds the kernel accounted to the process and to every descendant it
    waited for (`os.wait4`) as `proc.orch_cpu_s`."""
    if proc.returncode is not None:
        return
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    except ChildProcessError:  # reaped elsewhere: the exit code is all there is
        proc.wait()
        return
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.orch_cpu_s = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
