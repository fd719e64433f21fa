"""Migration 0010 (releases, slots, domains) upgrades a database at 0009 holding data, on SQLite and on the
real PostgreSQL: existing port allocations become the stable port (slot ""), existing deployments run in
place (slot ""), and a project may then hold its slots' ports beside its stable one. Downgrading keeps the
stable ports."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from functions.api.migrate import upgrade
from functions.api.models import utcnow
from tests.conftest import POSTGRES_URL_ENV

BEFORE = "0009_worker_tokens"


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        found = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield found
        found.dispose()
        return
    admin_url = os.environ.get(POSTGRES_URL_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set: no PostgreSQL to test against (CI sets it)")
    name = f"orch_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    found = create_engine(make_url(admin_url).set(database=name).render_as_string(hide_password=False))
    yield found
    found.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _seed(engine: Engine) -> None:
    now = utcnow()
    rows = [
        "INSERT INTO users (id, name, is_admin, created_at) VALUES ('u', 'u', false, :t)",
        "INSERT INTO servers (id, handle, host, ssh_user, status, labels, owner_id, created_at, facts) "
        "VALUES ('s', 'localhost', 'h', 'root', 'up', '{}', 'u', :t, '{}')",
        "INSERT INTO projects (id, name, description, modules, status, owner_id, created_at, updated_at) "
        "VALUES ('p', 'blog', '', '[]', 'active', 'u', :t, :t)",
        "INSERT INTO port_allocations (id, server_id, port, project_id, created_at) "
        "VALUES ('a', 's', 8000, 'p', :t)",
        "INSERT INTO deployments (id, project_id, server_id, port, url, health_url, status, health, "
        "created_at, updated_at) VALUES ('d', 'p', 's', 8000, 'http://h:8000', 'http://h:8000/health', "
        "'deployed', 'up', :t, :t)",
    ]
    with engine.begin() as conn:
        for statement in rows:
            conn.execute(text(statement), {"t": now})


def _allocate(engine: Engine, row_id: str, port: int, slot: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO port_allocations (id, server_id, port, project_id, created_at, slot) "
                "VALUES (:id, 's', :port, 'p', :t, :slot)"
            ),
            {"id": row_id, "port": port, "t": utcnow(), "slot": slot},
        )


def test_a_database_with_deployed_projects_upgrades_and_downgrades(engine: Engine) -> None:
    upgrade(engine, BEFORE)
    _seed(engine)

    assert upgrade(engine, "0010_releases") == "0010_releases"

    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, port, slot FROM port_allocations")).all() == [("a", 8000, "")]
        assert conn.execute(text("SELECT slot FROM deployments")).all() == [("",)]
        assert conn.execute(text("SELECT domain FROM projects")).all() == [(None,)]
        assert conn.execute(text("SELECT count(*) FROM releases")).scalar_one() == 0
    _allocate(engine, "b", 8001, "a")
    _allocate(engine, "c", 8002, "b")
    with pytest.raises(IntegrityError):
        _allocate(engine, "d", 8003, "a")  # one port per server, project and slot

    from alembic import command

    from functions.api.migrate import alembic_config

    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, BEFORE)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, port FROM port_allocations")).all() == [("a", 8000)]
    assert upgrade(engine, "0010_releases") == "0010_releases", "and up again"
