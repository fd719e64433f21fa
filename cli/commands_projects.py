"""`orchestrator project|engineering|deploy ...`"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.context import JsonFlag, client
from cli.errors import CliError, ExitCode
from cli.output import print_json, print_table
from shared.contracts.api import Task, TaskStatus

project_app = typer.Typer(help="Projects.", no_args_is_help=True)
engineering_app = typer.Typer(help="Engineering: turn a spec into a commit.", no_args_is_help=True)
deploy_app = typer.Typer(help="Deploys.", no_args_is_help=True)

ProjectArg = Annotated[str, typer.Argument(help="Project name or id.")]


def _task_line(task: object) -> str:
    return f"task {task.id} {task.type} {task.status} (follow: orchestrator task logs {task.id} --follow)"  # type: ignore[attr-defined]


@project_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="lowercase-slug, unique.")],
    description: Annotated[str, typer.Option("--description")] = "",
    modules: Annotated[
        str, typer.Option("--modules", help="Comma-separated, e.g. backend,telegram.")
    ] = "backend",
    agent: Annotated[str | None, typer.Option("--agent", help="Default coding agent.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a project."""
    wanted = [m.strip() for m in modules.split(",") if m.strip()]
    with client(ctx) as api:
        project = api.create_project(name, description, wanted, agent)
    if json_output:
        print_json(project)
    else:
        typer.echo(f"created project {project.name} ({project.id}), status {project.status}")


@project_app.command("list")
def list_projects(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Your projects (all of them for admins)."""
    with client(ctx) as api:
        projects = api.list_projects()
    if json_output:
        print_json(projects)
        return
    print_table(
        "projects",
        ["name", "status", "modules", "repo", "id"],
        [(p.name, p.status, ",".join(p.modules), p.repo_url or "", p.id) for p in projects],
    )


@project_app.command("show")
def show(ctx: typer.Context, project: ProjectArg, json_output: JsonFlag = False) -> None:
    """One project."""
    with client(ctx) as api:
        found = api.get_project(project)
    if json_output:
        print_json(found)
        return
    for key, value in found.model_dump(mode="json").items():
        typer.echo(f"{key:>12}: {value}")


@project_app.command("archive")
def archive(ctx: typer.Context, project: ProjectArg, json_output: JsonFlag = False) -> None:
    """Archive a project (its data stays)."""
    with client(ctx) as api:
        archived = api.archive_project(project)
    if json_output:
        print_json(archived)
    else:
        typer.echo(f"archived {archived.name}")


@engineering_app.command("start")
def engineering_start(
    ctx: typer.Context,
    project: ProjectArg,
    spec: Annotated[str | None, typer.Option("--spec", help="What to build.")] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec-file", exists=True, dir_okay=False, readable=True)
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="claude-code, factory-droid, codex, command...")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Queue an engineering task: scaffold (if needed) -> developer -> tester."""
    if (spec is None) == (spec_file is None):
        raise CliError("give exactly one of --spec TEXT or --spec-file FILE", ExitCode.USAGE)
    text = spec if spec is not None else spec_file.read_text(encoding="utf-8")  # type: ignore[union-attr]
    with client(ctx) as api:
        task = api.start_engineering(project, text, agent)
    if json_output:
        print_json(task)
    else:
        typer.echo(_task_line(task))


def _finish(task: Task, json_output: bool, done: str) -> None:
    if json_output:
        print_json(task)
    elif task.status is TaskStatus.COMPLETED:
        typer.echo(done)
    if task.status is not TaskStatus.COMPLETED:
        raise CliError(
            f"task {task.id} {task.status.value}: {task.error or 'no reason given'}", ExitCode.FAILURE
        )


@deploy_app.command("start")
def deploy_start(
    ctx: typer.Context,
    project: ProjectArg,
    server: Annotated[str, typer.Option("--server", help="Server handle (`localhost` is built in locally).")],
    ref: Annotated[
        str | None,
        typer.Option("--ref", help="Commit or branch; default: the last engineering result, else main."),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream progress until it ends.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Queue a deploy of the project to a server (with --follow: wait and print the live URL)."""
    from cli.follow import echo_event
    from cli.follow import follow as follow_task

    with client(ctx) as api:
        task = api.start_deploy(project, server, ref)
        if not follow:
            print_json(task) if json_output else typer.echo(_task_line(task))
            return
        if not json_output:
            typer.echo(_task_line(task))
        task = follow_task(api, task.id, echo_event(json_output), spinner=not json_output)
    _finish(task, json_output, f"live at {(task.result or {}).get('deployed_url')}")


@deploy_app.command("stop")
def deploy_stop(
    ctx: typer.Context,
    project: ProjectArg,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is stopped.")] = True,
    json_output: JsonFlag = False,
) -> None:
    """Undeploy: stop the service and free its port."""
    from cli.follow import echo_event
    from cli.follow import follow as follow_task

    with client(ctx) as api:
        task = api.start_undeploy(project)
        if not wait:
            print_json(task) if json_output else typer.echo(_task_line(task))
            return
        task = follow_task(api, task.id, (lambda _e: None) if json_output else echo_event(False))
    _finish(task, json_output, f"stopped {project}; freed port {(task.result or {}).get('port')}")


@deploy_app.command("status")
def deploy_status(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Argument(help="One project (default: all of yours).")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Where projects run and whether they answer their health URL."""
    with client(ctx) as api:
        rows = [api.get_deployment(project)] if project else api.list_deployments()
    if json_output:
        print_json(rows)
        return
    print_table(
        "deployments",
        ["project", "status", "health", "url", "server", "ref"],
        [
            (d.project_name, d.status, d.health, d.url, f"{d.server_handle}:{d.port}", (d.ref or "")[:20])
            for d in rows
        ],
    )


incident_app = typer.Typer(
    help="Incidents: services down / up, servers unreachable, repositories gone.", no_args_is_help=True
)


@incident_app.command("list")
def incident_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
    json_output: JsonFlag = False,
) -> None:
    """Recent incidents of your projects and servers, newest first."""
    with client(ctx) as api:
        found = api.list_incidents(limit)
    if json_output:
        print_json(found)
        return
    print_table(
        "incidents",
        ["when", "kind", "what"],
        [(i.created_at.isoformat(timespec="seconds"), i.kind, i.message) for i in found],
    )
