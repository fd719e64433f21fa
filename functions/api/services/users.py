"""Users and their API keys (admin only)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from functions.api.errors import Conflict
from functions.api.models import User, new_id, utcnow


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
