"""Writes docs/cli.md, the CLI reference, from the typer app: `python -m tests.cli_reference > docs/cli.md`.

Each command's section is exactly what `orchestrator ... --help` prints (at 100 columns), so the reference
cannot say anything the CLI does not; tests/unit/test_cli_reference.py fails when the file is stale.
It lives in tests/ because it imports the whole CLI and is no part of the installed package.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import Any

import typer

from cli.main import app

REGENERATE = "python -m tests.cli_reference > docs/cli.md"
WIDTH = 100

HEADER = f"""# CLI reference

Generated from the typer app by `{REGENERATE}`; do not edit it by hand
(`tests/unit/test_cli_reference.py` fails when it is stale). Every section is what
`orchestrator ... --help` prints.

The global options `--api-url` and `--api-key` go before the command
(`orchestrator --api-url http://127.0.0.1:8787 project list`). Every command takes `--json`
(print JSON instead of text). Exit codes are listed in [cli-exit-codes.md](cli-exit-codes.md).
"""


def help_pages() -> list[tuple[tuple[str, ...], Any, str]]:
    """Every command and group, depth first in the order `--help` lists them, with its `--help` text."""
    from typer._click import Context

    def walk(command: Any, ctx: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any, str]]:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # typer's rich mode prints the page instead of returning it
            text = command.get_help(ctx) or printed.getvalue()
        yield path, command, "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, Context(sub, info_name=name, parent=ctx), (*path, name))

    root = typer.main.get_command(app)
    return list(walk(root, Context(root, info_name="orchestrator", terminal_width=WIDTH), ()))


def _title(path: tuple[str, ...]) -> str:
    return " ".join(("orchestrator", *path))


def _anchor(title: str) -> str:
    return title.replace(" ", "-")


def render() -> str:
    pages = help_pages()
    contents = [
        f"{'  ' * (len(path) - 1)}- [{_title(path)}](#{_anchor(_title(path))})"
        for path, _, _ in pages
        if path
    ]
    sections = [f"## {_title(path)}\n\n```text\n{text}\n```\n" for path, _, text in pages]
    return "\n".join([HEADER, "## Contents\n", *contents, "", *sections]).rstrip("\n") + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
