"""`orchestrator run`: the main job in one command — a wish in, a live URL out."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from cli.context import JsonFlag, client
from cli.errors import CliError, ExitCode
from cli.output import print_json
from shared.api_client import ApiClient, ApiUnreachable, AuthError, ConflictError, NotFoundError
from shared.contracts.api import Task, TaskEvent, TaskStatus, TaskType
from shared.contracts.payloads import DeployTaskResult, EngineeringTaskResult


def _stack_is_up(ctx: typer.Context) -> bool:
    try:
        with client(ctx) as api:
            api.me()
        return True
    except (ApiUnreachable, AuthError, CliError):
        return False


def _ensure_stack(ctx: typer.Context, port: int, quiet: bool) -> None:
    """Use the API the CLI is configured for; with none answering, start the embedded stack."""
    if _stack_is_up(ctx):
        return
    from cli.commands_local import _home, _running, _up_detached

    home = _home()
    if _running(home) is None:
        if not quiet:
            typer.echo("starting the embedded stack (orchestrator local up --detach)…")
        _up_detached(home, port, None, json_output=False, consumers="all") if not quiet else _quiet_up(
            home, port
        )
    if not _stack_is_up(ctx):
        raise CliError(
            "the embedded stack runs but the CLI cannot use it: check `orchestrator config show` "
            "(another API may be configured)",
            ExitCode.UNREACHABLE,
        )


def _quiet_up(home: Any, port: int) -> None:
    import contextlib
    import io

    from cli.commands_local import _up_detached

    with contextlib.redirect_stdout(io.StringIO()):
        _up_detached(home, port, None, json_output=True, consumers="all")


def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Project name: lowercase-slug.")],
    spec: Annotated[str, typer.Option("--spec", help="What to build, in plain words.")],
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            help='Coding agent (claude-code, factory-droid, codex, ...); "none" deploys the template as it is.',
        ),
    ] = None,
    server: Annotated[
        str, typer.Option("--server", help="Where to deploy; `localhost` is built in.")
    ] = "localhost",
    modules: Annotated[
        str, typer.Option("--modules", help="Template modules, e.g. backend,telegram.")
    ] = "backend",
    port: Annotated[int, typer.Option("--port", help="API port if the embedded stack has to start.")] = 8787,
    json_output: JsonFlag = False,
) -> None:
    """Create the project, implement the spec, deploy it, and print the live URL (starting the embedded
    stack if nothing answers). Exit 0 with the URL, 1 when a step fails (its reason is printed)."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    quiet = json_output

    def say(text: str) -> None:
        if not quiet:
            typer.echo(text)

    def show(event: TaskEvent) -> None:
        from cli.follow import event_line

        say("  " + event_line(event))

    _ensure_stack(ctx, port, quiet)
    timings["stack_s"] = time.monotonic() - started
    from cli.follow import follow

    with client(ctx) as api:
        project = _project(api, name, spec, agent, modules, say)
        mark = time.monotonic()
        say(f"engineering {project.name} (agent {agent or project.agent or 'default'})")
        engineering = follow(
            api, api.start_engineering(project.name, spec, agent).id, show, spinner=not quiet
        )
        timings["engineering_s"] = time.monotonic() - mark
        _check(engineering, "engineering", json_output, timings)
        branch: str | None = engineering.result_as(EngineeringTaskResult).branch
        mark = time.monotonic()
        say(f"deploying {project.name} ({branch or 'main'}) to {server}")
        deploy = follow(
            api, _start_or_attach_deploy(api, project, server, branch, say), show, spinner=not quiet
        )
        timings["deploy_s"] = time.monotonic() - mark
        _check(deploy, "deploy", json_output, timings)
    timings["total_s"] = time.monotonic() - started
    result: DeployTaskResult = deploy.result_as(DeployTaskResult)
    url = result.deployed_url
    if json_output:
        print_json(
            {
                "project": project.name,
                "url": url,
                "health_url": result.health_url,
                "engineering_task": engineering.id,
                "deploy_task": deploy.id,
                "timings": {k: round(v, 3) for k, v in timings.items()},
            }
        )
        return
    typer.echo(f"done in {timings['total_s']:.1f} s: {project.name} is live at {url}")
    typer.echo(f"  health: {result.health_url}  ·  stop it: orchestrator deploy stop {project.name}")


def _project(api: ApiClient, name: str, spec: str, agent: str | None, modules: str, say: Any) -> Any:
    try:
        existing = api.get_project(name)
    except NotFoundError:
        existing = None
    if existing is not None:
        say(f"using the existing project {existing.name}")
        return existing
    wanted = [m.strip() for m in modules.split(",") if m.strip()]
    project = api.create_project(name, spec.strip().splitlines()[0][:500], wanted, agent)
    say(f"created project {project.name}")
    return project


def _start_or_attach_deploy(api: ApiClient, project: Any, server: str, ref: str | None, say: Any) -> str:
    """The deploy task to follow: a new one, or, when the API refuses a second deploy of the project
    (409: one is queued or running, e.g. left by a `run` that crashed), the one in progress."""
    try:
        return api.start_deploy(project.name, server, ref).id
    except ConflictError:
        active = [
            task
            for status in TaskStatus
            if not status.is_final
            for task in api.list_tasks(
                project=project.id, status=status.value, type=TaskType.DEPLOY.value
            ).items
        ]
        if not active:
            raise
        task = max(active, key=lambda t: t.created_at)
        say(
            f"a deploy of {project.name} is already {task.status.value.lower()} (task {task.id}): following it"
        )
        return task.id


def _check(task: Task, step: str, json_output: bool, timings: dict[str, float]) -> None:
    if task.status is TaskStatus.COMPLETED:
        return
    if json_output:
        print_json(
            {
                "failed_step": step,
                "task": task.id,
                "status": task.status.value,
                "error": task.error,
                "timings": {k: round(v, 3) for k, v in timings.items()},
            }
        )
        raise typer.Exit(int(ExitCode.FAILURE))
    raise CliError(
        f"{step} {task.status.value.lower()} (task {task.id}): {task.error or 'no reason given'}",
        ExitCode.FAILURE,
    )
