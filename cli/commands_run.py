"""`orchestrator run`: the main job in one command — a wish in, a live URL out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from cli.context import JsonFlag, client
from cli.errors import CliError, ExitCode
from cli.local.ports import valid_port
from cli.output import print_json
from shared.api_client import ApiClient, ApiError, ApiUnreachable, AuthError, ConflictError, NotFoundError
from shared.contracts.api import Task, TaskEvent, TaskStatus, TaskType
from shared.contracts.payloads import DeployTaskResult, EngineeringTaskResult
from shared.contracts.projects import SPEC_MAX_CHARS

INTERRUPTED = 130
FOLLOW_INTERVAL_S = 0.1
DESCRIPTION_CHARS = 500


@dataclass(frozen=True)
class RunRequest:
    """`run`'s inputs, checked before anything is created or started."""

    name: str
    spec: str
    agent: str | None
    modules: list[str]

    @property
    def description(self) -> str:
        return self.spec.strip().splitlines()[0][:DESCRIPTION_CHARS]


def _validated(name: str, spec: str, agent: str | None, modules: str) -> RunRequest:
    """Usage errors (exit 2) for every input the API or the stack would refuse later."""
    from pydantic import ValidationError

    from cli.local.agents import known_agents
    from shared.contracts.api import EngineeringStart, ProjectCreate

    if not spec.strip():
        raise CliError(
            "--spec is empty: say what to build, e.g. --spec 'a todo list with a REST API'", ExitCode.USAGE
        )
    if agent is not None and agent not in known_agents():
        raise CliError(f"unknown agent {agent!r}: use one of {', '.join(known_agents())}", ExitCode.USAGE)
    request = RunRequest(name, spec, agent, [m.strip() for m in modules.split(",") if m.strip()])
    try:
        ProjectCreate(name=name, description=request.description, modules=request.modules, agent=agent)
        EngineeringStart(spec=spec, agent=agent)
    except ValidationError as exc:
        raise CliError(_usage_line(exc, request), ExitCode.USAGE) from None
    return request


def _usage_line(exc: Any, request: RunRequest) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "input"
    if field == "name":
        return (
            f"--name {request.name!r} is not a project name: 2-63 lowercase letters, digits and dashes, "
            "starting with a letter (e.g. my-blog)"
        )
    if field == "spec":
        return f"--spec is {len(request.spec)} characters long; at most {SPEC_MAX_CHARS}"
    flag = {"description": "spec", "modules": "modules"}.get(field, field)
    return f"--{flag}: {error['msg']}"


def _silent_local_holder(ctx: typer.Context) -> bool:
    """Whether the configured URL is on this machine, not this ORCH_HOME's stack, and a program there
    accepts connections but does not answer within seconds (the API client would wait 30 s)."""
    import httpx

    from cli.commands_local import _running
    from cli.config import resolve_connection
    from cli.local.ports import port_of_local_url
    from cli.local.serve import stack_home

    obj = ctx.find_root().obj or {}
    url = resolve_connection(obj.get("api_url"), obj.get("api_key")).api_url
    state = _running(stack_home())
    if port_of_local_url(url) is None or (state is not None and state.url == url):
        return False
    try:
        httpx.get(f"{url}/health", timeout=3)
    except httpx.TimeoutException:
        return True
    except httpx.HTTPError:
        return False
    return False


def _stack_is_up(ctx: typer.Context) -> bool:
    try:
        if _silent_local_holder(ctx):
            return False
        with client(ctx) as api:
            api.me()
        return True
    except AuthError:
        raise  # our API answers and refuses the key: exit 6 as from every command, no stack to start
    except (ApiUnreachable, ApiError, CliError):  # nothing, or another HTTP server there
        return False


def _ensure_stack(ctx: typer.Context, port: int | None, quiet: bool, agent: str | None = None) -> None:
    """Use the API the CLI is configured for; with none answering, start the embedded stack on --port /
    ORCH_PORT, else on the port of the local URL in the config, else 8787 (a taken port: exit 4)."""
    if _stack_is_up(ctx):
        return
    from cli.commands_local import _running, _up_detached
    from cli.config import resolve_connection
    from cli.local.ports import check_port, stack_port
    from cli.local.serve import stack_home

    home = stack_home()
    if _running(home) is None:
        _check_agent_before_start(agent)
        obj = ctx.find_root().obj or {}
        chosen = stack_port(port, resolve_connection(obj.get("api_url"), obj.get("api_key")).api_url)
        retry = "orchestrator run ... --port {port}"
        check_port(chosen, retry)
        if not quiet:
            typer.echo(f"starting the embedded stack on port {chosen} (orchestrator local up --detach)…")
            _up_detached(home, chosen, None, json_output=False, consumers="all", retry=retry)
        else:
            _quiet_up(home, chosen, retry)
    if not _stack_is_up(ctx):
        raise CliError(
            "the embedded stack runs but the CLI cannot use it: check `orchestrator config show` "
            "(another API may be configured)",
            ExitCode.UNREACHABLE,
        )


