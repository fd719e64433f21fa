"""The queue port, its two adapters (SQS, local) and the consume helper."""

from shared.queues.factory import build_queue
from shared.queues.port import (
    MAX_BATCH,
    MAX_MESSAGE_BYTES,
    DeadLetter,
    MessageTooLargeError,
    QueueError,
    QueuePort,
    QueueStats,
    ReceivedMessage,
)

__all__ = [
    "MAX_BATCH",
    "MAX_MESSAGE_BYTES",
    "DeadLetter",
    "MessageTooLargeError",
    "QueueError",
    "QueuePort",
    "QueueStats",
    "ReceivedMessage",
    "build_queue",
]
