"""`orchestrator contracts ...`"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.context import JsonFlag
from cli.output import print_json

app = typer.Typer(help="Queue and event contracts.", no_args_is_help=True)


@app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write one JSON Schema file per message model.")],
    json_output: JsonFlag = False,
) -> None:
    """Write a JSON Schema per message model, for producers in other languages."""
    from shared.contracts.export import export_json_schemas

    paths = export_json_schemas(directory)
    if json_output:
        print_json([str(p) for p in paths])
    else:
        typer.echo(f"wrote {len(paths)} schemas to {directory}")
