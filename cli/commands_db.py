"""`orchestrator db ...`: the configured database's schema."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import JsonFlag
from cli.errors import CliError, ExitCode
from cli.output import print_json

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Default: ORCH_DATABASE_URL or the SQLite file in ORCH_HOME."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Apply the API's migrations to the configured database (a database ahead of this code is left alone)."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from functions.api.db import make_engine
    from functions.api.settings import ApiSettings
    from functions.migrations.child import migrate

    settings = ApiSettings()
    url = database_url or settings.effective_database_url
    engine = make_engine(url)
    try:
        revision = migrate(engine).revision
    except (OperationalError, InterfaceError) as exc:
        raise CliError(f"cannot reach the database: {exc.orig}", ExitCode.UNREACHABLE) from None
    finally:
        engine.dispose()
    shown = engine.url.render_as_string(hide_password=True)
    if json_output:
        print_json({"database": shown, "revision": revision})
    else:
        typer.echo(f"{shown}: schema at {revision}")
