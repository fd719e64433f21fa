"""`orchestrator task ...`"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.commands_spend import money
from cli.context import JsonFlag, client, resolve_project, resolve_task, short_id
from cli.errors import CliError, ExitCode
from cli.output import print_json, print_table
from shared.contracts.api import Task, TaskStatus

app = typer.Typer(
    help="Tasks: list, inspect, follow, approve or reject, resume, cancel, retry.", no_args_is_help=True
)
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
    """One task with its result, its cost, and what it waits for (the gate, and the command that answers)."""
    from cli.follow import with_gate

    with client(ctx) as api:
        task = with_gate(api, api.get_task(resolve_task(api, task_id)))
    if json_output:
        print_json(task)
        return
    for key, value in task.model_dump(mode="json", exclude={"gate"}).items():
        if key == "cost_usd":
            value = money(value) if value is not None else "unknown"
        typer.echo(f"{key:>14}: {json.dumps(value) if isinstance(value, dict) else value}")
    if task.gate is not None:
        for line in gate_lines(task):
            typer.echo(line)
    elif task.status in (TaskStatus.WAITING_APPROVAL, TaskStatus.WAITING_HUMAN_REVIEW):
        from cli.follow import answer_command

        typer.echo(f"{'answer':>14}: {answer_command(task)}")


def gate_lines(task: Task) -> list[str]:
    """What the task's gate asks of the person, and the command that answers it."""
    gate = task.gate
    assert gate is not None
    what = "human review" if gate.kind == "review" else f"{gate.kind} approval"
    lines = [
        f"{'gate':>14}: {what} (round {gate.round}) {gate.status}, since {gate.requested_at:%Y-%m-%d %H:%M}"
    ]
    if gate.expires_at is not None and gate.status == "pending":
        lines[0] += f", expires {gate.expires_at:%Y-%m-%d %H:%M}"
    lines += [f"{'':>14}  {line}" for line in gate.summary.strip().splitlines()]
    if gate.comment:
        lines.append(f"{'comment':>14}: {gate.comment}")
    if gate.status == "pending":
        from cli.follow import answer_command

        lines.append(f"{'answer':>14}: {answer_command(task)}")
    return lines


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


CommentOption = Annotated[
    str | None, typer.Option("--comment", help="Why, for the record (shown with the task).")
]


def _answered(task: Task, json_output: bool, what: str) -> None:
    """The answered task; one that goes on says how to follow it."""
    if json_output:
        print_json(task)
        return
    follow = "" if task.status.is_final else f" (follow: orchestrator task logs {task.id} --follow)"
    typer.echo(f"task {task.id} {task.status.value}: {what}{follow}")


@app.command("approve")
def approve(
    ctx: typer.Context, task_id: TaskArg, comment: CommentOption = None, json_output: JsonFlag = False
) -> None:
    """Approve what the task waits for (WAITING_APPROVAL: its plan or its deploy): it goes on."""
    _answer_gate(ctx, task_id, comment, json_output, approve=True)


@app.command("reject")
def reject(
    ctx: typer.Context, task_id: TaskArg, comment: CommentOption = None, json_output: JsonFlag = False
) -> None:
    """Reject what the task waits for (WAITING_APPROVAL): it ends FAILED with reason `rejected`."""
    _answer_gate(ctx, task_id, comment, json_output, approve=False)


def _answer_gate(
    ctx: typer.Context, task_id: str, comment: str | None, json_output: bool, *, approve: bool
) -> None:
    with client(ctx) as api:
        answer = api.approve_task if approve else api.reject_task
        task = answer(resolve_task(api, task_id), comment)
    _answered(task, json_output, "approved" if approve else "rejected")


@app.command("resume")
def resume(
    ctx: typer.Context,
    task_id: TaskArg,
    guidance: Annotated[
        str,
        typer.Option(
            "--guidance", help="What the developer should do differently (its next round reads it)."
        ),
    ],
    json_output: JsonFlag = False,
) -> None:
    """Continue a task waiting for human review (WAITING_HUMAN_REVIEW) with your guidance."""
    if not guidance.strip():
        raise CliError("--guidance is empty: say what the developer should do", ExitCode.USAGE)
    with client(ctx) as api:
        task = api.resume_task(resolve_task(api, task_id), guidance)
    _answered(task, json_output, "resumed with your guidance")
