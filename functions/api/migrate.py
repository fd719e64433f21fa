"""Apply migrations programmatically (CLI `db upgrade`, the embedded stack, the CDK migration function)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current_revision(engine: Engine) -> str | None:
    from sqlalchemy.orm import sessionmaker

    from functions.api.db import Database

    return Database(engine, sessionmaker(engine)).schema_revision()


def revision_ahead(engine: Engine) -> str | None:
    """The database's revision when these scripts do not know it, else None.

    That is a database migrated by newer code: CloudFormation re-runs the *previous* deploy hook on
    UPDATE_ROLLBACK, after the new one migrated. Alembic cannot go from a revision it cannot locate ("Can't
    locate revision"), and must not try: the migrations are additive (expand only, see
    `functions.api.db.schema_serves`), so the previous code runs on the newer schema as it is.
    """
    from alembic.script import ScriptDirectory

    current = _current_revision(engine)
    if current is None:
        return None
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    return None if current in known else current


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate to `revision`; returns the revision the database is at afterwards. A database ahead of
    these scripts (`revision_ahead`) is left as it is."""
    from alembic import command

    ahead = revision_ahead(engine)
    if ahead is not None:
        from shared.observability import get_logger

        get_logger().warning(
            "the database is ahead of this code's migrations: not migrating",
            extra={"database_revision": ahead, "code_head": head_revision()},
        )
        return ahead
    config = alembic_config()
    config.attributes["without_models"] = True  # upgrading compares nothing with them (env.py)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    return _current_revision(engine) or ""
