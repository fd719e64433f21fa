"""The deploy hook's configuration: the API's (database, secrets) plus the service key's reference."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from functions.api.settings import ApiSettings


class DeployHookSettings(ApiSettings):
    service_api_key_ref: Annotated[
        str | None, Field(description="secret:// reference to the functions' service key material.")
    ] = None
