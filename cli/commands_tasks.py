"""`orchestrator task ...`"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.context import JsonFlag, client, resolve_project, resolve_task, short_id
from cli.output import print_json, print_table
from shared.contracts.api import Task, TaskStatus

app = typer.Typer(help="Tasks: list, inspect, follow, cancel, retry.", no_args_is_help=True)
TaskArg = Annotated[str, typer.Argument(help="Task id, or its first characters (at least 6).")]


@app.command("list")
def list_tasks(
    ctx: typer.Context,
    project: Annotated[
        str | None, typer.Option("--project", help="Only this project's (name, id or id prefix).")
    ] = None,
    status: Annotated[
        TaskStatus | None, typer.Option("--status", case_sensitive=False, help="Only tasks in this status.")
    ] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="Only this type: engineering, deploy, undeploy.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="At most this many.")] = 50,
    json_output: JsonFlag = False,
) -> None:
    """Tasks, newest first (ids cut to 8 characters: every command takes them back)."""
    with client(ctx) as api:
        project = resolve_project(api, project) if project else None
        tasks: list[Task] = []
        for task in api.iter_tasks(
            project=project, status=status.value if status else None, type=type_, limit=min(limit, 200)
        ):
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
                short_id(t.id),
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
        task = api.get_task(resolve_task(api, task_id))
    if json_output:
        print_json(task)
        return
    for key, value in task.model_dump(mode="json").items():
        typer.echo(f"{key:>14}: {json.dumps(value) if isinstance(value, dict) else value}")


@app.command("logs")
def logs(
    ctx: typer.Context,
    task_id: TaskArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until the task ends.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between polls.")] = 0.5,
    json_output: JsonFlag = False,
) -> None:
    """A task's progress events; with --follow, live until it ends (exit 0 COMPLETED, 1 FAILED/CANCELLED)."""
    from cli.follow import echo_event
    from cli.follow import follow as follow_task

    show = echo_event(json_output)
    with client(ctx) as api:
        task_id = resolve_task(api, task_id)
        if not follow:
            for event in api.task_events(task_id):
                show(event)
            return
        task = follow_task(api, task_id, show, interval=interval, spinner=not json_output)
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
        task = api.cancel_task(resolve_task(api, task_id))
    print_json(task) if json_output else typer.echo(f"task {task.id} {task.status.value}")


@app.command("retry")
def retry(ctx: typer.Context, task_id: TaskArg, json_output: JsonFlag = False) -> None:
    """Queue a failed or cancelled task again."""
    with client(ctx) as api:
        task = api.retry_task(resolve_task(api, task_id))
    print_json(task) if json_output else typer.echo(
        f"task {task.id} {task.status.value} (attempt {task.attempt + 1})"
    )
