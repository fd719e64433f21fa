"""The queue port: what every part of the system needs from a message queue.

Two real adapters implement it: `SqsQueue` (AWS) and `LocalQueue` (embedded, SQLite).
Both pass one contract test suite (tests/integration/test_queue_contract.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

MAX_MESSAGE_BYTES = 256 * 1024
"""SQS's classic limit per message and per batch call; the local queue enforces the same."""
MAX_BATCH = 10
"""SQS's limit of entries per batch call."""


class QueueError(RuntimeError):
    """The queue backend could not do what was asked."""


class MessageTooLargeError(QueueError):
    """Refused rather than truncated."""

    def __init__(self, queue: str, size: int, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.queue, self.size, self.limit = queue, size, limit
        super().__init__(f"message for {queue} is {size} bytes; the limit is {limit} bytes (not sent)")


@dataclass(frozen=True)
class ReceivedMessage:
    """A message handed to one consumer until its visibility timeout ends."""

    message_id: str
    body: str
    receipt_handle: str
    receive_count: int
    sent_at: datetime
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def correlation_id(self) -> str | None:
        return self.attributes.get("correlation_id")


@dataclass(frozen=True)
class QueueStats:
    queue: str
    visible: int
    in_flight: int
    dead: int


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    body: str
    receive_count: int
    sent_at: datetime | None
    reason: str | None


@runtime_checkable
class QueuePort(Protocol):
    """Logical queue names everywhere (`engineering:queue`); adapters map them to physical ones."""

    backend: str

    def publish(self, queue: str, message: BaseModel) -> str:
        """Validate that `message` belongs on `queue`, send it, return its message id."""
        ...

    def publish_batch(self, queue: str, messages: Sequence[BaseModel]) -> list[str]:
        """Send many; split into calls of at most 10 entries / 256 KB. Ids in input order."""
        ...

    def publish_raw(self, queue: str, body: str, attributes: dict[str, str] | None = None) -> str:
        """Send a body as is (legacy producers, redrive, tests). Size-checked, not validated."""
        ...

    def receive(
        self,
        queue: str,
        max_messages: int = MAX_BATCH,
        wait_seconds: float = 0.0,
        visibility_timeout: int | None = None,
    ) -> list[ReceivedMessage]:
        """Up to `max_messages` visible messages, hidden from others for the visibility timeout."""
        ...

    def delete(self, queue: str, receipt_handle: str) -> None:
        """Acknowledge a received message."""
        ...

    def delete_batch(self, queue: str, receipt_handles: Sequence[str]) -> None:
        """Acknowledge many received messages."""
        ...

    def release(
        self,
        queue: str,
        receipt_handle: str,
        reason: str | None = None,
        visibility_timeout: int | None = None,
    ) -> None:
        """A consumer failed on a message: remember why; make it visible again after `visibility_timeout`
        seconds (None: leave its current timeout running, as Lambda does)."""
        ...

    def stats(self) -> list[QueueStats]:
        """Per logical queue: visible, in flight, in the DLQ."""
        ...

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """The messages in a queue's DLQ, with receive count and (where known) the reason."""
        ...

    def redrive(self, queue: str) -> int:
        """Move a queue's dead letters back to it; returns how many moved."""
        ...
