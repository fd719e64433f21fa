"""Alembic environment: always driven programmatically (functions.api.migrate), never by alembic.ini."""

from __future__ import annotations

from typing import Any

from alembic import context

config = context.config
connection = config.attributes["connection"]


def _models() -> Any:
    """The models' metadata, which only autogenerate compares against; `functions.api.migrate.upgrade`
    says it does not need them (loading the mapped models is ~0.07 s of a new data dir's migration)."""
    if config.attributes.get("without_models"):
        return None
    from functions.api.models import Base

    return Base.metadata


context.configure(
    connection=connection,
    target_metadata=_models(),
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
