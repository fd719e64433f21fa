"""Idempotency keys for creating calls (`Idempotency-Key` header).

The same caller sending the same key with the same request (method, path, JSON body) within
`idempotency_window_s` gets the first answer again, and nothing is created twice; the same key
with a different request is refused (422, field `Idempotency-Key`). Keys belong to their caller:
two people using one key never see each other's answers.

The row is written in the transaction that creates the thing, so a failed call leaves no key
behind (its retry runs for real), and a concurrent duplicate waits on the unique (user, key)
index until the first commits, then replays it. Rows older than the window are pruned by the
outbox sweep (`prune`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.db import added
from functions.api.errors import Conflict, Unprocessable
from functions.api.models import IdempotencyKey, new_id, utcnow
from functions.api.services.unit_of_work import transaction

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


@dataclass(frozen=True)
class Replay:
    status: int
    body: Any


@dataclass
class Claim:
    """One creating call's key: `replay` is the first answer when this is a repeat; otherwise call
    `remember` with the answer before the transaction commits."""

    row: IdempotencyKey | None
    replay: Replay | None = None

    def remember(self, session: Session, body: BaseModel, status: int) -> None:
        if self.row is None:
            return
        self.row.status_code, self.row.response = status, body.model_dump_json()
        session.flush()


@dataclass(frozen=True)
class IdempotentRequest:
    """What identifies one creating call: who asks, with which key, for which request."""

    caller: Principal
    key: str | None
    method: str
    path: str
    body: BaseModel | None
    window_s: int


@dataclass(frozen=True)
class Reply:
    """A creating call's answer: the new thing (`body` a model), or the first answer replayed (JSON)."""

    body: Any
    status: int


Creation = Callable[[Session, Principal], BaseModel]
"""What a creating call does in its transaction: given the session and the caller, it returns the body."""


def created_once(request: IdempotentRequest, status: int, make: Creation) -> Reply:
    """`make(session, caller)` in one transaction, at most once per `Idempotency-Key` (see `once`)."""
    with transaction() as session:
        return once(session, request, status, lambda: make(session, request.caller))


def once(session: Session, request: IdempotentRequest, status: int, make: Callable[[], BaseModel]) -> Reply:
    """Run `make` (which creates something) once per key: a repeat gets the first answer back."""
    r = request
    taken = claim(session, r.caller, r.key, r.method, r.path, r.body, r.window_s)
    if taken.replay:
        return Reply(taken.replay.body, taken.replay.status)
    body = make()
    taken.remember(session, body, status)
    return Reply(body, status)


def _fingerprint(method: str, path: str, body: BaseModel | None) -> str:
    canonical = json.dumps(
        [method.upper(), path, body.model_dump(mode="json") if body is not None else None],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def claim(
    session: Session,
    caller: Principal,
    key: str | None,
    method: str,
    path: str,
    body: BaseModel | None,
    window_s: int,
) -> Claim:
    """Take `key` for `caller` before creating anything: a replay of the first answer, a refusal for
    another request, or a fresh claim (without a key, a claim that remembers nothing).

    The claim row is inserted first, so a concurrent twin blocks on the unique index (PostgreSQL)
    until this transaction ends, then finds the finished answer; SQLite serialises writers anyway."""
    if key is None:
        return Claim(None)
    if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise Unprocessable(f"{HEADER} must be 1-{MAX_KEY_CHARS} printable characters", [HEADER])
    fingerprint = _fingerprint(method, path, body)
    cutoff = utcnow() - timedelta(seconds=window_s)
    for _attempt in range(2):
        found = session.execute(
            select(IdempotencyKey).where(IdempotencyKey.user_id == caller.user_id, IdempotencyKey.key == key)
        ).scalar_one_or_none()
        if found is not None and found.created_at < cutoff:
            session.delete(found)  # expired: the key starts over
            session.flush()
            found = None
        if found is not None:
            if found.request_hash != fingerprint:
                raise Unprocessable(
                    f"{HEADER} {key!r} was already used for a different request; use a new key for a new request",
                    [HEADER],
                )
            return Claim(None, Replay(found.status_code, json.loads(found.response)))
        row = IdempotencyKey(
            id=new_id(),
            user_id=caller.user_id,
            key=key,
            request_hash=fingerprint,
            status_code=0,
            response="null",
            created_at=utcnow(),
        )
        if not added(session, row):
            continue  # a twin committed first: read its answer
        return Claim(row)
    raise Conflict(f"{HEADER} {key!r} is being used by another request right now; retry it", [HEADER])


def prune(session: Session, older_than: timedelta, limit: int = 5000) -> int:
    """Delete up to `limit` keys created before `older_than` ago; returns how many."""
    cutoff = utcnow() - older_than
    ids = list(
        session.execute(
            select(IdempotencyKey.id).where(IdempotencyKey.created_at < cutoff).limit(limit)
        ).scalars()
    )
    if ids:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids)))
    return len(ids)
