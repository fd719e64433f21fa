"""Issue 22, case 11 (docs and help), as a new user meets it: the real `orchestrator` CLI in a subprocess.

Each row is a command line, its exit code, what the user must read and what they must not. No stack is
needed: help pages and `config set` answer without one. The walk over every command's help is
tests/unit/test_cli_help.py; the README and docs links are tests/unit/test_docs_links.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.conftest import CliRunner


@dataclass(frozen=True)
class Row:
    case: str
    args: tuple[str, ...]
    exit_code: int
    shows: tuple[str, ...]
    hides: tuple[str, ...] = field(default=("<bool>", "╭"))


ROWS = [
    Row(
        "the root help lists commands, flags without a <bool> type, no rich box",
        ("--help",),
        0,
        ("Usage: orchestrator [OPTIONS] COMMAND [ARGS]...", "--install-completion  Install completion"),
    ),
    Row(
        "--json is one phrase on an API command",
        ("project", "list", "--help"),
        0,
        ("--json  Print JSON instead of text.",),
    ),
    Row(
        "--json is the same phrase on a backend command",
        ("queue", "stats", "--help"),
        0,
        ("--json  Print JSON instead of text.",),
    ),
    Row(
        "--consumers names every consumer, the Telegram ones too",
        ("local", "up", "--help"),
        0,
        ("worker_manager", "deploy", "infra", "telegram_bot", "product_owner", "telegram_notifier"),
    ),
    Row(
        "config set takes --json and says what its arguments are",
        ("config", "set", "--help"),
        0,
        ("Which setting: api-url or api-key.", "--json  Print JSON instead of text."),
    ),
    Row(
        "config set refuses a URL that is not http(s), in one line",
        ("config", "set", "api-url", "ftp://example.org"),
        2,
        ("error: api-url must start with http:// or https://, got 'ftp://example.org'",),
        ("Traceback", "╭"),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.case for r in ROWS])
def test_help_and_config_as_a_new_user_reads_them(cli: CliRunner, row: Row) -> None:
    result = cli(*row.args)

    seen = result.stdout + result.stderr
    assert result.returncode == row.exit_code, seen
    flat = " ".join(seen.split())
    for text in row.shows:
        assert " ".join(text.split()) in flat, f"{row.case}: {text!r} not in\n{seen}"
    for text in row.hides:
        assert text not in seen, f"{row.case}: {text!r} shown in\n{seen}"


def test_config_set_json_prints_what_was_saved_and_where(cli: CliRunner) -> None:
    result = cli("config", "set", "api-url", "http://127.0.0.1:8790/", "--json")

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    config_file = Path(answer["config_file"])
    assert answer["key"] == "api-url"
    assert json.loads(config_file.read_text())["api_url"] == "http://127.0.0.1:8790"
    assert config_file.stat().st_mode & 0o777 == 0o600
