"""Bring a database to where this code serves it: migrate, then the first admin, then the service key.

One sequence for the three places that prepare a database: the deploy hook (`functions.migrations.handler`,
a CDK trigger on every deploy), the embedded stack's start-up (`cli.local.stack`) and `orchestrator db
upgrade` (the migration step only). It runs the API's own code (`functions.api.migrate`, `functions.api.auth`)
against the API's database, so schema and keys are exactly what the API would make.

Every step is idempotent: CloudFormation runs the hook again on updates and, on a rollback, runs the
*previous* code after newer code migrated. A database ahead of this code (a revision its scripts do not
know) is then left as it is: no migration goes back, and older models writing users and keys into a newer
schema could miss what it needs (the newer code seeded both already).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field

from functions.migrations.child import Migration, MigrationChild, migrate

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from functions.api.db import Database

SERVICE_USER = "orchestrator-service"
"""The user the functions act as, in AWS and in the embedded stack."""
SERVICE_SCOPES = ["service"]

AdminOutcome = Literal["created", "present"]
ServiceKeyOutcome = Literal["present", "created", "rotated", "revoked"]


class BootstrapOutcome(BaseModel):
    """What one run did; the deploy hook returns it to CloudFormation (`model_dump(exclude_none=True)`)."""

    revision: Annotated[str, Field(description="The schema revision the database is at afterwards.")]
    skipped: Annotated[
        str | None, Field(description="Why nothing was done: the database is ahead of this code.")
    ] = None
    admin: Annotated[
        AdminOutcome | None, Field(description="The first admin: seeded now or already there.")
    ] = None
    service_key: Annotated[
        ServiceKeyOutcome | None,
        Field(description="present, created, rotated (older keys of the same name revoked) or revoked."),
    ] = None
    app_login: Annotated[
        str | None, Field(description="The API's IAM-authenticated login, created or confirmed, and granted.")
    ] = None


@dataclass(frozen=True)
class ServiceKey:
    """Key material the service user must hold, under `name`.

    `revoke_previous`: a new value replaces the user's earlier live keys of that name (the AWS stack's
    secret is the only holder); the embedded stack keeps them, as a second stack may share the database.
    """

    key: str = field(repr=False)
    name: str
    revoke_previous: bool = True


def migrate_in_child(database_url: str, timeout_s: float = 600.0) -> Migration:
    """`migrate` in a Python process of its own. Alembic and Mako stay in a process for good once imported
    (~12 MB of a long-running embedded stack's ~90); the stack's start-up migrates a fresh database this way
    (~0.4 s more than in-process). The URL goes to the child on stdin (it may hold a password); the child's
    logs go to this process's stderr."""
    return MigrationChild(database_url).result(timeout_s)


APP_LOGIN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
RDS_IAM_ROLE = "rds_iam"
"""RDS's role: a member logs in with an IAM authentication token, never a password."""


def ensure_app_login(engine: Engine, user: str) -> list[str]:
    """The API's PostgreSQL login: `user`, authenticated by IAM (member of `rds_iam` where RDS has that role),
    allowed the rows of every table and sequence in `public` (now and, via default privileges, those later
    migrations create), not their definitions. Idempotent; run after every migration. Returns what it granted.
    """
    from sqlalchemy import text

    if not APP_LOGIN_NAME.match(user):
        raise ValueError(f"database login {user!r} is not a plain lower-case PostgreSQL name")
    if engine.dialect.name != "postgresql":
        return []
    granted = ["login", "rows of public", "sequences of public", "default privileges"]
    with engine.begin() as connection:
        connection.execute(
            text(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') THEN "
                f'CREATE ROLE "{user}" LOGIN; END IF; '
                "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
            )
        )
        if connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": RDS_IAM_ROLE}).first():
            connection.execute(text(f'GRANT {RDS_IAM_ROLE} TO "{user}"'))
            granted.insert(1, RDS_IAM_ROLE)
        for statement in (
            f'GRANT USAGE ON SCHEMA public TO "{user}"',
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{user}"',
            f'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO "{user}"',
            f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{user}"',
            f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO "{user}"',
        ):
            connection.execute(text(statement))
    return granted


def ensure_first_admin(session: Session, key: str) -> AdminOutcome:
    """Seed an admin holding `key` when no admin exists yet."""
    from functions.api import auth

    return "created" if auth.bootstrap_admin(session, key) else "present"


def ensure_service_key(session: Session, service_key: ServiceKey) -> ServiceKeyOutcome:
    """Make `service_key` a live service-scope key of the service user."""
    from sqlalchemy import select

    from functions.api import auth
    from functions.api.models import ApiKey, User, utcnow
    from functions.api.services import users

    existing = session.execute(
        select(ApiKey).where(ApiKey.key_hash == auth.hash_key(service_key.key))
    ).scalar_one_or_none()
    if existing is not None:
        # Revoked on purpose through the API: never revive it. The functions get 401 until an operator
        # puts a new value in the secret and runs this again.
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
    previous: list[ApiKey] = []
    if service_key.revoke_previous:
        live = select(ApiKey).where(
            ApiKey.user_id == user.id, ApiKey.name == service_key.name, ApiKey.revoked_at.is_(None)
        )
        previous = list(session.execute(live).scalars().all())
    for row in previous:
        row.revoked_at = utcnow()
    auth.issue_key(session, user, service_key.name, SERVICE_SCOPES, key=service_key.key)
    return "rotated" if previous else "created"


def bootstrap(
    db: Database,
    admin_key: str | None = None,
    service_key: ServiceKey | None = None,
    *,
    seed_when_ahead: bool = False,
) -> BootstrapOutcome:
    """Migrate, then seed the first admin (`admin_key`) and the service key, each when given.

    `seed_when_ahead`: seed even on a database ahead of this code. The embedded stack does: it serves such
    a database like the API does and cannot run without its keys; the deploy hook does not (a rollback).
    """
    from functions.api.migrate import head_revision

    migration = migrate(db.engine)
    if migration.ahead_of_code and not seed_when_ahead:
        return BootstrapOutcome(
            revision=migration.revision,
            skipped=f"database at {migration.revision}, ahead of this code ({head_revision()})",
        )
    outcome = BootstrapOutcome(revision=migration.revision)
    with db.session() as session:
        if admin_key:
            outcome.admin = ensure_first_admin(session, admin_key)
        if service_key is not None:
            outcome.service_key = ensure_service_key(session, service_key)
    return outcome
