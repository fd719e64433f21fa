"""Small factories for messages and events used across the suites."""

from __future__ import annotations

import uuid

from shared.contracts import EngineeringMessage, ProgressEvent


def engineering_message(**overrides: object) -> EngineeringMessage:
    fields: dict[str, object] = {
        "task_id": str(uuid.uuid4()),
        "project_id": str(uuid.uuid4()),
        "user_id": 42,
    }
    fields.update(overrides)
    return EngineeringMessage.model_validate(fields)


def progress_event(**overrides: object) -> ProgressEvent:
    fields: dict[str, object] = {"type": "progress", "task_id": str(uuid.uuid4()), "message": "working"}
    fields.update(overrides)
    return ProgressEvent.model_validate(fields)
