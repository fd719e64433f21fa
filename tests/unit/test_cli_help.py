"""Every command, group and option of `orchestrator` says what it is, the way a person reads it in `--help`.

The walk goes over click's command tree (`typer.main.get_command`, the same walk that writes docs/cli.md),
so a command added anywhere is held to these rules without being listed here.
"""

from __future__ import annotations

import re
from typing import Any

from cli.context import JSON_HELP
from shared.topology import CONSUMERS
from tests.cli_reference import help_pages

BOOL_METAVAR = re.compile(r"<bool[^>]*>|\bBOOLEAN\b", re.IGNORECASE)

PAGES = help_pages()


def _name(path: tuple[str, ...]) -> str:
    return " ".join(("orchestrator", *path))


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def test_the_walk_sees_the_whole_tree() -> None:
    names = {_name(path) for path, _, _ in PAGES}
    expected = {
        "orchestrator run",
        "orchestrator local up",
        "orchestrator config set",
        "orchestrator queue dlq",
    }
    assert expected <= names
    assert len(names) > 50


def test_every_command_and_group_has_help_text() -> None:
    missing = [_name(path) for path, command, _ in PAGES if not (command.help or command.short_help)]
    assert not missing, f"commands without help text (give them a docstring or help=): {missing}"


def test_every_option_has_help_text() -> None:
    missing = [
        f"{_name(path)} {'/'.join(option.opts)}"
        for path, command, _ in PAGES
        for option in _options(command)
        if not option.help
    ]
    assert not missing, f"options without help text: {missing}"


def test_every_command_takes_json_described_by_the_one_phrase() -> None:
    commands = [(path, command) for path, command, _ in PAGES if not hasattr(command, "commands")]
    without = [
        _name(path) for path, command in commands if not any("--json" in o.opts for o in _options(command))
    ]
    differing = {
        _name(path): option.help
        for path, command in commands
        for option in _options(command)
        if "--json" in option.opts and option.help != JSON_HELP
    }
    assert not without, f"commands without --json: {without}"
    assert not differing, f"--json must read {JSON_HELP!r} everywhere (use cli.context.JsonFlag): {differing}"


def test_no_help_page_shows_a_flag_as_taking_a_bool() -> None:
    shown = {_name(path): BOOL_METAVAR.findall(text) for path, _, text in PAGES if BOOL_METAVAR.search(text)}
    assert not shown, f"help pages show a flag as taking a value: {shown}"


def test_local_up_consumers_help_names_every_consumer() -> None:
    (text,) = [text for path, _, text in PAGES if path == ("local", "up")]
    flat = " ".join(text.split())
    missing = [c.function for c in CONSUMERS if c.function not in flat]
    assert not missing, f"`local up --consumers` help leaves out {missing}"
