"""A worker's job and one of its messages as the API hands them to the wrapper, for tests that run the real
wrapper against a fake API: the fields a test cares about as overrides, the rest plausible."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.contracts.api import WorkerDetail, WorkerMessage


def worker_detail(**overrides: Any) -> WorkerDetail:
    """A STARTING `command` worker without a task; pass `config` (context, agent_options...) and the rest."""
    fields: dict[str, Any] = {
        "id": "w-1",
        "task_id": None,
        "agent": "command",
        "runtime_handle": "local:1:w",
        "status": "STARTING",
        "exit_reason": None,
        "started_at": datetime.now(UTC),
        "stopped_at": None,
        "create_request_id": "r",
        "config": {"context": {}},
    }
    return WorkerDetail(**{**fields, **overrides})


def worker_message(**overrides: Any) -> WorkerMessage:
    """A claimed (RUNNING) agent message for worker w-1, 30 s to answer, no budget unless given."""
    fields: dict[str, Any] = {
        "id": 1,
        "worker_id": "w-1",
        "request_id": "m-1",
        "kind": "message",
        "body": "hello",
        "path": None,
        "timeout_s": 30,
        "status": "RUNNING",
        "result": None,
        "error": None,
        "correlation_id": None,
        "created_at": datetime.now(UTC),
        "started_at": None,
        "finished_at": None,
    }
    return WorkerMessage(**{**fields, **overrides})
