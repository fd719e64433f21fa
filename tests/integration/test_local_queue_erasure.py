"""A consumed message leaves no copy of its bytes in the local queue's file (a Telegram update may carry a
secret given with /secret): SQLite's secure_delete zeroes what a delete frees."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shared.queues.local import LocalQueue

CANARY = "canary-7f3c9e51d2b84a06"


def test_a_deleted_message_s_body_is_not_left_in_the_queue_file(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    queue = LocalQueue(path)
    queue.publish_raw("telegram:updates", '{"text": "' + CANARY + '"}')
    for _ in range(20):  # more rows around it, so the freed space is not simply the file's tail
        queue.publish_raw("telegram:updates", '{"text": "filler"}')
    received = queue.receive("telegram:updates", max_messages=10)
    assert any(CANARY in m.body for m in received)
    queue.delete_batch("telegram:updates", [m.receipt_handle for m in received])

    with sqlite3.connect(path) as conn:  # fold the WAL into the file, as any later checkpoint does
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("queue.db-*") if p.is_file())
    assert CANARY.encode() not in data
