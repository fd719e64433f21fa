"""`orchestrator telegram set-webhook|info|delete-webhook`: the bot's registration with Telegram.

The token and the webhook secret come from settings / the secrets port (ORCH_TELEGRAM_BOT_TOKEN_REF,
ORCH_TELEGRAM_WEBHOOK_SECRET_REF or their development forms) and are never printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.context import JsonFlag
from cli.errors import CliError, ExitCode
from cli.output import print_json
from shared.telegram import ALLOWED_UPDATES

if TYPE_CHECKING:
    from shared.telegram.client import TelegramClient
    from shared.telegram.settings import TelegramSettings

app = typer.Typer(
    help="The Telegram bot's webhook (token and secret from the secrets store).", no_args_is_help=True
)


def _settings() -> TelegramSettings:
    from pydantic import ValidationError

    from shared.telegram.settings import TelegramSettings

    try:
        return TelegramSettings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise CliError(f"invalid Telegram settings: {problems}", ExitCode.USAGE) from None


@contextmanager
def _bot_api(settings: TelegramSettings) -> Iterator[TelegramClient]:
    """A Bot API client; every Telegram / secrets failure becomes one CLI error line (no token in it)."""
    from shared.secrets import SecretNotFound
    from shared.telegram.client import BotApiError, BotApiUnreachable, TelegramClient
    from shared.telegram.settings import TelegramConfigError

    api: TelegramClient | None = None
    try:
        # one try: a person is waiting for one line (no retry warnings), and can run the command again
        api = TelegramClient.from_settings(settings, settings.resolve_bot_token(), attempts=1)
        yield api
    except TelegramConfigError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    except SecretNotFound as exc:
        raise CliError(f"{exc} (set it in the secrets store first)", ExitCode.NOT_FOUND) from None
    except BotApiUnreachable as exc:
        raise CliError(str(exc), ExitCode.UNREACHABLE) from None
    except BotApiError as exc:
        hint = " (check the bot token)" if exc.error_code in (401, 404) else ""
        raise CliError(f"{exc}{hint}", ExitCode.FAILURE) from None
    finally:
        if api is not None:
            api.close()


def _webhook_secret(settings: TelegramSettings, generate: bool) -> str:
    from shared.telegram.settings import TelegramConfigError

    if generate:
        import secrets as token_source

        if not settings.telegram_webhook_secret_ref:
            raise CliError(
                "--new-secret stores the secret at ORCH_TELEGRAM_WEBHOOK_SECRET_REF: set it first",
                ExitCode.USAGE,
            )
        from shared.secrets import build_secrets

        value = token_source.token_urlsafe(48)
        build_secrets(settings, settings).put(settings.telegram_webhook_secret_ref, value)
        return value
    try:
        secret = settings.resolve_webhook_secret()
    except TelegramConfigError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None
    if secret is None:
        raise CliError(
            "no webhook secret: set ORCH_TELEGRAM_WEBHOOK_SECRET_REF (or ORCH_TELEGRAM_WEBHOOK_SECRET), "
            "or pass --new-secret to generate one into the reference",
            ExitCode.USAGE,
        )
    return secret


@app.command("set-webhook")
def set_webhook(
    url: Annotated[str, typer.Option("--url", help="The public HTTPS URL of the webhook route.")],
    drop_pending: Annotated[
        bool, typer.Option("--drop-pending", help="Discard updates Telegram is still holding.")
    ] = False,
    new_secret: Annotated[
        bool,
        typer.Option("--new-secret", help="Generate a new secret into ORCH_TELEGRAM_WEBHOOK_SECRET_REF."),
    ] = False,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections", min=1, max=100, help="Parallel webhook connections Telegram may open."
        ),
    ] = 40,
    json_output: JsonFlag = False,
) -> None:
    """Register the webhook with its secret token (the secret itself is never printed)."""
    if not url.startswith("https://"):
        raise CliError("Telegram delivers webhooks only to https:// URLs", ExitCode.USAGE)
    settings = _settings()
    with _bot_api(settings) as api:
        secret = _webhook_secret(settings, new_secret)
        api.call(
            "setWebhook",
            {
                "url": url,
                "secret_token": secret,
                "allowed_updates": ALLOWED_UPDATES,
                "drop_pending_updates": drop_pending,
                "max_connections": max_connections,
            },
        )
        from functions.telegram_bot.texts import BOT_COMMANDS

        api.set_commands(BOT_COMMANDS)  # the menu a person sees when typing "/", /secret included
    summary = {
        "url": url,
        "webhook_set": True,
        "secret_token": "set",
        "allowed_updates": ALLOWED_UPDATES,
        "drop_pending_updates": drop_pending,
        "max_connections": max_connections,
        "commands": len(BOT_COMMANDS),
    }
    if json_output:
        print_json(summary)
    else:
        typer.echo(
            f"webhook set to {url} (secret token set, updates: {', '.join(ALLOWED_UPDATES)}; "
            f"command menu: {len(BOT_COMMANDS)} commands)"
        )


@app.command("info")
def info(json_output: JsonFlag = False) -> None:
    """Telegram's view of the webhook (getWebhookInfo)."""
    settings = _settings()
    with _bot_api(settings) as api:
        webhook: dict[str, Any] = api.call("getWebhookInfo") or {}
        me: dict[str, Any] | None = None if json_output else api.call("getMe")
    if json_output:
        print_json(webhook)
        return
    if me:
        typer.echo(f"{'bot':>22}: @{me.get('username', '?')} ({me.get('id')})")
    typer.echo(f"{'webhook':>22}: {webhook.get('url') or '(none: long polling)'}")
    for key in (
        "pending_update_count",
        "max_connections",
        "allowed_updates",
        "ip_address",
        "last_error_date",
        "last_error_message",
        "last_synchronization_error_date",
    ):
        if key in webhook:
            typer.echo(f"{key:>22}: {webhook[key]}")


@app.command("delete-webhook")
def delete_webhook(
    drop_pending: Annotated[
        bool, typer.Option("--drop-pending", help="Discard updates Telegram is still holding.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Remove the webhook (long polling, `orchestrator local up --telegram`, needs none set)."""
    settings = _settings()
    with _bot_api(settings) as api:
        api.call("deleteWebhook", {"drop_pending_updates": drop_pending})
    if json_output:
        print_json({"webhook_set": False, "drop_pending_updates": drop_pending})
    else:
        typer.echo("webhook deleted")
