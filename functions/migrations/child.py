"""Migrating a database, in this process (`migrate`) or in a child process of its own (`MigrationChild`,
`python -m functions.migrations.child`).

Light on purpose: the embedded stack starts the child first thing for a new data dir, and the child loads
only SQLAlchemy, the API's database module and Alembic (`bootstrap`'s pydantic and logger, and the models
Alembic needs only to autogenerate, were ~0.15 s of its ~0.9 s).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine


@dataclass(frozen=True)
class Migration:
    revision: str
    ahead_of_code: bool


def migrate(engine: Engine) -> Migration:
    """Apply the migrations; a database ahead of these scripts is left alone (`bootstrap`'s docstring)."""
    from functions.api.migrate import head_revision, revision_ahead, upgrade

    ahead = revision_ahead(engine)
    if ahead is not None:
        from shared.observability import get_logger

        get_logger().warning(
            "the database is ahead of this code's migrations: not migrating",
            extra={"database_revision": ahead, "code_head": head_revision()},
        )
        return Migration(ahead, ahead_of_code=True)
    return Migration(upgrade(engine), ahead_of_code=False)


class MigrationFailed(RuntimeError):
    """The migrating child process failed; its message ends with what the child printed last."""


class MigrationChild:
    """`migrate_in_child` begun now and awaited later: the embedded stack starts it for a database that does
    not exist yet before it loads its own modules, so the child's ~0.9 s overlap them on another core."""

    def __init__(self, database_url: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "functions.migrations.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stdin = self._process.stdin
        assert stdin is not None
        # the URL at once (a few hundred bytes: a pipe holds them), so the child migrates while we work; a
        # child that died at start breaks the pipe, and `result` reports its exit
        with contextlib.suppress(BrokenPipeError):
            stdin.write(database_url)
            stdin.close()
        self._process.stdin = None

    def result(self, timeout_s: float = 600.0) -> Migration:
        """Wait for the child; its outcome, or `MigrationFailed` with the last line it printed."""
        try:
            out, _ = self._process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            raise MigrationFailed(f"migrating the database took over {timeout_s:.0f} s; stopped it") from None
        lines = out.strip().splitlines()
        if self._process.returncode != 0 or not lines:
            raise MigrationFailed(
                f"migrating the database failed (exit {self._process.returncode}): "
                + (lines[-1] if lines else "the migration printed nothing; its log is above")
            )
        answer = json.loads(lines[-1])
        return Migration(str(answer["revision"]), bool(answer["ahead_of_code"]))

    def abandon(self) -> None:
        """Stop the child and reap it, unless `result` awaited it already (the stack failed before it
        needed the database)."""
        if self._process.returncode is None:
            self._process.kill()
            self._process.communicate()


def _migrate_stdin_database() -> int:
    """The child: migrate the database whose URL is on stdin, print the outcome as the last line."""
    from functions.api.db import make_engine

    engine = make_engine(sys.stdin.read().strip())
    try:
        migration = migrate(engine)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
        return 1
    finally:
        engine.dispose()
    print(json.dumps({"revision": migration.revision, "ahead_of_code": migration.ahead_of_code}))
    return 0


if __name__ == "__main__":
    sys.exit(_migrate_stdin_database())
