"""The embedded stack migrates in a child process (`migrate_in_child`), so it never loads Alembic itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.api.migrate import head_revision
from functions.migrations.bootstrap import MigrationFailed, migrate_in_child


def test_a_fresh_database_is_migrated_to_the_head_and_again_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    assert migrate_in_child(url).revision == head_revision()
    again = migrate_in_child(url)
    assert (again.revision, again.ahead_of_code) == (head_revision(), False)


def test_a_database_that_cannot_be_opened_fails_with_the_child_s_reason(tmp_path: Path) -> None:
    with pytest.raises(MigrationFailed, match=r"migrating the database failed \(exit 1\): .*unable to open"):
        migrate_in_child(f"sqlite:///{tmp_path}")  # a directory, not a database file
