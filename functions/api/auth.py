"""API keys: random, shown once, stored as SHA-256 only; looked up by hash and compared in constant time.

Keys are 256-bit random strings, so a fast hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from functions.api.errors import Forbidden, Unauthorized
from functions.api.models import ApiKey, User, utcnow

KEY_PREFIX = "orch_"
PREFIX_CHARS = 12


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:PREFIX_CHARS]


@dataclass(frozen=True)
class Principal:
    user_id: str
    telegram_id: int | None
    is_admin: bool
    scopes: frozenset[str]
    key_id: str
    worker_id: str | None = None
    """Set for a worker's per-task token (scope `worker`): the one worker, and so the one job, it may act for."""

    @property
    def is_service(self) -> bool:
        return "service" in self.scopes

    def require_admin(self) -> None:
        if not (self.is_admin and ({"admin", "user"} & self.scopes)):
            raise Forbidden("this needs an admin API key")

    def require_service(self) -> None:
        if not (self.is_service or (self.is_admin and "admin" in self.scopes)):
            raise Forbidden("this needs a service-scope API key")

    def sees_all(self) -> bool:
        return self.is_admin or self.is_service


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <api key>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <api key>'")
    return token.strip()


def authenticate(session: Session, key: str) -> Principal:
    digest = hash_key(key)
    row = session.execute(
        select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(ApiKey.key_hash == digest)
    ).first()
    # Compare even when nothing matched, so a miss costs the same as a hit.
    stored = row[0].key_hash if row else hash_key("")
    if row is None or not hmac.compare_digest(stored, digest):
        raise Unauthorized("invalid API key")
    api_key, user = row
    if api_key.revoked_at is not None:
        raise Unauthorized("this API key was revoked")
    return Principal(
        user_id=user.id,
        telegram_id=user.telegram_id,
        is_admin=user.is_admin,
        scopes=frozenset(api_key.scopes),
        key_id=api_key.id,
    )


def issue_key(
    session: Session, user: User, name: str, scopes: list[str], key: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key for `user`; returns the row and the plaintext key (the only time it exists)."""
    plaintext = key or generate_key()
    row = ApiKey(
        user_id=user.id,
        name=name,
        prefix=display_prefix(plaintext),
        key_hash=hash_key(plaintext),
        scopes=sorted(set(scopes)),
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row, plaintext


def bootstrap_admin(session: Session, key: str, now: datetime | None = None) -> bool:
    """Seed an admin holding `key` when no admin exists yet. Returns True when it did."""
    if session.execute(select(User.id).where(User.is_admin.is_(True)).limit(1)).first():
        return False
    if session.execute(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))).first():
        return False
    admin = User(name="admin", is_admin=True, created_at=now or utcnow())
    session.add(admin)
    session.flush()
    issue_key(session, admin, "bootstrap", ["admin", "user"], key=key)
    return True
