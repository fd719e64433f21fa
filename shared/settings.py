"""Configuration as models: small pydantic-settings blocks (env prefix `ORCH_`) composed into one.

Nothing is read at import time: call `get_settings()` (cached) or build a block directly in tests.
Components depend on the smallest block they need, so a Lambda validates only its own config.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_CONFIG = SettingsConfigDict(env_prefix="ORCH_", extra="ignore", validate_default=True, defer_build=True)


class HomeSettings(BaseSettings):
    """Where the embedded stack keeps its data."""

    model_config = _CONFIG

    home: Annotated[Path, Field(description="Data directory (database, queue file, secrets, logs).")] = Path(
        "~/.orchestrator"
    )

    @field_validator("home")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()


class ObservabilitySettings(BaseSettings):
    model_config = _CONFIG

    service_name: str = "orchestrator"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_namespace: str = "CodegenOrchestrator"


class AwsSettings(BaseSettings):
    model_config = _CONFIG

    aws_region: Annotated[
        str | None, Field(description="Region for boto3 clients; default chain if unset.")
    ] = None
    aws_endpoint_url: Annotated[
        str | None, Field(description="Override endpoint (moto server, LocalStack) for every AWS client.")
    ] = None


class DatabaseSettings(HomeSettings):
    database_url: Annotated[
        str | None,
        Field(description="SQLAlchemy URL; unset = sqlite:///$ORCH_HOME/orchestrator.db."),
    ] = None

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'orchestrator.db'}"


class QueueSettings(HomeSettings):
    queue_backend: Annotated[Literal["local", "sqs"], Field(description="local (embedded) or sqs (AWS).")] = (
        "local"
    )
    queue_prefix: Annotated[
        str,
        Field(
            pattern=r"^[A-Za-z0-9_-]{1,40}$",
            description="Physical queue names are <prefix>-<logical name with ':' as '-'>.",
        ),
    ] = "orch"
    queue_max_receives: Annotated[int, Field(ge=1, le=1000, description="Receives before the DLQ.")] = 5
    queue_visibility_timeout: Annotated[int, Field(ge=0, le=43200, description="Seconds, local queue.")] = 60
    queue_file: Annotated[
        Path | None, Field(description="Local queue database; default $ORCH_HOME/queue.db.")
    ] = None

    @property
    def effective_queue_file(self) -> Path:
        return (self.queue_file or self.home / "queue.db").expanduser()


class SecretsSettings(HomeSettings):
    secrets_backend: Annotated[
        Literal["local", "aws"], Field(description="local (file in ORCH_HOME) or aws (Secrets Manager).")
    ] = "local"
    secrets_prefix: Annotated[
        str,
        Field(pattern=r"^[A-Za-z0-9_/-]{1,64}$", description="Secrets Manager names are <prefix>/<path>."),
    ] = "orch"
    secrets_file: Annotated[
        Path | None, Field(description="Local store; default $ORCH_HOME/secrets.json.")
    ] = None

    @property
    def effective_secrets_file(self) -> Path:
        return (self.secrets_file or self.home / "secrets.json").expanduser()


class AgentCredentialSettings(BaseSettings):
    """The coding agents' own credentials (e.g. ANTHROPIC_API_KEY), by reference: every worker the graphs
    start gets them in its config's env_vars and resolves them itself, like the GitHub token."""

    model_config = _CONFIG

    agent_secret_refs: Annotated[
        dict[str, str],
        Field(description='JSON, e.g. {"ANTHROPIC_API_KEY": "secret://agents/anthropic"}.'),
    ] = {}

    @field_validator("agent_secret_refs")
    @classmethod
    def _references_only(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for name, reference in value.items():
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if not reference.startswith("secret://"):
                raise ValueError(f"{name} must be a secret:// reference, never a value")
        return value


class Settings(QueueSettings, DatabaseSettings, SecretsSettings, AwsSettings, ObservabilitySettings):
    """Everything, for the CLI and the embedded stack."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Validated once per process (cold start)."""
    return Settings()
