"""Checkpointers from the ecosystem: SQLite embedded, DynamoDB (langgraph-checkpoint-aws) in AWS."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from functions.engineering.settings import CheckpointSettings

_savers: dict[str, Any] = {}
_lock = threading.Lock()


def build_checkpointer(settings: CheckpointSettings) -> Any:
    """One per process / container: SQLite connections and boto3 sessions are reused."""
    key = f"{settings.checkpointer}:{settings.checkpoint_table or settings.effective_checkpoint_file}"
    with _lock:
        saver = _savers.get(key)
        if saver is None:
            if settings.checkpointer == "dynamodb":
                from langgraph_checkpoint_aws import DynamoDBSaver

                if not settings.checkpoint_table:
                    raise ValueError("ORCH_CHECKPOINT_TABLE is required with ORCH_CHECKPOINTER=dynamodb")
                saver = DynamoDBSaver(table_name=settings.checkpoint_table, region_name=settings.aws_region,
                                      endpoint_url=settings.aws_endpoint_url, ttl_seconds=settings.checkpoint_ttl_s)  # fmt: skip
            else:
                from langgraph.checkpoint.sqlite import SqliteSaver

                path = settings.effective_checkpoint_file
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                saver = SqliteSaver(conn)
                saver.setup()
            _savers[key] = saver
        return saver


def reset() -> None:
    with _lock:
        _savers.clear()
