"""Checkpointers from the ecosystem: SQLite embedded, DynamoDB (langgraph-checkpoint-aws) in AWS."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from shared.graphs.settings import CheckpointSettings

_savers: dict[str, Any] = {}
_lock = threading.Lock()


def build_checkpointer(settings: CheckpointSettings) -> Any:
    """One per process / container: SQLite connections and boto3 sessions are reused."""
    key = f"{settings.checkpointer}:{settings.checkpoint_table or settings.effective_checkpoint_file}:{settings.checkpoint_bucket}"
    with _lock:
        saver = _savers.get(key)
        if saver is None:
            if settings.checkpointer == "dynamodb":
                from langgraph_checkpoint_aws import DynamoDBSaver

                if not settings.checkpoint_table:
                    raise ValueError("ORCH_CHECKPOINT_TABLE is required with ORCH_CHECKPOINTER=dynamodb")
                saver = DynamoDBSaver(
                    table_name=settings.checkpoint_table,
                    region_name=settings.aws_region,
                    endpoint_url=settings.aws_endpoint_url,
                    ttl_seconds=settings.checkpoint_ttl_s,
                    s3_offload_config=s3_offload_config(settings),
                )
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


def s3_offload_config(settings: CheckpointSettings) -> dict[str, Any] | None:
    """Large checkpoint values (over ~350 KB) go to S3, the DynamoDB item keeps a pointer.

    What the saver then calls in the bucket (langgraph-checkpoint-aws 1.2.x, storage_strategy.py): at
    construction GetBucketLifecycleConfiguration, and PutBucketLifecycleConfiguration only if no rule
    named `infra_cdk.constants.checkpoint_lifecycle_rule_id()` exists (the stack declares it; a refused
    call is only logged); per large value PutObject with a `ttl-days` tag (so s3:PutObjectTagging too),
    GetObject to read it, DeleteObjects when a thread is deleted."""
    if not settings.checkpoint_bucket:
        return None
    config: dict[str, Any] = {
        "bucket_name": settings.checkpoint_bucket,
        "key_prefix": settings.checkpoint_key_prefix,
    }
    if settings.aws_endpoint_url:
        config["endpoint_url"] = settings.aws_endpoint_url
    return config


def reset() -> None:
    with _lock:
        _savers.clear()
