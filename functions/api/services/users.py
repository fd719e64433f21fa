"""Users and their API keys (admin only)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from functions.api.auth import Principal, issue_key
from functions.api.errors import Conflict, Forbidden, NotFound, Unprocessable
from functions.api.models import ApiKey, User, new_id, utcnow


def create(session: Session, name: str, telegram_id: int | None, is_admin: bool) -> User:
    if (
        telegram_id is not None
        and session.execute(select(User.id).where(User.telegram_id == telegram_id)).first()
    ):
        raise Conflict(f"a user with telegram_id {telegram_id} already exists", ["telegram_id"])
    user = User(id=new_id(), name=name, telegram_id=telegram_id, is_admin=is_admin, created_at=utcnow())
    session.add(user)
    session.flush()
    return user


def of(session: Session, caller: Principal) -> User:
    """The caller's own row (an authenticated key always has one)."""
    user = session.get(User, caller.user_id)
    assert user is not None
    return user


def get(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id!r} not found")
    return user


def list_all(session: Session) -> list[User]:
    return list(session.execute(select(User).order_by(User.created_at)).scalars())


def list_keys(session: Session, user_id: str) -> list[ApiKey]:
    get(session, user_id)
    rows = session.execute(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at))
    return list(rows.scalars())


def create_key(
    session: Session, caller: Principal, user_id: str, name: str, scopes: list[str]
) -> tuple[ApiKey, str]:
    """A new key for `user_id`: (row, the key itself, shown once). The service (not an admin) issues
    user-scope keys for non-admins only; an admin-scope key needs an admin user."""
    user = get(session, user_id)
    if user.is_admin and not caller.is_admin:
        raise Forbidden("the service cannot create keys for an admin user")
    if "admin" in scopes and not user.is_admin:
        # such a key would be stored and then refused on every call: say so now
        raise Unprocessable(
            f"user {user.id!r} is not an admin: an admin-scope key needs an admin user", ["scopes"]
        )
    return issue_key(session, user, name, scopes)


def revoke_key(session: Session, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key {key_id!r} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row
