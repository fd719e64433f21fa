"""The deploy hook (a CDK trigger, run by CloudFormation on every deploy that changes the code).

1. Waits until PostgreSQL accepts the credentials in the RDS secret (a rotation may be in flight
   right after the database is created), then applies the migrations with `functions.api.migrate`.
2. Seeds the first admin from the admin-key secret (`functions.api.auth.bootstrap_admin`: only
   when no admin exists yet).
3. Makes sure the service key in its secret is a live service-scope key of the service user
   (`functions.api.auth.issue_key`); a new value in the secret revokes the previous key.

It runs the API's own code against the API's database, so keys and schema are exactly what the API
would make. Every step is idempotent: CloudFormation runs it again on updates, and on a rollback
(with the previous code), so it never fails for a state it can live with. On a rollback the database
is usually ahead of the previous code (a revision its scripts do not know): then it changes nothing
and succeeds, rather than fail with "Can't locate revision" and leave the stack UPDATE_ROLLBACK_FAILED.

Shipped as a layer (`/opt/python`) next to the function code asset and the api layer; handler
`orchestrator_deploy_hook.on_deploy`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from functions.api.settings import ApiSettings

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from sqlalchemy.orm import Session

    from functions.api.deps import ApiDeps

SERVICE_USER = "orchestrator-service"
"""The user the functions act as; the embedded stack's service user has the same name."""
SERVICE_KEY_NAME = "aws-stack"
SERVICE_SCOPES = ["service"]
CONNECT_ATTEMPTS = 12
CONNECT_DELAY_S = 10.0


class DeployHookSettings(ApiSettings):
    service_api_key_ref: Annotated[
        str | None, Field(description="secret:// reference to the functions' service key material.")
    ] = None


def wait_for_database(settings: DeployHookSettings, attempts: int = CONNECT_ATTEMPTS,
                      delay_s: float = CONNECT_DELAY_S) -> ApiDeps:  # fmt: skip
    """The API's dependencies once a connection succeeds; the secret is read again on every attempt,
    since a rotation may change the password between two attempts."""
    from sqlalchemy import text

    from functions.api.db import dispose_all
    from functions.api.deps import build_deps

    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            deps = build_deps(settings)
            with deps.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return deps
        except Exception as exc:  # driver, network or authentication: all worth another try
            last = exc
            dispose_all()
            _logger().warning(
                "database not ready",
                extra={"attempt": attempt, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            if attempt < attempts:
                time.sleep(delay_s)
    raise RuntimeError(f"the database did not accept a connection after {attempts} attempts: {last}")


def ensure_service_key(session: Session, key: str) -> str:
    """`present`, `created`, `rotated` (older service keys of this stack revoked) or `revoked`."""
    from sqlalchemy import select

    from functions.api import auth
    from functions.api.models import ApiKey, User, utcnow
    from functions.api.services import users

    existing = session.execute(
        select(ApiKey).where(ApiKey.key_hash == auth.hash_key(key))
    ).scalar_one_or_none()
    if existing is not None:
        # Revoked on purpose through the API: never revive it. The functions get 401 until an
        # operator puts a new value in the secret and runs this hook again.
        return "revoked" if existing.revoked_at is not None else "present"
    user = (
        session.execute(
            select(User).where(User.name == SERVICE_USER, User.is_admin.is_(False)).order_by(User.created_at)
        )
        .scalars()
        .first()
    )
    if user is None:
        user = users.create(session, SERVICE_USER, None, False)
    previous = (
        session.execute(
            select(ApiKey).where(
                ApiKey.user_id == user.id, ApiKey.name == SERVICE_KEY_NAME, ApiKey.revoked_at.is_(None)
            )
        )
        .scalars()
        .all()
    )
    for row in previous:
        row.revoked_at = utcnow()
    auth.issue_key(session, user, SERVICE_KEY_NAME, SERVICE_SCOPES, key=key)
    return "rotated" if previous else "created"


def run(settings: DeployHookSettings, deps: ApiDeps) -> dict[str, str]:
    from functions.api import auth
    from functions.api.migrate import head_revision, revision_ahead, upgrade

    ahead = revision_ahead(deps.db.engine)
    if ahead is not None:
        # A rollback: CloudFormation runs this (older) code after newer code migrated and seeded. Nothing
        # to do, and nothing safe to do: no migration goes back, and older models writing users and keys
        # into a newer schema could miss what it needs (the newer hook seeded both already; a secret rolled
        # back to a value the newer hook rotated away stays revoked either way, see ensure_service_key).
        _logger().warning(
            "database ahead of this code (a rollback after a newer deploy): migrations and seeding skipped",
            extra={"database_revision": ahead, "code_head": head_revision()},
        )
        return {"revision": ahead, "skipped": f"database at {ahead}, ahead of this code ({head_revision()})"}
    outcome = {"revision": upgrade(deps.db.engine)}
    with deps.db.session() as session:
        if settings.bootstrap_admin_key_ref:
            admin_key = deps.secrets.get(settings.bootstrap_admin_key_ref)
            outcome["admin"] = "created" if auth.bootstrap_admin(session, admin_key) else "present"
        if settings.service_api_key_ref:
            outcome["service_key"] = ensure_service_key(
                session, deps.secrets.get(settings.service_api_key_ref)
            )
    return outcome


def on_deploy(event: dict[str, Any] | None, context: Any, deps: ApiDeps | None = None,
              settings: DeployHookSettings | None = None) -> dict[str, str]:  # fmt: skip
    """Lambda entry point (the trigger invokes it synchronously; an exception fails the deploy)."""
    settings = settings or DeployHookSettings()
    deps = deps or wait_for_database(settings)
    outcome = run(settings, deps)
    _logger().info("deploy hook done", extra=outcome)
    return outcome


def _logger() -> Logger:
    from shared.observability import get_logger

    return get_logger()
