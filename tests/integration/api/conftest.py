"""The whole API suite runs twice: on SQLite and on the real PostgreSQL (skipped visibly without it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.api.db import dispose_all
from functions.api.deps import set_deps
from tests.api_support import (
    ApiHarness,
    build_deps,
    drop_postgres_database,
    fresh_postgres_database,
    install,
    migrated_sqlite,
    reset_postgres,
)
from tests.conftest import POSTGRES_URL_ENV


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str | None]:
    admin_url = os.environ.get(POSTGRES_URL_ENV)
    if not admin_url:
        yield None
        return
    url = fresh_postgres_database(admin_url)
    yield url
    drop_postgres_database(admin_url, url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, _postgres_database: str | None) -> str:
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path / "api.db")
    if _postgres_database is None:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set: no PostgreSQL to test against (CI sets it)")
    reset_postgres(_postgres_database)
    return _postgres_database


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[ApiHarness]:
    harness = install(build_deps(database_url, tmp_path / "home"))
    yield harness
    set_deps(None)
    if database_url.startswith("sqlite"):
        dispose_all()
