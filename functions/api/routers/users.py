"""/users and /api-keys: admin only. Keys are shown once, on creation."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path

from functions.api.auth import Principal
from functions.api.errors import Forbidden
from functions.api.routers._common import created, new_router, principal, transaction
from functions.api.services import users
from shared.contracts.api import ApiKey, ApiKeyCreate, ApiKeyCreated, User, UserCreate

router = new_router()
TAGS = ["users"]
UserId = Annotated[str, Path(max_length=64)]


@router.get("/me", summary="The caller", tags=TAGS)
def me() -> User:
    with transaction() as session:
        return User.model_validate(users.of(session, principal(router)))


def _admin_or_service() -> Principal:
    """Admins, and the service (the Telegram bot recognises senders and adds users with it)."""
    caller = principal(router)
    if not caller.is_service:
        caller.require_admin()
    return caller


@router.get("/users", summary="List users (admin or service)", tags=TAGS)
def list_users() -> list[User]:
    _admin_or_service()
    with transaction() as session:
        return [User.model_validate(u) for u in users.list_all(session)]


@router.post(
    "/users",
    summary="Add a user (admin; the service adds non-admins)",
    tags=TAGS,
    responses={201: {"description": "Created"}},
)
def add_user(body: UserCreate) -> Response[User]:
    caller = _admin_or_service()
    if body.is_admin and not caller.is_admin:
        raise Forbidden("only an admin can add an admin")
    with transaction() as session:
        return created(User.model_validate(users.create(session, body.name, body.telegram_id, body.is_admin)))


@router.get(
    "/users/<user_id>/api-keys", summary="A user's API keys (admin; never the keys themselves)", tags=TAGS
)
def list_keys(user_id: UserId) -> list[ApiKey]:
    principal(router).require_admin()
    with transaction() as session:
        return [ApiKey.model_validate(k) for k in users.list_keys(session, user_id)]


@router.post(
    "/users/<user_id>/api-keys",
    summary="Create an API key for a user (admin); the key is in this response only",
    tags=TAGS,
    responses={201: {"description": "Created"}},
)
def create_key(user_id: UserId, body: ApiKeyCreate) -> Response[ApiKeyCreated]:
    caller = _admin_or_service()
    if not caller.is_admin and set(body.scopes) - {"user"}:
        # the service issues user-scope keys only (e.g. for a user's Product Owner worker)
        raise Forbidden("the service can create user-scope keys only")
    with transaction() as session:
        row, plaintext = users.create_key(session, caller, user_id, body.name, list(body.scopes))
        return created(ApiKeyCreated(**ApiKey.model_validate(row).model_dump(), key=plaintext))


@router.delete("/api-keys/<key_id>", summary="Revoke an API key (admin)", tags=TAGS)
def revoke_key(key_id: Annotated[str, Path(max_length=64)]) -> ApiKey:
    principal(router).require_admin()
    with transaction() as session:
        return ApiKey.model_validate(users.revoke_key(session, key_id))
