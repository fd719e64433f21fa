"""The API client a function uses to act as the service (its key resolved by reference at cold start)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr

from shared.settings import AwsSettings, SecretsSettings

if TYPE_CHECKING:  # the client (httpx, every call module) loads when one is built, not with the settings:
    from shared.api_client import ApiClient  # the embedded stack reads graph settings before it is ready


class ServiceApiSettings(SecretsSettings, AwsSettings):
    api_url: Annotated[str, Field(description="Base URL of the API.")] = "http://127.0.0.1:8787"
    service_api_key_ref: Annotated[
        str | None, Field(description="secret:// reference to the service-scope API key.")
    ] = None
    api_key: Annotated[SecretStr | None, Field(description="Direct key (development only).")] = None


def build_service_client(settings: ServiceApiSettings | None = None, timeout: float = 30.0) -> ApiClient:
    settings = settings or ServiceApiSettings()
    key = settings.api_key.get_secret_value() if settings.api_key else None
    if settings.service_api_key_ref:
        from shared.secrets import build_secrets

        key = build_secrets(settings, settings).get(settings.service_api_key_ref)
    if not key:
        raise RuntimeError(
            "no service API key: set ORCH_SERVICE_API_KEY_REF (or ORCH_API_KEY in development)"
        )
    from shared.api_client import ApiClient

    return ApiClient(settings.api_url, key, timeout=timeout)
