"""The embedded adapter: one SQLite row per standing mark, and one per job snapshot, in ORCH_HOME (shared by
the API and the ticker).

Commits are not flushed to disk one by one (WAL, synchronous=NORMAL), as in the embedded API database and
queue: an OS crash or power loss may take the newest marks, and a job then idles on that kind of work until
the next write of it marks it again (docs/decisions.md says why that is acceptable here)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shared.work_signal.port import RecentMarks, WorkKind, WorkSignalError, parse_marks, settle_before


class SqliteWorkSignal:
    backend = "local"

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._recent = RecentMarks()
        # one connection per store, its statements serialized here; other processes by SQLite's lock
        self._lock = threading.Lock()
        with self._guard():
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            # no fsync per mark (FULL made one, on the API's request path); a process crash still loses none
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS marks (kind TEXT PRIMARY KEY, marked_at REAL NOT NULL)"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS snapshots "
                "(name TEXT PRIMARY KEY, data TEXT NOT NULL, read_at REAL NOT NULL)"
            )

    @contextmanager
    def _guard(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise WorkSignalError(f"work signal {self.path} failed: {exc}") from exc

    def mark(self, kinds: Iterable[WorkKind]) -> None:
        now = float(self._clock())
        due = self._recent.due(kinds, now)
        if not due:
            return
        rows = [(kind.value, now) for kind in due]
        # one statement, so one transaction (executemany in autocommit mode committed once per kind)
        values = ", ".join(["(?, ?)"] * len(rows))
        with self._guard():
            self._conn.execute(
                f"INSERT INTO marks (kind, marked_at) VALUES {values} "
                "ON CONFLICT (kind) DO UPDATE SET marked_at = max(marked_at, excluded.marked_at)",
                [value for row in rows for value in row],
            )
        self._recent.written(due, now)

    def marks(self) -> dict[WorkKind, float]:
        with self._guard():
            rows = self._conn.execute("SELECT kind, marked_at FROM marks").fetchall()
        return parse_marks(dict(rows))

    def settle(self, kind: WorkKind, seen_at: float) -> bool:
        with self._guard():
            cursor = self._conn.execute(
                "DELETE FROM marks WHERE kind = ? AND marked_at < ?",
                (WorkKind(kind).value, settle_before(seen_at)),
            )
        self._recent.forget(kind)
        return cursor.rowcount == 1

    def load_snapshot(self, name: str) -> tuple[dict[str, Any], float] | None:
        with self._guard():
            row = self._conn.execute("SELECT data, read_at FROM snapshots WHERE name = ?", (name,)).fetchone()
        return None if row is None else (json.loads(row[0]), float(row[1]))

    def save_snapshot(self, name: str, data: Mapping[str, Any], read_at: float) -> bool:
        with self._guard():
            cursor = self._conn.execute(
                "INSERT INTO snapshots (name, data, read_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET data = excluded.data, read_at = excluded.read_at "
                "WHERE snapshots.read_at <= excluded.read_at",
                (name, json.dumps(dict(data)), float(read_at)),
            )
        return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()
