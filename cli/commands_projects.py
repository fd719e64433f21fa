"""`orchestrator project|engineering|deploy ...`"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.context import JsonFlag, client, resolve_project, short_id
from cli.errors import CliError, ExitCode
from cli.output import print_json, print_table
from shared.api_client import ApiClient, NotFoundError
from shared.contracts.api import Deployment, Task, TaskStatus
from shared.contracts.projects import SPEC_MAX_CHARS, ProjectDeleted

project_app = typer.Typer(help="Projects.", no_args_is_help=True)
engineering_app = typer.Typer(help="Engineering: turn a spec into a commit.", no_args_is_help=True)
deploy_app = typer.Typer(help="Deploys.", no_args_is_help=True)

ProjectArg = Annotated[
    str, typer.Argument(help="Project name, id, or the start of its id (at least 6 characters).")
]


def _task_line(task: object) -> str:
    return f"task {task.id} {task.type} {task.status} (follow: orchestrator task logs {task.id} --follow)"  # type: ignore[attr-defined]


@project_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="lowercase-slug, unique.")],
    description: Annotated[str, typer.Option("--description", help="One line about it.")] = "",
    modules: Annotated[
        str, typer.Option("--modules", help="Comma-separated, e.g. backend,telegram.")
    ] = "backend",
    agent: Annotated[str | None, typer.Option("--agent", help="Default coding agent.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a project; give it work with `engineering start` (a spec of at most 100,000 characters)."""
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
        [(p.name, p.status, ",".join(p.modules), p.repo_url or "", short_id(p.id)) for p in projects],
    )


@project_app.command("show")
def show(ctx: typer.Context, project: ProjectArg, json_output: JsonFlag = False) -> None:
    """One project."""
    with client(ctx) as api:
        found = api.get_project(resolve_project(api, project))
    if json_output:
        print_json(found)
        return
    for key, value in found.model_dump(mode="json").items():
        typer.echo(f"{key:>12}: {value}")


@project_app.command("archive")
def archive(ctx: typer.Context, project: ProjectArg, json_output: JsonFlag = False) -> None:
    """Archive a project (its data and name stay; `project delete` frees them)."""
    with client(ctx) as api:
        archived = api.archive_project(resolve_project(api, project))
    if json_output:
        print_json(archived)
    else:
        typer.echo(f"archived {archived.name}")


