"""The embedded stack migrates in a child process (`migrate_in_child`), so it never loads Alembic itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.api.migrate import head_revision
from functions.migrations.bootstrap import migrate_in_child
from functions.migrations.child import MigrationFailed


def test_a_fresh_database_is_migrated_to_the_head_and_again_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    assert migrate_in_child(url).revision == head_revision()
    again = migrate_in_child(url)
    assert (again.revision, again.ahead_of_code) == (head_revision(), False)


def test_a_database_that_cannot_be_opened_fails_with_the_child_s_reason(tmp_path: Path) -> None:
    with pytest.raises(MigrationFailed, match=r"migrating the database failed \(exit 1\): .*unable to open"):
        migrate_in_child(f"sqlite:///{tmp_path}")  # a directory, not a database file


def test_a_new_data_dir_is_migrated_while_the_stack_loads_and_a_failed_start_stops_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new data dir's database is migrated by a child begun before the stack loads the API (the two overlap
    on two cores); when the start fails before it awaited the child, the child is stopped and reaped."""
    from cli.local.stack import DATABASE_FILE, EmbeddedStack
    from functions.migrations.child import MigrationChild

    begun: list[MigrationChild] = []
    original = MigrationChild.__init__

    def recorded(self: MigrationChild, database_url: str) -> None:
        original(self, database_url)
        begun.append(self)

    def failing_start(self: EmbeddedStack, migrating: object, ready: bool) -> str:
        assert migrating is begun[0]
        raise RuntimeError("the port went away")

    monkeypatch.setattr(MigrationChild, "__init__", recorded)
    monkeypatch.setattr(EmbeddedStack, "_start", failing_start)
    with pytest.raises(RuntimeError, match="the port went away"):
        EmbeddedStack(tmp_path / "home", port=0).start()
    [child] = begun
    assert child._process.returncode is not None, "stopped and reaped, not left running"

    monkeypatch.undo()  # the next start finds whatever the stopped child left, and migrates it
    stack = EmbeddedStack(tmp_path / "home", port=0, consumers=[])
    try:
        stack.start()
        assert stack.server is not None
    finally:
        stack.stop()
    assert migrate_in_child(f"sqlite:///{tmp_path / 'home' / DATABASE_FILE}").revision == head_revision()


def test_a_stack_whose_settings_name_a_postgresql_login_migrates_that_database_not_a_data_dir_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCH_DATABASE_SECRET_REF (or ORCH_DATABASE_IAM_USER) makes the API log in to PostgreSQL whatever
    `database_url` says: a new data dir then gets no migration child for a SQLite file it does not use (a
    review found the first version migrated that file and served PostgreSQL unmigrated)."""
    import json
    import os

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from cli.local.stack import DATABASE_FILE, EmbeddedStack
    from shared.secrets.local import LocalSecrets
    from tests.api_support import fresh_postgres_database
    from tests.conftest import POSTGRES_URL_ENV

    admin_url = os.environ.get(POSTGRES_URL_ENV)
    if not admin_url:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set: no PostgreSQL to test against (CI sets it)")
    url = make_url(fresh_postgres_database(admin_url))
    engine = create_engine(url)
    with engine.begin() as connection:  # back to an empty schema: the stack must migrate it
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    home = tmp_path / "home"
    secret = {
        "username": url.username,
        "password": url.password or "",
        "host": url.host,
        "port": url.port or 5432,
    }
    LocalSecrets(home / "secrets.json").put(
        "secret://local/db", json.dumps(secret | {"dbname": url.database})
    )
    monkeypatch.setenv("ORCH_DATABASE_SECRET_REF", "secret://local/db")
    begun: list[object] = []
    early = EmbeddedStack._migrate_new_database
    monkeypatch.setattr(EmbeddedStack, "_migrate_new_database", lambda self: begun.append(early(self)))
    stack = EmbeddedStack(home, port=0, consumers=[])
    try:
        stack.start()
    finally:
        stack.stop()
    assert begun == [None] and not (home / DATABASE_FILE).exists()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    engine.dispose()
