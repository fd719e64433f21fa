from __future__ import annotations

import pytest

from shared.queues.port import MAX_MESSAGE_BYTES, MessageTooLargeError
from shared.queues.sizing import batches, message_size


def test_batches_respect_the_entry_limit() -> None:
    chunks = list(batches("q", [("x", {})] * 25))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [i for c in chunks for i, _, _ in c] == list(range(25))


def test_batches_respect_the_byte_limit() -> None:
    body = "y" * (100 * 1024)
    chunks = list(batches("q", [(body, {})] * 5))
    assert [len(c) for c in chunks] == [2, 2, 1]
    for chunk in chunks:
        assert sum(message_size(b, a) for _, b, a in chunk) <= MAX_MESSAGE_BYTES


def test_an_oversized_entry_refuses_the_whole_batch_before_anything_is_yielded() -> None:
    entries = [("ok", {}), ("z" * (MAX_MESSAGE_BYTES + 1), {})]
    with pytest.raises(MessageTooLargeError, match="limit is 262144 bytes"):
        next(batches("q", entries))


def test_attributes_count_towards_the_size() -> None:
    assert message_size("ab", {"k": "vv"}) == 2 + 1 + len("String") + 2
    assert message_size("é") == 2
