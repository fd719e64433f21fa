"""The embedded queue: SQS semantics on one SQLite file (WAL mode).

- visibility timeout, receive count, delete on success;
- a message received more than `max_receives` times moves to its queue's DLQ;
- receives run in `BEGIN IMMEDIATE` transactions, so threads and processes sharing the
  file never get the same message inside its visibility window;
- long polling: a publish wakes waiting consumers at once, in this process (a condition variable)
  and in the others on the same file (a datagram, `shared.queues.wakeup`); a timed read-only poll
  stays the fallback for a missed wake-up and finds messages whose visibility timeout ended.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from shared.contracts import QUEUES, resolve_queue
from shared.queues._common import encode
from shared.queues.port import MAX_BATCH, DeadLetter, QueueStats, ReceivedMessage
from shared.queues.sizing import batches
from shared.queues.wakeup import wakeups_for
from shared.retry import sqlite_busy

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}',
    sent_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT UNIQUE,
    last_error TEXT,
    dead_at REAL
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, dead_at, visible_at, seq);
"""

_POLL_INTERVAL_S = 0.05
"""The fallback poll while this process cannot get wake-ups from other processes."""
_WOKEN_POLL_INTERVAL_S = 1.0
"""The fallback poll while it can: a wake-up may still be lost (a full socket buffer)."""


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _enable_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch to WAL, retrying: several processes opening a fresh queue file at once get "database is locked"
    from the switch at once (SQLite skips the busy handler where waiting could deadlock), whatever the timeout."""
    sqlite_busy(attempts=attempts)(conn.execute, "PRAGMA journal_mode=WAL")


class LocalQueue:
    """Persistent local queue; one instance may be shared by many threads."""

    backend = "local"

    def __init__(self, path: Path, max_receives: int = 5, visibility_timeout: int = 60) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_receives = max_receives
        self.visibility_timeout = visibility_timeout
        self._local = threading.local()
        self._wakeups = wakeups_for(self.path)
        self._conn().executescript(_SCHEMA)

    # -- connections -----------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            conn.execute("PRAGMA busy_timeout=30000")
            # a consumed message's bytes are zeroed, not left in free pages: a Telegram update may hold a
            # secret given with /secret (the WAL keeps a copy until its next checkpoint)
            conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- publish -----------------------------------------------------------------------

    def publish(self, queue: str, message: BaseModel) -> str:
        body, attributes = encode(queue, message)
        return self._insert(resolve_queue(queue).name, [(body, attributes)])[0]

    def publish_batch(self, queue: str, messages: Sequence[BaseModel]) -> list[str]:
        encoded = [encode(queue, m) for m in messages]
        return self._insert(resolve_queue(queue).name, encoded)

    def publish_raw(self, queue: str, body: str, attributes: dict[str, str] | None = None) -> str:
        return self._insert(resolve_queue(queue).name, [(body, dict(attributes or {}))])[0]

    def _insert(self, queue: str, entries: Sequence[tuple[str, dict[str, str]]]) -> list[str]:
        ids: list[str] = [""] * len(entries)
        chunks = list(batches(queue, entries))  # size-checks everything before writing anything
        now = time.time()
        with self._write() as conn:
            for chunk in chunks:
                rows = []
                for index, body, attrs in chunk:
                    ids[index] = str(uuid.uuid4())
                    rows.append((ids[index], queue, body, json.dumps(attrs), now, now))
                conn.executemany(
                    "INSERT INTO messages (id, queue, body, attributes, sent_at, visible_at) VALUES (?,?,?,?,?,?)",
                    rows,
                )
        self._wakeups.notify(queue)
        return ids

    # -- consume -----------------------------------------------------------------------

    def receive(
        self,
        queue: str,
        max_messages: int = MAX_BATCH,
        wait_seconds: float = 0.0,
        visibility_timeout: int | None = None,
    ) -> list[ReceivedMessage]:
        if not 1 <= max_messages <= MAX_BATCH:
            raise ValueError(f"max_messages must be between 1 and {MAX_BATCH}, got {max_messages}")
        queue = resolve_queue(queue).name
        deadline = time.monotonic() + max(0.0, wait_seconds)
        wakeups = self._wakeups
        poll = _WOKEN_POLL_INTERVAL_S if wait_seconds > 0 and wakeups.listen() else _POLL_INTERVAL_S
        interruptions = wakeups.interruptions
        while True:
            seen = wakeups.generation(queue)  # before looking: a publish after the look still wakes us
            got = self._try_receive(queue, max_messages, visibility_timeout)
            remaining = deadline - time.monotonic()
            if got or remaining <= 0 or wakeups.interruptions != interruptions:
                return got
            wakeups.wait(queue, seen, min(remaining, poll, self._until_next_visible(queue)))

    def interrupt_waits(self) -> None:
        """End every wait of a receive on this queue file in this process at once (it returns what it
        has: nothing); a stopping consumer then sees its stop flag."""
        self._wakeups.interrupt()

    def _until_next_visible(self, queue: str) -> float:
        """Seconds until the next in-flight message's visibility timeout ends (no wake-up tells that)."""
        row = (
            self._conn()
            .execute("SELECT MIN(visible_at) FROM messages WHERE queue=? AND dead_at IS NULL", (queue,))
            .fetchone()
        )
        return _WOKEN_POLL_INTERVAL_S if row[0] is None else max(0.0, row[0] - time.time()) + 0.001

    def _try_receive(self, queue: str, limit: int, visibility_timeout: int | None) -> list[ReceivedMessage]:
        now = time.time()
        conn = self._conn()
        # Cheap read first: idle consumers never take the write lock.
        ready = conn.execute(
            "SELECT 1 FROM messages WHERE queue=? AND dead_at IS NULL AND visible_at<=? LIMIT 1", (queue, now)
        ).fetchone()
        if ready is None:
            return []
        vt = self.visibility_timeout if visibility_timeout is None else visibility_timeout
        with self._write() as conn:
            now = time.time()
            conn.execute(
                "UPDATE messages SET dead_at=?, last_error=COALESCE(last_error || '; ', '') || ? "
                "WHERE queue=? AND dead_at IS NULL AND visible_at<=? AND receive_count>=?",
                (now, f"moved to DLQ after {self.max_receives} receives", queue, now, self.max_receives),
            )
            rows = conn.execute(
                "SELECT seq, id, body, attributes, receive_count, sent_at FROM messages "
                "WHERE queue=? AND dead_at IS NULL AND visible_at<=? ORDER BY visible_at, seq LIMIT ?",
                (queue, now, limit),
            ).fetchall()
            received = []
            updates = []
            for seq, msg_id, body, attrs, count, sent_at in rows:
                receipt = f"{msg_id}#{uuid.uuid4().hex}"
                updates.append((receipt, now + vt, seq))
                received.append(
                    ReceivedMessage(
                        message_id=msg_id,
                        body=body,
                        receipt_handle=receipt,
                        receive_count=count + 1,
                        sent_at=_ts(sent_at),
                        attributes=json.loads(attrs),
                    )
                )
            conn.executemany(
                "UPDATE messages SET receive_count=receive_count+1, receipt=?, visible_at=? WHERE seq=?",
                updates,
            )
        return received

    def delete(self, queue: str, receipt_handle: str) -> None:
        with self._write() as conn:
            conn.execute(
                "DELETE FROM messages WHERE queue=? AND receipt=?",
                (resolve_queue(queue).name, receipt_handle),
            )

    def delete_batch(self, queue: str, receipt_handles: Sequence[str]) -> None:
        name = resolve_queue(queue).name
        with self._write() as conn:
            conn.executemany(
                "DELETE FROM messages WHERE queue=? AND receipt=?", [(name, r) for r in receipt_handles]
            )

    def release(
        self,
        queue: str,
        receipt_handle: str,
        reason: str | None = None,
        visibility_timeout: int | None = None,
    ) -> None:
        name = resolve_queue(queue).name
        with self._write() as conn:
            if visibility_timeout is not None:
                conn.execute(
                    "UPDATE messages SET visible_at=? WHERE queue=? AND receipt=?",
                    (time.time() + visibility_timeout, name, receipt_handle),
                )
            if reason:
                conn.execute(
                    "UPDATE messages SET last_error=? WHERE queue=? AND receipt=?",
                    (reason[:2000], name, receipt_handle),
                )
        if visibility_timeout == 0:
            self._wakeups.notify(name)

    # -- operations --------------------------------------------------------------------

    def stats(self) -> list[QueueStats]:
        now = time.time()
        rows = (
            self._conn()
            .execute(
                "SELECT queue, "
                " SUM(CASE WHEN dead_at IS NULL AND visible_at<=? THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN dead_at IS NULL AND visible_at>? THEN 1 ELSE 0 END),"
                " SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END) "
                "FROM messages GROUP BY queue",
                (now, now),
            )
            .fetchall()
        )
        counts = {q: (v, f, d) for q, v, f, d in rows}
        return [QueueStats(name, *counts.get(name, (0, 0, 0))) for name in QUEUES]

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        rows = (
            self._conn()
            .execute(
                "SELECT id, body, receive_count, sent_at, last_error FROM messages "
                "WHERE queue=? AND dead_at IS NOT NULL ORDER BY dead_at, seq LIMIT ?",
                (resolve_queue(queue).name, limit),
            )
            .fetchall()
        )
        return [DeadLetter(i, b, c, _ts(s), e) for i, b, c, s, e in rows]

    def redrive(self, queue: str) -> int:
        with self._write() as conn:
            moved = conn.execute(
                "UPDATE messages SET dead_at=NULL, receive_count=0, receipt=NULL, last_error=NULL, visible_at=? "
                "WHERE queue=? AND dead_at IS NOT NULL",
                (time.time(), resolve_queue(queue).name),
            ).rowcount
        self._wakeups.notify(resolve_queue(queue).name)
        return moved
