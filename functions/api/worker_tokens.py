"""Per-task worker tokens: one short-lived bearer per worker, so a worker's wrapper can act for its own
job and nothing else (issue 20).

A token is "orchw_" + 256 random bits, shown once (to the worker manager, which hands it to the worker's
launch environment) and stored as SHA-256 on the worker's row with its expiry. Minting again rotates:
the row holds one hash, so the previous token stops working. A token is refused once it expires or its
worker has ended. What the resulting principal may call is decided by `routers._common.service_or_worker`
(every other route refuses a worker principal).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from functions.api.auth import Principal, hash_key
from functions.api.errors import Conflict, Unauthorized
from functions.api.models import Project, Task, Worker, utcnow
from functions.api.services.workers import ENDED, conversation_person, get

TOKEN_PREFIX = "orchw_"  # noqa: S105 - a public prefix, like auth.KEY_PREFIX
WORKER_SCOPE = "worker"


def is_worker_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def mint(session: Session, worker_id: str, ttl_s: int, now: datetime | None = None) -> tuple[Worker, str]:
    """A new token for the worker (the previous one stops working): (row, plaintext token)."""
    worker = get(session, worker_id)
    if worker.status in ENDED:
        raise Conflict(f"worker {worker_id} has ended ({worker.status}): it gets no token")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    worker.token_hash = hash_key(token)
    worker.token_expires_at = (now or utcnow()) + timedelta(seconds=ttl_s)
    session.flush()
    return worker, token


def authenticate(session: Session, token: str, now: datetime | None = None) -> Principal:
    """The principal of a worker token: scope `worker`, the worker's id, and the person it works for."""
    digest = hash_key(token)
    # One query: the worker and the owner of its task's project (the person it works for).
    row = session.execute(
        select(Worker, Project.owner_id)
        .outerjoin(Task, Task.id == Worker.task_id)
        .outerjoin(Project, Project.id == Task.project_id)
        .where(Worker.token_hash == digest)
    ).first()
    worker, owner_id = row if row is not None else (None, None)
    # Compare even when nothing matched, so a miss costs the same as a hit.
    stored = worker.token_hash if worker is not None and worker.token_hash else hash_key("")
    if worker is None or not hmac.compare_digest(stored, digest):
        raise Unauthorized("invalid worker token (unknown, or replaced by a newer one)")
    expires = worker.token_expires_at
    if expires is None or expires <= (now or utcnow()):
        raise Unauthorized("this worker token expired")
    if worker.status in ENDED:
        raise Unauthorized(f"this worker token is no longer valid: its worker has ended ({worker.status})")
    return Principal(
        user_id=owner_id or conversation_person(worker.config) or "",
        telegram_id=None,
        is_admin=False,
        scopes=frozenset({WORKER_SCOPE}),
        key_id=f"worker:{worker.id}",
        worker_id=worker.id,
    )
