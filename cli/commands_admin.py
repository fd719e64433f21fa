"""`orchestrator server|secret|user|apikey ...`"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.context import JsonFlag, client
from cli.errors import CliError, ExitCode
from cli.output import print_json, print_table

server_app = typer.Typer(help="Deploy targets.", no_args_is_help=True)
secret_app = typer.Typer(help="Project secrets (values are write-only).", no_args_is_help=True)
user_app = typer.Typer(help="Users (admin).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys (admin).", no_args_is_help=True)


@server_app.command("add")
def server_add(
    ctx: typer.Context,
    handle: Annotated[str, typer.Argument(help="Short name, e.g. prod-1.")],
    host: Annotated[str, typer.Option("--host", help="IP or DNS name.")],
    ssh_user: Annotated[str, typer.Option("--ssh-user")] = "root",
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
def server_show(ctx: typer.Context, handle: str, json_output: JsonFlag = False) -> None:
    with client(ctx) as api:
        server = api.get_server(handle)
        ports = api.list_ports(handle)
    if json_output:
        print_json(server)
        return
    for key, value in server.model_dump(mode="json").items():
        typer.echo(f"{key:>12}: {value}")
    typer.echo(f"{'ports':>12}: {', '.join(str(p.port) for p in ports) or '-'}")


@server_app.command("remove")
def server_remove(ctx: typer.Context, handle: str, json_output: JsonFlag = False) -> None:
    with client(ctx) as api:
        server = api.remove_server(handle)
    print_json(server) if json_output else typer.echo(f"removed server {server.handle}")


@secret_app.command("set")
def secret_set(
    ctx: typer.Context,
    project: Annotated[str, typer.Argument(help="Project name or id.")],
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
        info = api.set_secret(project, name, value)
    print_json(info) if json_output else typer.echo(f"secret {info.name} set ({info.reference})")


@secret_app.command("list")
def secret_list(ctx: typer.Context, project: str, json_output: JsonFlag = False) -> None:
    with client(ctx) as api:
        secrets = api.list_secrets(project)
    if json_output:
        print_json(secrets)
        return
    print_table(
        "secrets",
        ["name", "reference", "updated"],
        [(s.name, s.reference, s.updated_at.isoformat(timespec="seconds")) for s in secrets],
    )


@secret_app.command("delete")
def secret_delete(ctx: typer.Context, project: str, name: str, json_output: JsonFlag = False) -> None:
    with client(ctx) as api:
        info = api.delete_secret(project, name)
    print_json(info) if json_output else typer.echo(f"secret {info.name} deleted")


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    telegram_id: Annotated[int | None, typer.Option("--telegram-id", min=1)] = None,
    admin: Annotated[bool, typer.Option("--admin")] = False,
    json_output: JsonFlag = False,
) -> None:
    with client(ctx) as api:
        user = api.add_user(name, telegram_id, admin)
    print_json(user) if json_output else typer.echo(f"added user {user.name} ({user.id})")


@user_app.command("list")
def user_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    with client(ctx) as api:
        users = api.list_users()
    if json_output:
        print_json(users)
        return
    print_table(
        "users",
        ["name", "telegram id", "admin", "id"],
        [(u.name, u.telegram_id or "", "yes" if u.is_admin else "", u.id) for u in users],
    )


@apikey_app.command("create")
def apikey_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User id or name.")],
    name: Annotated[str, typer.Option("--name")] = "cli",
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="user (default), admin, service.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a key. It is printed once: store it now."""
    with client(ctx) as api:
        users = api.list_users()
        match = next((u for u in users if user in (u.id, u.name)), None)
        if match is None:
            raise CliError(f"user {user!r} not found", ExitCode.NOT_FOUND)
        created = api.create_api_key(match.id, name, scope or ["user"])
    if json_output:
        print_json(created)
    else:
        typer.echo(created.key)
        typer.echo(
            f"(key {created.id} for {match.name}, scopes {','.join(created.scopes)}: shown once)", err=True
        )


@apikey_app.command("revoke")
def apikey_revoke(ctx: typer.Context, key_id: str, json_output: JsonFlag = False) -> None:
    with client(ctx) as api:
        key = api.revoke_api_key(key_id)
    print_json(key) if json_output else typer.echo(f"revoked key {key.id} ({key.prefix}…)")
