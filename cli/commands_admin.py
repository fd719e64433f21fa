"""`orchestrator server|secret|user|apikey ...`"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.context import JsonFlag, client, match_id, resolve_project, short_id
from cli.errors import CliError, ExitCode
from cli.output import print_json, print_table
from shared.api_client import ApiClient
from shared.contracts.api import User

server_app = typer.Typer(help="Deploy targets, named by their handle.", no_args_is_help=True)
ProjectArg = Annotated[
    str, typer.Argument(help="Project name, id, or the start of its id (at least 6 characters).")
]
HandleArg = Annotated[str, typer.Argument(help="The server's handle, e.g. prod-1 (`localhost` locally).")]
secret_app = typer.Typer(help="Project secrets (values are write-only).", no_args_is_help=True)
user_app = typer.Typer(help="Users (admin).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys (admin).", no_args_is_help=True)


@server_app.command("add")
def server_add(
    ctx: typer.Context,
    handle: Annotated[str, typer.Argument(help="Short name, e.g. prod-1.")],
    host: Annotated[str, typer.Option("--host", help="IP or DNS name.")],
    ssh_user: Annotated[str, typer.Option("--ssh-user", help="Who Ansible logs in as.")] = "root",
    ssh_key_file: Annotated[
        Path | None,
        typer.Option(
            "--ssh-key-file", exists=True, dir_okay=False, help="Private key; stored via the secrets port."
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Add a server. The key goes to the secrets store; only its reference is kept."""
    key = ssh_key_file.read_text(encoding="utf-8") if ssh_key_file else None
    with client(ctx) as api:
        server = api.add_server(handle, host, ssh_user, ssh_private_key=key)
    print_json(server) if json_output else typer.echo(f"added server {server.handle} ({server.host})")


@server_app.command("list")
def server_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """The servers you may deploy to."""
    with client(ctx) as api:
        servers = api.list_servers()
    if json_output:
        print_json(servers)
        return
    print_table(
        "servers",
        ["handle", "host", "ssh user", "status", "key"],
        [(s.handle, s.host, s.ssh_user, s.status, s.ssh_key_ref or "") for s in servers],
    )


@server_app.command("show")
def server_show(ctx: typer.Context, handle: HandleArg, json_output: JsonFlag = False) -> None:
    """One server and the ports allocated on it."""
    with client(ctx) as api:
        server = api.get_server(handle)
        ports = api.list_ports(handle)
    if json_output:
        print_json(server)
        return
    for key, value in server.model_dump(mode="json").items():
        typer.echo(f"{key:>12}: {value}")
    typer.echo(f"{'ports':>12}: {', '.join(str(p.port) for p in ports) or '-'}")


