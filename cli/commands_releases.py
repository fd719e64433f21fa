"""`orchestrator deploy history|rollback` and `orchestrator project set-domain`: a project's releases, going
back to an earlier one, and the hostname it is served under. Registered on the `deploy` and `project`
groups of cli.commands_projects (see `register`)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.context import JsonFlag, client, resolve_project, short_id
from cli.errors import CliError, ExitCode
from cli.output import print_json, print_table
from shared.contracts.api import Release

ProjectArg = Annotated[
    str, typer.Argument(help="Project name, id, or the start of its id (at least 6 characters).")
]
ERROR_SHOWN = 60
"""How much of a failed release's error the table shows (--json has all of it)."""


def history(
    ctx: typer.Context,
    project: ProjectArg,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="At most this many, newest first.")
    ] = 50,
    json_output: JsonFlag = False,
) -> None:
    """The project's releases, newest first: number, outcome, commit, when, who asked, URL, why it failed."""
    with client(ctx) as api:
        found: list[Release] = []
        name = resolve_project(api, project)
        cursor: str | None = None
        while len(found) < limit:
            page = api.list_releases(name, cursor=cursor, limit=min(200, limit - len(found)))
            found.extend(page.items)
            cursor = page.next_cursor
            if not cursor:
                break
        me = api.me().id if found and not json_output else None
    if json_output:
        print_json(found)
        return
    if not found:
        typer.echo(f"{project} has no releases yet: each `deploy start` (or rollback) makes one")
        return
    print_table(
        f"releases of {project}",
        ["#", "status", "commit", "when", "who", "url", "error"],
        [_row(r, me) for r in found],
    )


def _row(release: Release, me: str | None) -> tuple[str, ...]:
    status = release.status + (f" (rollback to {release.rollback_of})" if release.rollback_of else "")
    who = "you" if release.requested_by == me else short_id(release.requested_by or "")
    error = (release.error or "").strip().splitlines()
    shown = error[-1] if error else ""  # the last line names the cause (a traceback's exception)
    return (
        str(release.number),
        status,
        release.commit_sha[:7],
        release.created_at.isoformat(timespec="seconds"),
        who,
        release.url or "",
        shown if len(shown) <= ERROR_SHOWN else shown[: ERROR_SHOWN - 1] + "…",
    )


def rollback(
    ctx: typer.Context,
    project: ProjectArg,
    to: Annotated[
        int | None,
        typer.Option(
            "--to", min=1, help="Release number to go back to; default: the one before the current."
        ),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream progress until it ends.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Deploy an earlier release's commit again (a deploy task, like `deploy start`); prints its task."""
    from cli.commands_projects import queued_deploy

    with client(ctx) as api:
        task = api.rollback(resolve_project(api, project), to)
        queued_deploy(api, task, follow, json_output, "rolled back; live at")


def set_domain(
    ctx: typer.Context,
    project: ProjectArg,
    domain: Annotated[
        str | None, typer.Argument(help="Hostname to serve it under, e.g. blog.example.com.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Serve it without a domain again.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Serve the project under DOMAIN (on ssh servers the proxy gets it a TLS certificate), from its next
    deploy; --clear removes it. Point the domain's DNS at the server yourself."""
    if (domain is None) == (not clear):
        raise CliError("give exactly one of DOMAIN or --clear", ExitCode.USAGE)
    with client(ctx) as api:
        changed = api.update_project(resolve_project(api, project), domain=domain)
    if json_output:
        print_json(changed)
    elif changed.domain:
        typer.echo(f"{changed.name} will be served at {changed.domain} from its next deploy")
    else:
        typer.echo(f"{changed.name} has no domain now (from its next deploy)")


def register(project_app: typer.Typer, deploy_app: typer.Typer) -> None:
    deploy_app.command("history")(history)
    deploy_app.command("rollback")(rollback)
    project_app.command("set-domain")(set_domain)
