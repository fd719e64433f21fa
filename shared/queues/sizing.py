"""SQS limits, applied identically by both adapters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from shared.queues.port import MAX_BATCH, MAX_MESSAGE_BYTES, MessageTooLargeError


def message_size(body: str, attributes: dict[str, str] | None = None) -> int:
    """Bytes SQS counts: the body plus attribute names, types and values."""
    size = len(body.encode("utf-8"))
    for key, value in (attributes or {}).items():
        size += len(key.encode()) + len(b"String") + len(value.encode())
    return size


def check_size(queue: str, body: str, attributes: dict[str, str] | None = None) -> int:
    size = message_size(body, attributes)
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLargeError(queue, size)
    return size


def batches(
    queue: str, entries: Sequence[tuple[str, dict[str, str]]]
) -> Iterator[list[tuple[int, str, dict[str, str]]]]:
    """Split (body, attributes) entries into calls SQS accepts: <= 10 entries and <= 256 KB each.

    Every entry is size-checked first, so nothing is sent when one is too large.
    """
    sizes = [check_size(queue, body, attrs) for body, attrs in entries]
    current: list[tuple[int, str, dict[str, str]]] = []
    current_bytes = 0
    for index, ((body, attrs), size) in enumerate(zip(entries, sizes, strict=True)):
        if current and (len(current) == MAX_BATCH or current_bytes + size > MAX_MESSAGE_BYTES):
            yield current
            current, current_bytes = [], 0
        current.append((index, body, attrs))
        current_bytes += size
    if current:
        yield current
