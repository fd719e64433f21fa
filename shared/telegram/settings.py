"""Telegram configuration: the bot token and webhook secret (by reference), admins, limits.

Light on purpose (pydantic-settings and the shared blocks only): the webhook's ack path, the
long poller and the CLI import it. Secrets are resolved through the secrets port at cold start
and never logged or printed.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from shared.idempotency import IdempotencySettings
from shared.settings import QueueSettings, SecretsSettings

WEBHOOK_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
"""What Telegram accepts as `secret_token` (setWebhook)."""
DEFAULT_API_BASE = "https://api.telegram.org"


class TelegramConfigError(ValueError):
    """A missing or malformed Telegram setting; the message names the variable, never a value."""


class TelegramSettings(QueueSettings, IdempotencySettings, SecretsSettings):
    telegram_bot_token_ref: Annotated[
        str | None, Field(description="secret:// reference to the bot token (from @BotFather).")
    ] = None
    telegram_bot_token: Annotated[
        SecretStr | None, Field(description="The bot token itself (development only; prefer the _REF).")
    ] = None
    telegram_api_base: Annotated[
        str, Field(description="Bot API server; tests point it at a loopback fake.")
    ] = DEFAULT_API_BASE
    telegram_admins: Annotated[
        list[int],
        NoDecode,
        Field(description="Telegram user ids allowed to /adduser; comma-separated in the environment."),
    ] = Field(default_factory=list)
    telegram_webhook_secret_ref: Annotated[
        str | None, Field(description="secret:// reference to the webhook secret token (AWS).")
    ] = None
    telegram_webhook_secret: Annotated[
        SecretStr | None, Field(description="The webhook secret token itself (embedded / development).")
    ] = None
    telegram_update_ttl_s: Annotated[
        int, Field(ge=60, description="How long a seen update_id is remembered (Telegram keeps 24 h).")
    ] = 48 * 3600
    telegram_refusal_cooldown_s: Annotated[
        int, Field(ge=1, description="A stranger gets one refusal per this many seconds.")
    ] = 24 * 3600
    telegram_secret_wait_s: Annotated[
        int,
        Field(
            ge=30, le=86_400, description="How long the bot waits for the value after /secret PROJECT NAME."
        ),
    ] = 600
    telegram_send_attempts: Annotated[
        int, Field(ge=1, le=10, description="Tries per Bot API call on 429 / 5xx / network errors.")
    ] = 4
    telegram_retry_base_s: Annotated[
        float, Field(ge=0, le=10, description="First backoff delay; doubles per attempt.")
    ] = 0.5
    telegram_retry_max_s: Annotated[
        float,
        Field(ge=0, le=120, description="A longer retry_after is not waited for: the update is redelivered."),
    ] = 20.0

    @field_validator("telegram_admins", mode="before")
    @classmethod
    def _split_admins(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValueError("ORCH_TELEGRAM_ADMINS must be comma-separated Telegram user ids") from None
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("telegram_api_base")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("ORCH_TELEGRAM_API_BASE must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET_PATTERN.fullmatch(value.get_secret_value()):
            raise ValueError("ORCH_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z a-z 0-9 _ -")
        return value

    @property
    def admin_ids(self) -> frozenset[int]:
        return frozenset(self.telegram_admins)

    def _secrets(self) -> Any:
        from shared.secrets import build_secrets

        return build_secrets(self, self)

    def resolve_bot_token(self, secrets: Any = None) -> str:
        """The token: from the secrets port by reference (preferred) or the development variable."""
        if self.telegram_bot_token_ref:
            return str((secrets or self._secrets()).get(self.telegram_bot_token_ref)).strip()
        if self.telegram_bot_token is not None:
            return self.telegram_bot_token.get_secret_value().strip()
        raise TelegramConfigError(
            "no Telegram bot token: set ORCH_TELEGRAM_BOT_TOKEN_REF (or ORCH_TELEGRAM_BOT_TOKEN in development)"
        )

    def resolve_webhook_secret(self, secrets: Any = None) -> str | None:
        """The webhook secret token, or None when none is configured (the webhook then refuses all)."""
        if self.telegram_webhook_secret_ref:
            value = str((secrets or self._secrets()).get(self.telegram_webhook_secret_ref)).strip()
        elif self.telegram_webhook_secret is not None:
            value = self.telegram_webhook_secret.get_secret_value()
        else:
            return None
        if not WEBHOOK_SECRET_PATTERN.fullmatch(value):
            raise TelegramConfigError(
                "the Telegram webhook secret must be 1-256 characters of A-Z a-z 0-9 _ - (Telegram's rule)"
            )
        return value
