"""Progress events: the seed's `task_progress:{task_id}` stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, field_validator

from shared.contracts.base import Contract, new_id, utc_now

EventType = Literal["started", "progress", "completed", "failed"]


def progress_stream(task_id: str) -> str:
    """The callback stream name of a task."""
    return f"task_progress:{task_id}"


class ProgressEvent(Contract):
    """One step of a task's life, as the user sees it."""

    type: Annotated[EventType, Field(description="started | progress | completed | failed")]
    request_id: str = Field(default_factory=new_id)
    task_id: Annotated[str, Field(description="The task this event belongs to.")]
    timestamp: AwareDatetime = Field(default_factory=utc_now)
    message: str = ""
    progress_pct: Annotated[int | None, Field(ge=0, le=100)] = None
    current_step: str | None = None
    error: str | None = None
    error_type: str | None = None
    correlation_id: str | None = Field(default=None, description="Added: ties the event to its logs.")

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)