@project_app.command("delete")
def delete(
    ctx: typer.Context,
    project: ProjectArg,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge", help="Delete its repository too (the embedded stack's local repositories only)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask: delete it.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Delete a project for good: stop its deployment (an undeploy, followed), free its ports, remove
    its secrets and tasks, free its name. Its repository is kept unless --purge."""
    with client(ctx) as api:
        found = api.get_project(resolve_project(api, project))
        repo = _purgeable_repo(found.repo_url) if purge else None
        if not yes:
            _confirm(f"delete project {found.name} ({short_id(found.id)}) and its tasks, ports and secrets?")
        _stop_if_deployed(api, found.name, json_output)
        deleted = api.delete_project(found.id)
    if repo is not None:
        shutil.rmtree(repo)
    if json_output:
        print_json(deleted.model_dump(mode="json") | {"repo_purged": repo is not None})
        return
    typer.echo(_deleted_line(deleted, repo))


def _purgeable_repo(repo_url: str | None) -> Path | None:
    """The local bare repository --purge deletes; checked before anything is deleted."""
    if not repo_url:
        return None
    path = Path(repo_url)
    if path.is_absolute() and path.suffix == ".git" and (path / "HEAD").is_file():
        return path
    raise CliError(
        f"--purge deletes the embedded stack's local repositories only: delete {repo_url} on its host "
        "yourself, and run this again without --purge",
        ExitCode.USAGE,
    )


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise CliError(f"{question} This cannot be undone: add --yes to confirm", ExitCode.USAGE)
    if not typer.confirm(question):
        raise CliError("not deleted", ExitCode.FAILURE)


def _stop_if_deployed(api: ApiClient, project: str, json_output: bool) -> None:
    """Deleting needs the service stopped: the usual undeploy (as `deploy stop`), followed to its end."""
    from cli.follow import echo_event
    from cli.follow import follow as follow_task

    try:
        current = api.get_deployment(project)
    except NotFoundError:
        return
    if current.status != "deployed":
        return
    if not json_output:
        typer.echo(f"stopping {project} first (as `orchestrator deploy stop {project}`)")
    task = follow_task(
        api, api.start_undeploy(project).id, (lambda _e: None) if json_output else echo_event(False)
    )
    if task.status is not TaskStatus.COMPLETED:
        raise CliError(
            f"could not stop {project} (task {task.id} {task.status.value}: {task.error or 'no reason given'}): "
            "nothing was deleted",
            ExitCode.FAILURE,
        )


def _deleted_line(deleted: ProjectDeleted, purged: Path | None) -> str:
    freed = ", ".join(deleted.freed_ports) or "none"
    secrets = ", ".join(deleted.removed_secrets) or "none"
    if purged is not None:
        repo = f"repository {purged} deleted"
    else:
        repo = f"repository kept: {deleted.repo_url}" if deleted.repo_url else "no repository"
    return (
        f"deleted project {deleted.name}: ports freed: {freed}; secrets removed: {secrets}; "
        f"{deleted.deleted_tasks} tasks removed; {repo}"
    )


@engineering_app.command("start")
def engineering_start(
    ctx: typer.Context,
    project: ProjectArg,
    spec: Annotated[
        str | None, typer.Option("--spec", help=f"What to build (at most {SPEC_MAX_CHARS:,} characters).")
    ] = None,
    spec_file: Annotated[
        Path | None,
        typer.Option(
            "--spec-file", exists=True, dir_okay=False, readable=True, help="Read the spec from this file."
        ),
    ] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="claude-code, factory-droid, codex, command...")
    ] = None,
    base_ref: Annotated[
        str | None, typer.Option("--base-ref", help="Branch or commit the work starts from (default: main).")
    ] = None,
    no_merge: Annotated[
        bool,
        typer.Option(
            "--no-merge", help="Leave the work on its branch (on GitHub its pull request open) for review."
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Queue an engineering task: scaffold (if needed), develop, test, merge into main."""
    if (spec is None) == (spec_file is None):
        raise CliError("give exactly one of --spec TEXT or --spec-file FILE", ExitCode.USAGE)
    text = spec if spec is not None else spec_file.read_text(encoding="utf-8")  # type: ignore[union-attr]
    check_spec(text)
    with client(ctx) as api:
        task = api.start_engineering(
            resolve_project(api, project), text, agent, base_ref=base_ref, no_merge=no_merge
        )
    if json_output:
        print_json(task)
    else:
        typer.echo(_task_line(task))


def check_spec(spec: str) -> None:
    """Refuse a spec the API would refuse, before anything is created (exit 2)."""
    if not spec.strip():
        raise CliError("the spec is empty: say what to build", ExitCode.USAGE)
    if len(spec) > SPEC_MAX_CHARS:
        raise CliError(
            f"the spec is {len(spec):,} characters; the API takes at most {SPEC_MAX_CHARS:,}: shorten it",
            ExitCode.USAGE,
        )


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
        typer.Option("--ref", help="Commit (40 hex) or branch (its head); default: the head of main."),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream progress until it ends.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Queue a deploy of the project to a server (with --follow: wait and print the live URL)."""
    with client(ctx) as api:
        task = api.start_deploy(resolve_project(api, project), server, ref)
        queued_deploy(api, task, follow, json_output, "live at")


def queued_deploy(api: ApiClient, task: Task, follow: bool, json_output: bool, done: str) -> None:
    """Print the queued deploy task; with `follow`, stream it and end with `done` and its live URL."""
    from cli.follow import echo_event
    from cli.follow import follow as follow_task

    if not follow:
        print_json(task) if json_output else typer.echo(_task_line(task))
        return
    if not json_output:
        typer.echo(_task_line(task))
    task = follow_task(api, task.id, echo_event(json_output), spinner=not json_output)
    _finish(task, json_output, f"{done} {(task.result or {}).get('deployed_url')}")


@deploy_app.command("stop")
def deploy_stop(
    ctx: typer.Context,
    project: ProjectArg,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is stopped.")] = True,
    json_output: JsonFlag = False,
) -> None:
    """Undeploy: stop the service and free its port (a stopped project answers "already stopped")."""
    from cli.follow import echo_event
    from cli.follow import follow as follow_task

    with client(ctx) as api:
        project = resolve_project(api, project)
        try:
            current: Deployment | None = api.get_deployment(project)
        except NotFoundError:  # never deployed: the API cleans up after a failed deploy, or says 404
            current = None
        if current is not None and current.status == "stopped":
            if json_output:
                print_json(current)
            else:
                typer.echo(f"{current.project_name} is already stopped (nothing to do)")
            return
        task = api.start_undeploy(project)
        if not wait:
            print_json(task) if json_output else typer.echo(_task_line(task))
            return
        task = follow_task(api, task.id, (lambda _e: None) if json_output else echo_event(False))
    result = task.result or {}
    _finish(
        task, json_output, result.get("cleaned_up") or f"stopped {project}; freed port {result.get('port')}"
    )


@deploy_app.command("status")
def deploy_status(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Argument(help="One project (default: all of yours).")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Where projects run and whether they answer their health URL."""
    with client(ctx) as api:
        rows = [api.get_deployment(resolve_project(api, project))] if project else api.list_deployments()
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
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="At most this many.")] = 20,
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


# deploy history / rollback and project set-domain live in their own module (this one would pass 400 lines);
# project set --approval lives beside usage and budgets (cli.commands_spend)
from cli.commands_releases import register as _register_releases  # noqa: E402

_register_releases(project_app, deploy_app)

from cli.commands_spend import register as _register_spend  # noqa: E402

_register_spend(project_app)
