"""API keys: random, shown once, stored as SHA-256 only; looked up by hash and compared in constant time.

Keys are 256-bit random strings, so a fast hash is enough (no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, object_session

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


class VerifiedKeys:
    """API keys verified in the last `ttl_s` seconds (SHA-256 -> Principal), at most `max_entries`.

    A hit answers without the database: no transaction, no round trip. Revoking a key takes effect at
    once in the process that revokes it (setting `ApiKey.revoked_at` clears the cache, see below) and
    within `ttl_s` (5 s) in every other process. Keys are cached per database (its URL). Only person
    and service keys come here; a worker's per-task token (`orchw_`) is checked by `worker_tokens`."""

    def __init__(
        self, ttl_s: float = 5.0, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, database: str, digest: str) -> Principal | None:
        with self._lock:
            found = self._entries.get((database, digest))
            if found is None:
                return None
            if found[0] <= self.clock():
                del self._entries[(database, digest)]
                return None
            return found[1]

    def put(self, database: str, digest: str, principal: Principal) -> None:
        with self._lock:
            self._entries[(database, digest)] = (self.clock() + self.ttl_s, principal)
            self._entries.move_to_end((database, digest))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_keys = VerifiedKeys()


@event.listens_for(ApiKey.revoked_at, "set")
def _revoked(target: ApiKey, value: object, _old: object, _initiator: object) -> None:
    """A key revoked here stops working here at once: now, and again when the revocation commits (a
    request verifying the key in between would otherwise cache it for another `ttl_s`)."""
    verified_keys.clear()
    session = object_session(target)
    if session is not None:
        event.listen(session, "after_commit", lambda _session: verified_keys.clear(), once=True)


def _cache_key(engine: Engine, key: str) -> tuple[str, str]:
    """(the database, the key's digest): keys are cached per database."""
    return str(engine.url), hash_key(key)


def known_key(engine: Engine, key: str) -> Principal | None:
    """The key's principal if it was verified in the last `ttl_s` seconds, without touching the database (the
    handler asks before it makes a session: building one costs more than this lookup)."""
    return verified_keys.get(*_cache_key(engine, key))


def authenticate(session: Session, key: str) -> Principal:
    database, digest = _cache_key(session.get_bind().engine, key)
    cached = verified_keys.get(database, digest)
    if cached is not None:
        return cached
    principal = _verify(session, digest)
    verified_keys.put(database, digest, principal)
    return principal


def _verify(session: Session, digest: str) -> Principal:
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
    verified_keys.clear()  # a database emptied under a live process: its old keys' principals are gone
    return True
