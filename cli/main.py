"""The `orchestrator` command line."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, MutableMapping
from gettext import gettext as _
from typing import Annotated, Any, NamedTuple

import typer
from typer._click import Command, Context, HelpFormatter
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

from cli.errors import CliError, ExitCode
from cli.output import print_error


class LazyCommand(NamedTuple):
    """A command or group whose module is imported only when it runs, or when its own help is asked for."""

    module: str
    attribute: str
    """A `typer.Typer` (a group), or a function (one command, like `run`)."""
    help: str
    """The first sentence of its help, for the root's list: `orchestrator --help` imports nothing more
    (tests/unit/test_import_hygiene.py holds it to the real help)."""


LAZY_COMMANDS: dict[str, LazyCommand] = {
    "run": LazyCommand(
        "cli.commands_run",
        "run",
        "Create the project, implement the spec, deploy it, and print the live URL (starting the embedded "
        "stack if nothing answers).",
    ),
    "local": LazyCommand(
        "cli.commands_local", "app", "Run the whole system on this machine (no AWS, no Docker)."
    ),
    "config": LazyCommand("cli.commands_config", "app", "Where the CLI finds the API."),
    "project": LazyCommand("cli.commands_projects", "project_app", "Projects."),
    "engineering": LazyCommand(
        "cli.commands_projects", "engineering_app", "Engineering: turn a spec into a commit."
    ),
    "deploy": LazyCommand("cli.commands_projects", "deploy_app", "Deploys."),
    "incident": LazyCommand(
        "cli.commands_projects",
        "incident_app",
        "Incidents: services down / up, servers unreachable, repositories gone.",
    ),
    "task": LazyCommand(
        "cli.commands_tasks", "app", "Tasks: list, inspect, follow, approve or reject, resume, cancel, retry."
    ),
    "usage": LazyCommand(
        "cli.commands_spend",
        "usage",
        "What your agents and workers cost: the total, by month, by project, the most expensive tasks, and "
        "what is left of each budget that applies.",
    ),
    "budget": LazyCommand(
        "cli.commands_spend",
        "budget_app",
        "Budgets: hard limits on what a task, a project or a person may spend.",
    ),
    "worker": LazyCommand("cli.commands_workers", "app", "Workers: the sandboxes where coding agents run."),
    "server": LazyCommand("cli.commands_admin", "server_app", "Deploy targets, named by their handle."),
    "secret": LazyCommand("cli.commands_admin", "secret_app", "Project secrets (values are write-only)."),
    "user": LazyCommand("cli.commands_admin", "user_app", "Users (admin)."),
    "apikey": LazyCommand("cli.commands_admin", "apikey_app", "API keys (admin)."),
    "contracts": LazyCommand("cli.commands_contracts", "app", "Queue and event contracts."),
    "queue": LazyCommand("cli.commands_queue", "app", "Inspect and repair the message queues."),
    "db": LazyCommand("cli.commands_db", "app", "Database schema."),
    "telegram": LazyCommand(
        "cli.commands_telegram",
        "app",
        "The Telegram bot's webhook (token and secret from the secrets store).",
    ),
}
"""Every top-level command, in the order `--help` lists them. Importing all command modules (the API
client, every contract, httpx) cost over a second of CPU on every start, `local down` included."""


def _build(name: str, lazy: LazyCommand) -> Command:
    """The click command typer would have built had `lazy` been registered on the root app."""
    target = getattr(importlib.import_module(lazy.module), lazy.attribute)
    holder = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


class _LazyCommands(MutableMapping[str, Command]):
    """The root group's commands: names known up front, each built on first access."""

    def __init__(self, built: MutableMapping[str, Command]) -> None:
        self.built = dict(built)

    def __getitem__(self, name: str) -> Command:
        if name not in self.built:
            if name not in LAZY_COMMANDS:
                raise KeyError(name)
            self.built[name] = _build(name, LAZY_COMMANDS[name])
        return self.built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self.built[name] = command

    def __delitem__(self, name: str) -> None:
        del self.built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*LAZY_COMMANDS, *self.built]))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class LazyGroup(TyperGroup):
    """The root group: lists every command from `LAZY_COMMANDS` and imports one only to run it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands(self.commands)

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        built = self.commands.built if isinstance(self.commands, _LazyCommands) else dict(self.commands)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = built.get(name)
            if command is None:
                rows.append((name, make_default_short_help(LAZY_COMMANDS[name].help, limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section(_("Commands")):  # typer's own wording, translated alike
            formatter.write_dl(rows)


app = typer.Typer(
    cls=LazyGroup,
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
        described = describe_error(exc)
        if described is None:
            raise
        print_error(described[0])
        sys.exit(int(described[1]))


def describe_error(exc: Exception) -> tuple[str, ExitCode] | None:
    """A known failure's one line and exit code; None for a bug (its traceback is printed)."""
    from shared.api_client import ApiError, ApiUnreachable, AuthError, ConflictError, NotFoundError
    from shared.api_transport import DatabaseWakingError

    if isinstance(exc, (ApiUnreachable, DatabaseWakingError)):
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
