"""The `orchestrator` command line."""

from __future__ import annotations

import sys

import typer

from cli import commands_contracts, commands_db, commands_queue
from cli.errors import CliError, ExitCode
from cli.output import print_error

app = typer.Typer(
    name="orchestrator",
    help="codegen-orchestrator: projects, engineering and deploys driven by AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(commands_contracts.app, name="contracts")
app.add_typer(commands_queue.app, name="queue")
app.add_typer(commands_db.app, name="db")


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


if __name__ == "__main__":
    main()