def _quiet_up(home: Any, port: int, retry: str) -> None:
    import contextlib
    import io

    from cli.commands_local import _up_detached

    with contextlib.redirect_stdout(io.StringIO()):
        _up_detached(home, port, None, json_output=True, consumers="all", retry=retry)


def _check_agent_before_start(agent: str | None) -> None:
    """`--agent` that the stack about to start could not run: said before it starts (it inherits this
    environment, so what this process finds on PATH is what its workers find)."""
    from cli.local.agents import agent_problem
    from cli.local.stack import runnable_agents
    from worker_image.agents.config import AgentEnvironment

    if agent is None:
        return
    env = AgentEnvironment()
    problem = agent_problem(agent, runnable_agents(env), env.agent_command, stack_runs=False)
    if problem:
        raise CliError(problem, ExitCode.FAILURE)


def _check_agent(ctx: typer.Context, agent: str | None, project: Any) -> None:
    """Before anything is created: can the local stack the CLI talks to run the agent? (A remote API,
    or a stack that did not record its agents, is not second-guessed.)"""
    from cli.commands_local import _running
    from cli.config import resolve_connection
    from cli.local.agents import agent_problem
    from cli.local.serve import stack_home
    from worker_image.agents.config import AgentEnvironment

    state = _running(stack_home())
    obj = ctx.find_root().obj or {}
    url = resolve_connection(obj.get("api_url"), obj.get("api_key")).api_url
    if state is None or state.url != url or state.agents is None:
        return
    wanted = agent or (project.agent if project is not None else None) or state.default_agent
    if wanted:
        problem = agent_problem(wanted, state.agents, AgentEnvironment().agent_command)
        if problem:
            raise CliError(problem, ExitCode.FAILURE)


def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="Project name: lowercase-slug.")],
    spec: Annotated[
        str,
        typer.Option(
            "--spec", help=f"What to build, in plain words (at most {SPEC_MAX_CHARS:,} characters)."
        ),
    ],
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            help='Coding agent (claude-code, factory-droid, codex, command); "none" deploys the template as it is.',
        ),
    ] = None,
    server: Annotated[
        str, typer.Option("--server", help="Where to deploy; `localhost` is built in.")
    ] = "localhost",
    modules: Annotated[
        str, typer.Option("--modules", help="Template modules, e.g. backend,telegram.")
    ] = "backend",
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            envvar="ORCH_PORT",
            callback=valid_port,
            show_default=False,
            help="API port if the embedded stack has to start. Default: the port of the local API URL in "
            "the CLI's config, else 8787.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create the project, implement the spec, deploy it, and print the live URL (starting the embedded
    stack if nothing answers). Re-run while its work is in progress, it follows that work. Exit 0 with the
    URL; 1 when a step fails (its reason is printed); 2 for a wrong input (nothing is created); 4 when the
    stack's port is taken; 130 on Ctrl-C (the work goes on)."""
    request = _validated(name, spec, agent, modules)
    started = time.monotonic()
    timings: dict[str, float] = {}
    quiet = json_output

    def say(text: str) -> None:
        if not quiet:
            typer.echo(text)

    _ensure_stack(ctx, port, quiet, agent)
    timings["stack_s"] = time.monotonic() - started
    with client(ctx) as api:
        existing = _existing_project(api, name)
        _check_agent(ctx, agent, existing)
        _check_server(api, server)
        project = existing or _create_project(api, request, say)
        if existing is not None:
            say(f"using the existing project {existing.name}")
        steps = _Steps(api, project, request, server, say, quiet, new_project=existing is None)
        try:
            engineering, deploy = steps.run(timings)
        except KeyboardInterrupt:
            steps.interrupted()
            raise typer.Exit(INTERRUPTED) from None
        if engineering is not None:
            _check(engineering, "engineering", json_output, timings)
        _check(deploy, "deploy", json_output, timings)
    timings["total_s"] = time.monotonic() - started
    _report(project, engineering, deploy, timings, json_output)


def _report(
    project: Any, engineering: Task | None, deploy: Task, timings: dict[str, float], json_output: bool
) -> None:
    result: DeployTaskResult = deploy.result_as(DeployTaskResult)
    url = result.deployed_url
    if json_output:
        print_json(
            {
                "project": project.name,
                "url": url,
                "health_url": result.health_url,
                "engineering_task": engineering.id if engineering is not None else None,
                "deploy_task": deploy.id,
                "timings": {k: round(v, 3) for k, v in timings.items()},
            }
        )
        return
    typer.echo(f"done in {timings['total_s']:.1f} s: {project.name} is live at {url}")
    typer.echo(f"  health: {result.health_url}  ·  stop it: orchestrator deploy stop {project.name}")


def _check_server(api: ApiClient, server: str) -> None:
    try:
        api.get_server(server)
    except NotFoundError:
        raise CliError(
            f"no server {server!r} to deploy to: `orchestrator server list` shows them "
            "(localhost is built in); add one with `orchestrator server add`",
            ExitCode.NOT_FOUND,
        ) from None


