"""API bodies for users and their API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from shared.contracts.dto import INT64_MAX, Dto, Out


class UserCreate(Dto):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    telegram_id: Annotated[int | None, Field(gt=0, le=INT64_MAX)] = None
    is_admin: bool = False


class User(Out):
    id: str
    name: str
    telegram_id: int | None
    is_admin: bool
    created_at: datetime


Scope = Literal["user", "admin", "service"]


def _default_scopes() -> list[Scope]:
    return ["user"]


class ApiKeyCreate(Dto):
    name: Annotated[str, Field(max_length=200)] = "cli"
    scopes: list[Scope] = Field(default_factory=_default_scopes, min_length=1)


class ApiKey(Out):
    id: str
    user_id: str
    name: str
    prefix: str = Field(
        description="First characters of the key, to recognise it; the key itself is never stored."
    )
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The key. Shown once: store it now.")
