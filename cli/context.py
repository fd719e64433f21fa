"""What every API command needs: a client built from flags / env / config, and `--json`."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from shared.api_client import ApiClient

JSON_HELP = "Print JSON instead of text."
"""The one help text of every command's `--json` (tests/unit/test_cli_help.py holds them to it)."""

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def client(ctx: typer.Context) -> ApiClient:
    from cli.config import resolve_connection
    from cli.errors import CliError

    obj = ctx.find_root().obj or {}
    connection = resolve_connection(obj.get("api_url"), obj.get("api_key"))
    if not connection.api_key:
        raise CliError(
            f"no API key for {connection.api_url}: run `orchestrator local up` (it configures one), "
            "or `orchestrator config set api-key KEY`, or set ORCH_API_KEY"
        )
    # one key per invocation: a creating call retried inside the client is not run twice by the API
    return ApiClient(connection.api_url, connection.api_key, idempotency_key=uuid.uuid4().hex)