def _existing_project(api: ApiClient, name: str) -> Any:
    try:
        return api.get_project(name)
    except NotFoundError:
        return None


def _create_project(api: ApiClient, request: RunRequest, say: Any) -> Any:
    project = api.create_project(request.name, request.description, request.modules, request.agent)
    say(f"created project {project.name}")
    return project


class _Steps:
    """Engineering then deploy, each followed to its end; a task of the project already in progress is
    followed instead of starting another (a re-run after Ctrl-C or a crash attaches to the work)."""

    def __init__(
        self,
        api: ApiClient,
        project: Any,
        request: RunRequest,
        server: str,
        say: Any,
        quiet: bool,
        new_project: bool = False,
    ):
        self.api = api
        self.new_project = new_project
        self.project = project
        self.request = request
        self.server = server
        self.say = say
        self.quiet = quiet
        self.current: tuple[str, str] | None = None

    def _follow(self, step: str, task_id: str) -> Task:
        from cli.follow import event_line, follow

        def show(event: TaskEvent) -> None:
            self.say("  " + event_line(event))

        self.current = (step, task_id)
        # polled five times as often as `task logs --follow`: the deploy starts as soon as engineering is
        # seen to end, and `run` ends as soon as the deploy does (each poll is two API calls of ~2 ms CPU)
        return follow(self.api, task_id, show, interval=FOLLOW_INTERVAL_S, spinner=not self.quiet)

    def run(self, timings: dict[str, float]) -> tuple[Task | None, Task]:
        """(engineering, deploy); engineering is None when a deploy in progress was followed on its own,
        and deploy is the engineering task itself when engineering did not complete."""
        name = self.project.name
        # a project this run just created has no task yet: no list call per unfinished status
        active = {} if self.new_project else _active_tasks(self.api, self.project.id)
        deploying = active.get(TaskType.DEPLOY)
        mark = time.monotonic()
        if deploying is not None:
            self.say(
                f"a deploy of {name} is already {deploying.status.value.lower()} (task {deploying.id}): following it"
            )
            deploy = self._follow("deploy", deploying.id)
            timings["deploy_s"] = time.monotonic() - mark
            return None, deploy
        engineering_task = active.get(TaskType.ENGINEERING)
        if engineering_task is not None:
            self.say(
                f"engineering of {name} is already {engineering_task.status.value.lower()} "
                f"(task {engineering_task.id}): following it instead of starting another"
            )
            engineering_id = engineering_task.id
        else:
            shown_agent = self.request.agent or self.project.agent or "default"
            self.say(f"engineering {name} (agent {shown_agent})")
            engineering_id = self.api.start_engineering(name, self.request.spec, self.request.agent).id
        engineering = self._follow("engineering", engineering_id)
        timings["engineering_s"] = time.monotonic() - mark
        if engineering.status is not TaskStatus.COMPLETED:
            return engineering, engineering
        branch: str | None = engineering.result_as(EngineeringTaskResult).branch
        mark = time.monotonic()
        self.say(f"deploying {name} ({branch or 'main'}) to {self.server}")
        deploy = self._follow(
            "deploy", _start_or_attach_deploy(self.api, self.project, self.server, branch, self.say)
        )
        timings["deploy_s"] = time.monotonic() - mark
        return engineering, deploy

    def interrupted(self) -> None:
        """Ctrl-C stops following, not the work: say what goes on and how to look at it again."""
        from cli.output import print_error

        if self.current is None:
            print_error("interrupted")
            return
        step, task_id = self.current
        how = f"orchestrator task logs {task_id} --follow"
        if step == "deploy":
            how += f", or orchestrator deploy status {self.project.name}"
        print_error(
            f"interrupted: the {step} task {task_id} of {self.project.name} keeps running in the stack; "
            f"follow it: {how}; the same `orchestrator run` again attaches to it"
        )


def _active_tasks(api: ApiClient, project_id: str) -> dict[TaskType, Task]:
    """The newest engineering and deploy task of the project that is not finished, by type."""
    newest: dict[TaskType, Task] = {}
    for status in TaskStatus:
        if status.is_final:
            continue
        for task in api.list_tasks(project=project_id, status=status.value).items:
            if task.type in (TaskType.ENGINEERING, TaskType.DEPLOY):
                if task.type not in newest or task.created_at > newest[task.type].created_at:
                    newest[task.type] = task
    return newest


def _start_or_attach_deploy(api: ApiClient, project: Any, server: str, ref: str | None, say: Any) -> str:
    """The deploy task to follow: a new one, or, when the API refuses a second deploy of the project
    (409: one is queued or running, e.g. left by a `run` that crashed), the one in progress."""
    try:
        return api.start_deploy(project.name, server, ref).id
    except ConflictError:
        task = _active_tasks(api, project.id).get(TaskType.DEPLOY)
        if task is None:
            raise
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
