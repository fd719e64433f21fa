"""What a worker reaches through the API with its own token (issue 20): the secret values its job names,
and its conversation's session archive. The worker holds no other credential: the API resolves and
presigns on its behalf, for that one worker only.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from functions.api.errors import Forbidden, NotFound, PayloadTooLarge, Unprocessable
from functions.api.models import Worker, utcnow
from functions.api.services.workers import PRODUCT_OWNER, get
from shared.contracts.api import WorkerSessionAccess
from shared.secrets.port import SecretNotFound, SecretsPort
from shared.secrets.refs import SCHEME
from shared.secrets.scope import worker_reference_allowed
from shared.sessions.port import SessionStore, SessionTooLarge
from shared.sessions.s3 import S3SessionStore

PRESIGN_S = 900
"""How long a presigned session URL works (15 minutes: one load or one save)."""


def _context(worker: Worker) -> dict[str, Any]:
    context = (worker.config or {}).get("context")
    return context if isinstance(context, dict) else {}


def allowed_references(worker: Worker) -> frozenset[str]:
    """The references the worker's own config names (its `env_vars`: the agent's credentials, the git
    token, a Product Owner's key) that a worker may resolve at all (`worker_reference_allowed`)."""
    env_vars = (worker.config or {}).get("env_vars") or {}
    context = _context(worker)
    po_user = context.get("user_id") if context.get("role") == PRODUCT_OWNER else None
    named = {str(v) for v in env_vars.values() if str(v).startswith(SCHEME)}
    return frozenset(ref for ref in named if worker_reference_allowed(ref, str(po_user) if po_user else None))


def resolve_secrets(
    session: Session, worker_id: str, refs: Sequence[str], secrets: SecretsPort
) -> dict[str, str]:
    """Each reference's value; 403 naming the first one this worker may not use (nothing is resolved then)."""
    allowed = allowed_references(get(session, worker_id))
    for ref in refs:
        if ref not in allowed:
            raise Forbidden(f"secret reference {ref} is not this worker's to use", ["refs"])
    values: dict[str, str] = {}
    for ref in dict.fromkeys(refs):
        try:
            values[ref] = secrets.get(ref)
        except SecretNotFound:
            raise NotFound(f"secret reference {ref} has no value stored", ["refs"]) from None
    return values


def session_key(worker: Worker) -> str:
    key = _context(worker).get("session_key")
    if not key:
        raise NotFound(f"worker {worker.id} has no conversation session (its context names no session_key)")
    return str(key)


def session_access(
    session: Session,
    worker_id: str,
    op: Literal["load", "save"],
    store: SessionStore,
    now: datetime | None = None,
) -> WorkerSessionAccess:
    """Where to load or save the worker's session: a presigned S3 URL for exactly that object, or for a
    store without one the API's own archive route (the worker sends its token there)."""
    key = session_key(get(session, worker_id))
    method: Literal["GET", "PUT"] = "GET" if op == "load" else "PUT"
    expires_at = (now or utcnow()) + timedelta(seconds=PRESIGN_S)
    if not isinstance(store, S3SessionStore):
        route = f"/internal/workers/{worker_id}/session/archive"
        return WorkerSessionAccess(method=method, url=route, expires_at=expires_at)
    url, headers = store.presign(key, method, PRESIGN_S)
    return WorkerSessionAccess(method=method, url=url, headers=headers, expires_at=expires_at)


def load_archive(session: Session, worker_id: str, store: SessionStore) -> str | None:
    data = store.load(session_key(get(session, worker_id)))
    return None if data is None else base64.b64encode(data).decode("ascii")


def save_archive(session: Session, worker_id: str, store: SessionStore, data_b64: str | None) -> int:
    """Store the archive; returns its size in bytes."""
    key = session_key(get(session, worker_id))
    try:
        data = base64.b64decode(data_b64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("invalid request: data_b64: not base64", ["data_b64"]) from None
    if data_b64 is None:
        raise Unprocessable("invalid request: data_b64: an archive is required to save", ["data_b64"])
    try:
        store.save(key, data)
    except SessionTooLarge as exc:
        raise PayloadTooLarge(str(exc), ["data_b64"]) from None
    return len(data)
