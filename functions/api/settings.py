"""The API function's configuration block."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr

from shared.settings import AwsSettings, DatabaseSettings, QueueSettings, SecretsSettings


class ApiSettings(DatabaseSettings, QueueSettings, SecretsSettings, AwsSettings):
    database_secret_ref: Annotated[
        str | None,
        Field(
            description="secret:// reference to the RDS-generated credentials (AWS); overrides database_url."
        ),
    ] = None
    bootstrap_admin_key: Annotated[
        SecretStr | None, Field(description="Embedded stack: seed an admin with this key if none exists.")
    ] = None
    bootstrap_admin_key_ref: Annotated[
        str | None, Field(description="AWS: the same, read from the secrets port by reference.")
    ] = None
    max_body_bytes: Annotated[int, Field(ge=1024, description="Larger request bodies get 413.")] = 1_048_576
    port_range_start: Annotated[int, Field(ge=1024, le=65535)] = 8000
    port_range_end: Annotated[int, Field(ge=1024, le=65535)] = 8999
