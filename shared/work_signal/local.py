"""The embedded adapter: one SQLite row per standing mark, in ORCH_HOME (shared by the API and the ticker)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.work_signal.port import WorkKind, WorkSignalError, parse_marks, settle_before


class SqliteWorkSignal:
    backend = "local"

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        # one connection per store, its statements serialized here; other processes by SQLite's lock
        self._lock = threading.Lock()
        with self._guard():
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS marks (kind TEXT PRIMARY KEY, marked_at REAL NOT NULL)"
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
        rows = [(WorkKind(kind).value, now) for kind in set(kinds)]
        if not rows:
            return
        with self._guard():
            self._conn.executemany(
                "INSERT INTO marks (kind, marked_at) VALUES (?, ?) "
                "ON CONFLICT (kind) DO UPDATE SET marked_at = max(marked_at, excluded.marked_at)",
                rows,
            )

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
        return cursor.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._conn.close()
