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
