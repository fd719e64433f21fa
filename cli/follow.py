"""Following a task's progress events until it ends (shared by `task logs --follow`, `deploy start
--follow` and `run`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import typer

from shared.api_client import ApiClient
from shared.contracts.api import Task, TaskEvent, TaskStatus


def event_line(event: TaskEvent) -> str:
    pct = f"{event.progress_pct:>3}% " if event.progress_pct is not None else ""
    step = f"[{event.current_step}] " if event.current_step else ""
    error = f" — {event.error}" if event.error else ""
    return f"{event.timestamp:%H:%M:%S} {event.type:<9} {pct}{step}{event.message}{error}"


QUEUED_HINT_S = 30.0
FINAL_EVENT_GRACE_S = 2.0
"""How long a task that ended COMPLETED or FAILED is followed on for its last event: the graphs post their
`completed` / `failed` event just after the task's status changes, so the status can be read first."""
FINAL_EVENT_POLL_S = 0.1
ENDING_EVENTS = frozenset({"completed", "failed"})
ENDED_BY_ITS_GRAPH = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED})


def follow(
    api: ApiClient,
    task_id: str,
    on_event: Callable[[TaskEvent], None],
    interval: float = 0.5,
    spinner: bool = False,
    timeout_s: float | None = None,
    queued_hint_s: float = QUEUED_HINT_S,
    final_event_grace_s: float = FINAL_EVENT_GRACE_S,
) -> Task:
    """Print every event (old ones first) until the task is final; returns the final task. A task that
    waits (for input, an approval, a person's guidance) is followed too: it goes on once answered; when it
    starts waiting for its person, one line on stderr says which command answers it."""
    status_line = None
    if spinner and sys.stderr.isatty():
        from rich.console import Console

        status_line = Console(stderr=True).status("waiting…")
        status_line.start()
    started = time.monotonic()
    deadline = started + timeout_s if timeout_s else None
    hinted = False
    waiting: TaskStatus | None = None
    after = 0
    last_type: str | None = None

    def read_events() -> None:
        nonlocal after, last_type
        for event in api.task_events(task_id, after=after):
            after, last_type = event.seq, event.type
            on_event(event)
            if status_line is not None:
                pct = f" {event.progress_pct}%" if event.progress_pct is not None else ""
                status_line.update(f"{event.current_step or event.type}{pct}")

    try:
        while True:
            read_events()
            task = api.get_task(task_id)
            if task.status.is_final:
                grace = final_event_grace_s if task.status in ENDED_BY_ITS_GRAPH else 0.0
                grace_until = time.monotonic() + grace
                read_events()
                while last_type not in ENDING_EVENTS and time.monotonic() < grace_until:
                    time.sleep(FINAL_EVENT_POLL_S)
                    read_events()
                return task
            if deadline is not None and time.monotonic() > deadline:
                return task
            waiting = _hint_waiting(api, task, waiting)
            if not hinted and task.status.value == "QUEUED" and time.monotonic() - started > queued_hint_s:
                hinted = True
                typer.echo(
                    f"task {task.id} is still QUEUED after {queued_hint_s:.0f} s: is anything consuming "
                    "its queue? (`orchestrator local status`, `orchestrator queue stats`)",
                    err=True,
                )
            time.sleep(interval)
    finally:
        if status_line is not None:
            status_line.stop()


PERSON_WAITS = (TaskStatus.WAITING_APPROVAL, TaskStatus.WAITING_HUMAN_REVIEW)


def _hint_waiting(api: ApiClient, task: Task, hinted: TaskStatus | None) -> TaskStatus | None:
    """Once each time the task starts waiting for its person: what it waits for and the command that
    answers it. Returns the waiting status hinted (None while it does not wait)."""
    if task.status not in PERSON_WAITS:
        return None
    if task.status is not hinted:
        typer.echo(waiting_hint(with_gate(api, task)), err=True)
    return task.status


def with_gate(api: ApiClient, task: Task) -> Task:
    """The task with the gate it waits at: read from its gates when the task's own read leaves it out."""
    if task.gate is None and task.status in PERSON_WAITS:
        task.gate = next((g for g in api.task_gates(task.id) if g.status == "pending"), None)
    return task


def waiting_hint(task: Task) -> str:
    gate = task.gate
    about = ""
    if gate is not None and gate.summary.strip():
        first = gate.summary.strip().splitlines()[0]
        about = f" ({first[:77] + '…' if len(first) > 80 else first})"
    if task.status is TaskStatus.WAITING_HUMAN_REVIEW:
        return f"waiting for your guidance{about}: {answer_command(task)}"
    what = f" of the {gate.kind}" if gate is not None else ""
    return f"waiting for your approval{what}{about}: {answer_command(task)}"


def answer_command(task: Task) -> str:
    """The command a task waiting for its person needs."""
    if task.status is TaskStatus.WAITING_HUMAN_REVIEW:
        return f'orchestrator task resume {task.id} --guidance "..." (or task cancel)'
    return f"orchestrator task approve {task.id} (or reject)"


def echo_event(json_output: bool) -> Callable[[TaskEvent], None]:
    def show(event: TaskEvent) -> None:
        if json_output:
            sys.stdout.write(event.model_dump_json() + "\n")
        else:
            typer.echo(event_line(event))
        sys.stdout.flush()

    return show
