"""The `orchestrator` command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli import (
    commands_admin,
    commands_config,
    commands_contracts,
    commands_db,
    commands_local,
    commands_projects,
    commands_queue,
    commands_run,
    commands_tasks,
    commands_telegram,
    commands_workers,
)
from cli.errors import CliError, ExitCode
from cli.output import print_error

app = typer.Typer(
    name="orchestrator",
    help="codegen-orchestrator: projects, engineering and deploys driven by AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain click help and errors: typer's rich panels label every flag `<bool>` and box the errors
    rich_markup_mode=None,
)


@app.callback()
def _root(
    ctx: typer.Context,
    api_url: Annotated[
        str | None, typer.Option("--api-url", help="Overrides ORCH_API_URL and the config file.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Overrides ORCH_API_KEY and the config file.")
    ] = None,
) -> None:
    ctx.obj = {"api_url": api_url, "api_key": api_key}


app.command("run")(commands_run.run)
app.add_typer(commands_local.app, name="local")
app.add_typer(commands_config.app, name="config")
app.add_typer(commands_projects.project_app, name="project")
app.add_typer(commands_projects.engineering_app, name="engineering")
app.add_typer(commands_projects.deploy_app, name="deploy")
app.add_typer(commands_projects.incident_app, name="incident")
app.add_typer(commands_tasks.app, name="task")
app.add_typer(commands_workers.app, name="worker")
app.add_typer(commands_admin.server_app, name="server")
app.add_typer(commands_admin.secret_app, name="secret")
app.add_typer(commands_admin.user_app, name="user")
app.add_typer(commands_admin.apikey_app, name="apikey")
app.add_typer(commands_contracts.app, name="contracts")
app.add_typer(commands_queue.app, name="queue")
app.add_typer(commands_db.app, name="db")
app.add_typer(commands_telegram.app, name="telegram")


def main() -> None:
    """Console entry point: maps every known failure to one stderr line and its exit code.

    Usage errors are typer's (exit 2, with the usage line); everything else raised by a
    command is turned into `error: ...` and an exit code from `cli.errors.ExitCode`.
    """
    try:
        app()
    except CliError as exc:
        print_error(exc.message)
        sys.exit(int(exc.code))
    except KeyboardInterrupt:
        print_error("interrupted")
        sys.exit(130)
    except Exception as exc:
        described = _describe(exc)
        if described is None:
            raise
        print_error(described[0])
        sys.exit(int(described[1]))


def _describe(exc: Exception) -> tuple[str, ExitCode] | None:
    from shared.api_client import ApiError, ApiUnreachable, AuthError, ConflictError, NotFoundError

    if isinstance(exc, ApiUnreachable):
        return str(exc), ExitCode.UNREACHABLE
    if isinstance(exc, AuthError):
        return _refused(exc), ExitCode.AUTH
    if isinstance(exc, NotFoundError):
        return exc.message, ExitCode.NOT_FOUND
    if isinstance(exc, ConflictError):
        return exc.message, ExitCode.CONFLICT
    if isinstance(exc, ApiError):
        code = ExitCode.USAGE if exc.status == 422 else ExitCode.FAILURE
        return f"{exc.message} (HTTP {exc.status} {exc.code})", code
    from shared.contracts import ContractError
    from shared.queues import QueueError

    if isinstance(exc, ContractError):
        return str(exc), ExitCode.USAGE
    if isinstance(exc, QueueError):
        return str(exc), ExitCode.FAILURE
    try:
        import botocore.exceptions as bce
    except ImportError:  # pragma: no cover - boto3 is a core dependency
        return None
    if isinstance(exc, (bce.EndpointConnectionError, bce.NoCredentialsError, bce.NoRegionError)):
        return f"cannot reach AWS: {exc}", ExitCode.UNREACHABLE
    if isinstance(exc, bce.ClientError):
        return f"AWS refused: {exc}", ExitCode.FAILURE
    return None


def _refused(exc: Exception) -> str:
    from shared.api_client import AuthError

    assert isinstance(exc, AuthError)
    where = f"the API at {exc.url}" if exc.url else "the API"
    if exc.status == 403:
        return f"{where} refused: {exc.message} (the key lacks the scope; an admin can grant it)"
    return (
        f"{where} refused the API key ({exc.message}): set the right one with "
        "`orchestrator config set api-key KEY` or ORCH_API_KEY (`orchestrator local up` writes the "
        "embedded stack's)"
    )


if __name__ == "__main__":
    main()
