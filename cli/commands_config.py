"""`orchestrator config ...`"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from cli.config import config_path, mask, read_config, resolve_connection, write_config
from cli.context import JsonFlag
from cli.output import print_json

app = typer.Typer(help="Where the CLI finds the API.", no_args_is_help=True)


class Key(StrEnum):
    API_URL = "api-url"
    API_KEY = "api-key"


@app.command("set")
def set_value(
    key: Annotated[Key, typer.Argument(help="Which setting: api-url or api-key.")],
    value: Annotated[str, typer.Argument(help="The API's base URL (http:// or https://) or an API key.")],
    json_output: JsonFlag = False,
) -> None:
    """Store api-url or api-key in the config file (mode 0600)."""
    if key is Key.API_URL and not value.startswith(("http://", "https://")):
        from cli.errors import CliError, ExitCode

        raise CliError(f"api-url must start with http:// or https://, got {value!r}", ExitCode.USAGE)
    path = write_config({key.value.replace("-", "_"): value.rstrip("/") if key is Key.API_URL else value})
    if json_output:
        print_json({"key": key.value, "config_file": str(path)})
    else:
        typer.echo(f"{key.value} saved in {path}")


@app.command("show")
def show(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """The effective API URL and key (the key masked unless --json)."""
    obj = ctx.find_root().obj or {}
    connection = resolve_connection(obj.get("api_url"), obj.get("api_key"))
    if json_output:
        print_json(
            {"api_url": connection.api_url, "api_key": connection.api_key, "config_file": str(config_path())}
        )
        return
    typer.echo(f"api_url: {connection.api_url}")
    typer.echo(f"api_key: {mask(connection.api_key)}")
    typer.echo(f"config:  {config_path()}{'' if read_config() else ' (empty)'}")
