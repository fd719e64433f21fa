"""What every API command needs: a client built from flags / env / config, and `--json`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # the client pulls httpx and every contract in: `local down` has no use for them
    from shared.api_client import ApiClient

JSON_HELP = "Print JSON instead of text."
"""The one help text of every command's `--json` (tests/unit/test_cli_help.py holds them to it)."""

JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def client(ctx: typer.Context) -> ApiClient:
    from cli.config import resolve_connection
    from cli.errors import CliError, ExitCode, say_waking
    from shared.api_client import ApiClient

    obj = ctx.find_root().obj or {}
    connection = resolve_connection(obj.get("api_url"), obj.get("api_key"))
    if not connection.api_key:
        raise CliError(
            f"no API key for {connection.api_url}: run `orchestrator local up` (it configures one), "
            "or `orchestrator config set api-key KEY`, or set ORCH_API_KEY",
            ExitCode.AUTH,
        )
    # one key per invocation: a creating call retried inside the client is not run twice by the API
    return ApiClient(
        connection.api_url, connection.api_key, idempotency_key=uuid.uuid4().hex, on_waking=say_waking
    )


# -- short ids ---------------------------------------------------------------------------------

ID_PREFIX_MIN = 6
"""The shortest id prefix a command takes in place of a whole id."""
SHORT_ID = 8
"""How many characters of an id tables and messages print: always enough to take it back."""


def short_id(value: str) -> str:
    return value[:SHORT_ID]


def match_id(kind: str, given: str, known: Iterable[str]) -> str:
    """The one id in `known` equal to `given` or starting with it (at least ID_PREFIX_MIN characters).
    Exit 2 (USAGE) for a prefix too short or matching several ids, 3 (NOT_FOUND) when none matches."""
    from cli.errors import CliError, ExitCode

    ids = list(dict.fromkeys(known))
    if given in ids:
        return given
    if len(given) < ID_PREFIX_MIN:
        raise CliError(
            f"{kind} id {given!r} is too short: give at least {ID_PREFIX_MIN} characters", ExitCode.USAGE
        )
    found = [i for i in ids if i.startswith(given.lower())]
    if not found:
        raise CliError(f"no {kind} id starts with {given!r}", ExitCode.NOT_FOUND)
    if len(found) > 1:
        shown = ", ".join(i[: len(given) + 2] for i in found[:5])
        raise CliError(
            f"{kind} id {given!r} is ambiguous: {len(found)} ids start with it ({shown}…); give more characters",
            ExitCode.USAGE,
        )
    return found[0]


def _is_full_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


_HEX_PREFIX = re.compile(r"^[0-9a-f][0-9a-f-]*$")


def resolve_task(api: ApiClient, given: str) -> str:
    """A task id from a whole id or a unique prefix of one of the caller's tasks."""
    if _is_full_uuid(given):
        return given
    return match_id("task", given, (t.id for t in api.iter_tasks(limit=200)))


def resolve_project(api: ApiClient, given: str) -> str:
    """What the API takes for a project (its name or id) from a name, an id, or a unique id prefix."""
    if _is_full_uuid(given) or not _HEX_PREFIX.match(given.lower()):
        return given  # a name (or a whole id): the API looks it up and says if it is not there
    projects = api.list_projects()
    if any(p.name == given for p in projects):
        return given
    return match_id("project", given, (p.id for p in projects))


def resolve_worker(api: ApiClient, given: str) -> str:
    """A worker id (`w-…`) from a whole id or a unique prefix."""
    return match_id("worker", given, (w.id for w in api.list_workers()))
