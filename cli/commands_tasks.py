"""`orchestrator task ...`"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from cli.context import JsonFlag, client
from cli.output import print_json, print_table
from shared.contracts.api import Task, TaskEvent, TaskStatus

app = typer.Typer(help="Tasks: list, inspect, follow, cancel, retry.", no_args_is_help=True)
TaskArg = Annotated[str, typer.Argument(help="Task id.")]


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", help="Name or id.")] = None,
    status: Annotated[TaskStatus | None, typer.Option("--status", case_sensitive=False)] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="engineering, deploy, scaffold, provision.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    json_output: JsonFlag = False,
) -> None:
    """Tasks, newest first."""
    with client(ctx) as api:
        tasks: list[Task] = []
        for task in api.iter_tasks(project=project, status=status.value if status else None, type=type_,
                                   limit=min(limit, 200)):  # fmt: skip
            tasks.append(task)
            if len(tasks) >= limit:
                break
    if json_output:
        print_json(tasks)
        return
    print_table(
        "tasks",
        ["id", "type", "status", "attempt", "created", "error"],
        [
            (
                t.id,
                t.type,
                t.status,
                t.attempt,
                t.created_at.isoformat(timespec="seconds"),
                (t.error or "")[:60],
            )
            for t in tasks
        ],
    )


@app.command("show")
def show(ctx: typer.Context, task_id: TaskArg, json_output: JsonFlag = False) -> None:
    """One task with its result."""
    with client(ctx) as api:
        task = api.get_task(task_id)
    if json_output:
        print_json(task)
        return
    for key, value in task.model_dump(mode="json").items():
        typer.echo(f"{key:>14}: {json.dumps(value) if isinstance(value, dict) else value}")


def _event_line(event: TaskEvent) -> str:
    pct = f"{event.progress_pct:>3}% " if event.progress_pct is not None else ""
    step = f"[{event.current_step}] " if event.current_step else ""
    error = f" — {event.error}" if event.error else ""
    return f"{event.timestamp:%H:%M:%S} {event.type:<9} {pct}{step}{event.message}{error}"


@app.command("logs")
def logs(
    ctx: typer.Context,
    task_id: TaskArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until the task ends.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")] = 0.5,
    json_output: JsonFlag = False,
) -> None:
    """A task's progress events; with --follow, live until it ends (exit 0 COMPLETED, 1 FAILED/CANCELLED)."""
    after = 0
    with client(ctx) as api:
        task = api.get_task(task_id)
        status_line = None
        if follow and not json_output and sys.stderr.isatty():
            from rich.console import Console

            status_line = Console(stderr=True).status(f"{task.status.value}…")
            status_line.start()
        try:
            while True:
                for event in api.task_events(task_id, after=after):
                    after = event.seq
                    if json_output:
                        sys.stdout.write(event.model_dump_json() + "\n")
                    else:
                        typer.echo(_event_line(event))
                    if status_line is not None:
                        pct = f" {event.progress_pct}%" if event.progress_pct is not None else ""
                        status_line.update(f"{event.current_step or event.type}{pct}")
                    sys.stdout.flush()
                if not follow:
                    return
                task = api.get_task(task_id)
                if task.status.is_final:
                    for event in api.task_events(task_id, after=after):
                        after = event.seq
                        typer.echo(event.model_dump_json() if json_output else _event_line(event))
                    break
                time.sleep(interval)
        finally:
            if status_line is not None:
                status_line.stop()
    if not json_output:
        outcome = f"task {task.id} {task.status.value}"
        typer.echo(
            outcome + (f": {task.error}" if task.error else ""), err=task.status is not TaskStatus.COMPLETED
        )
    if task.status is not TaskStatus.COMPLETED:
        raise typer.Exit(1)


@app.command("cancel")
def cancel(ctx: typer.Context, task_id: TaskArg, json_output: JsonFlag = False) -> None:
    """Cancel a queued or running task (its worker is stopped)."""
    with client(ctx) as api:
        task = api.cancel_task(task_id)
    print_json(task) if json_output else typer.echo(f"task {task.id} {task.status.value}")


@app.command("retry")
def retry(ctx: typer.Context, task_id: TaskArg, json_output: JsonFlag = False) -> None:
    """Queue a failed or cancelled task again."""
    with client(ctx) as api:
        task = api.retry_task(task_id)
    print_json(task) if json_output else typer.echo(
        f"task {task.id} {task.status.value} (attempt {task.attempt + 1})"
    )