@server_app.command("update")
def server_update(
    ctx: typer.Context,
    handle: HandleArg,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="The new IP or DNS name. A new host is a replaced machine: it is provisioned again and "
            "every project deployed on the server is redeployed there.",
        ),
    ] = None,
    ssh_user: Annotated[str | None, typer.Option("--ssh-user", help="Who Ansible logs in as.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Change a server's host or ssh user (a replaced machine keeps its handle and its projects)."""
    if host is None and ssh_user is None:
        raise CliError("nothing to change: give --host and/or --ssh-user", ExitCode.USAGE)
    with client(ctx) as api:
        updated = api.update_server(handle, host=host, ssh_user=ssh_user)
    if json_output:
        print_json(updated)
        return
    server = updated.server
    typer.echo(f"updated server {server.handle} ({server.ssh_user}@{server.host})")
    if updated.replaced:
        typer.echo(
            "a new host: it is provisioned again and its projects are redeployed there "
            f"(follow with `orchestrator task list`; recovery {updated.recovery_id})"
        )


@server_app.command("remove")
def server_remove(ctx: typer.Context, handle: HandleArg, json_output: JsonFlag = False) -> None:
    """Remove a server (its port allocations go with it)."""
    with client(ctx) as api:
        server = api.remove_server(handle)
    print_json(server) if json_output else typer.echo(f"removed server {server.handle}")


@secret_app.command("set")
def secret_set(
    ctx: typer.Context,
    project: ProjectArg,
    name: Annotated[str, typer.Argument(help="e.g. TELEGRAM_BOT_TOKEN")],
    json_output: JsonFlag = False,
) -> None:
    """Set a secret. The value is read from stdin (piped) or a hidden prompt, never from arguments."""
    if sys.stdin.isatty():
        value = typer.prompt(f"value for {name}", hide_input=True)
    else:
        value = sys.stdin.read().rstrip("\n")
    if not value:
        raise CliError("empty secret value: pipe it on stdin or type it at the prompt", ExitCode.USAGE)
    with client(ctx) as api:
        info = api.set_secret(resolve_project(api, project), name, value)
    print_json(info) if json_output else typer.echo(f"secret {info.name} set ({info.reference})")


@secret_app.command("list")
def secret_list(ctx: typer.Context, project: ProjectArg, json_output: JsonFlag = False) -> None:
    """A project's secret names and references (never their values)."""
    with client(ctx) as api:
        secrets = api.list_secrets(resolve_project(api, project))
    if json_output:
        print_json(secrets)
        return
    print_table(
        "secrets",
        ["name", "reference", "updated"],
        [(s.name, s.reference, s.updated_at.isoformat(timespec="seconds")) for s in secrets],
    )


@secret_app.command("delete")
def secret_delete(
    ctx: typer.Context,
    project: ProjectArg,
    name: Annotated[str, typer.Argument(help="The secret's name.")],
    json_output: JsonFlag = False,
) -> None:
    """Delete a secret (its value too)."""
    with client(ctx) as api:
        info = api.delete_secret(resolve_project(api, project), name)
    print_json(info) if json_output else typer.echo(f"secret {info.name} deleted")


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name to know them by.")],
    telegram_id: Annotated[
        int | None, typer.Option("--telegram-id", min=1, help="Their Telegram user id (for the bot).")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make them an admin.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Add a user (then `apikey create` gives them a key)."""
    with client(ctx) as api:
        user = api.add_user(name, telegram_id, admin)
    print_json(user) if json_output else typer.echo(f"added user {user.name} ({user.id})")


@user_app.command("list")
def user_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Every user (ids cut to 8 characters: `apikey create` takes them back)."""
    with client(ctx) as api:
        users = api.list_users()
    if json_output:
        print_json(users)
        return
    print_table(
        "users",
        ["name", "telegram id", "admin", "id"],
        [(u.name, u.telegram_id or "", "yes" if u.is_admin else "", short_id(u.id)) for u in users],
    )


@apikey_app.command("create")
def apikey_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name, id, or the start of its id (at least 6).")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "cli",
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="user (default), admin, service.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a key. It is printed once: store it now."""
    with client(ctx) as api:
        match = _user(api.list_users(), user)
        created = api.create_api_key(match.id, name, scope or ["user"])
    if json_output:
        print_json(created)
    else:
        typer.echo(created.key)
        typer.echo(
            f"(key {created.id} for {match.name}, scopes {','.join(created.scopes)}: shown once)", err=True
        )


def _user(users: list[User], given: str) -> User:
    named = next((u for u in users if u.name == given), None)
    if named is not None:
        return named
    if len(given) < 6 and given not in {u.id for u in users}:
        raise CliError(f"user {given!r} not found", ExitCode.NOT_FOUND)
    found = match_id("user", given, (u.id for u in users))
    return next(u for u in users if u.id == found)


def _key_id(api: ApiClient, given: str) -> str:
    """A key id from a whole id or a unique prefix, among every user's keys (admin)."""
    if len(given) == 36:
        return given
    return match_id("key", given, (k.id for u in api.list_users() for k in api.list_api_keys(u.id)))


@apikey_app.command("revoke")
def apikey_revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Key id, or its first characters (at least 6).")],
    json_output: JsonFlag = False,
) -> None:
    """Revoke a key: it stops working at once."""
    with client(ctx) as api:
        key = api.revoke_api_key(_key_id(api, key_id))
    print_json(key) if json_output else typer.echo(f"revoked key {key.id} ({key.prefix}…)")
