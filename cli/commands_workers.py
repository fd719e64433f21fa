"""`orchestrator worker ...`: see and stop workers."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import JsonFlag, client, resolve_task, resolve_worker, short_id
from cli.output import print_json, print_table

app = typer.Typer(help="Workers: the sandboxes where coding agents run.", no_args_is_help=True)


@app.command("list")
def list_workers(
    ctx: typer.Context,
    task: Annotated[
        str | None, typer.Option("--task", help="Only this task's workers (id or id prefix).")
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="CREATED, STARTING, RUNNING, STOPPED, FAILED.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Workers, newest first (ids cut to 8 characters: `worker stop` takes them back)."""
    with client(ctx) as api:
        workers = api.list_workers(task_id=resolve_task(api, task) if task else None, status=status)
    if json_output:
        print_json(workers)
        return
    print_table(
        "workers",
        ["id", "agent", "status", "task", "started", "exit"],
        [
            (
                short_id(w.id),
                w.agent,
                w.status,
                short_id(w.task_id or ""),
                w.started_at.isoformat(timespec="seconds"),
                w.exit_reason or "",
            )
            for w in workers
        ],
    )


@app.command("stop")
def stop(
    ctx: typer.Context,
    worker_id: Annotated[str, typer.Argument(help="Worker id (w-…), or its first characters (at least 6).")],
    json_output: JsonFlag = False,
) -> None:
    """Stop a worker (the worker manager kills it; its open messages fail with a reason)."""
    with client(ctx) as api:
        worker = api.stop_worker(resolve_worker(api, worker_id))
    print_json(worker) if json_output else typer.echo(f"stopping worker {worker.id}")
