"""One contract, two adapters: everything here runs against the local queue and moto SQS."""

from __future__ import annotations

import json
import time

import pytest

from shared.contracts import QUEUES, ContractError, EngineeringMessage, parse_message
from shared.queues.port import MAX_MESSAGE_BYTES, MessageTooLargeError, QueuePort
from tests.factories import engineering_message, progress_event
from tests.integration.conftest import MAX_RECEIVES

Q = "engineering:queue"


def _stats(queue: QueuePort, name: str = Q) -> tuple[int, int, int]:
    stats = {s.queue: s for s in queue.stats()}[name]
    return stats.visible, stats.in_flight, stats.dead


def _receive_all(queue: QueuePort, name: str = Q, visibility_timeout: int = 30) -> list:
    got = []
    for _ in range(20):
        batch = queue.receive(name, 10, visibility_timeout=visibility_timeout)
        if not batch:
            break
        got.extend(batch)
    return got


def test_publish_receive_delete_round_trip(queue: QueuePort) -> None:
    sent = engineering_message()
    message_id = queue.publish(Q, sent)

    [received] = queue.receive(Q, visibility_timeout=30)
    assert received.message_id == message_id
    assert received.receive_count == 1
    assert received.correlation_id == sent.correlation_id
    assert parse_message(Q, received.body) == sent

    queue.delete(Q, received.receipt_handle)
    assert _stats(queue) == (0, 0, 0)
    assert queue.receive(Q) == []


def test_publish_checks_the_message_belongs_on_the_queue(queue: QueuePort) -> None:
    with pytest.raises(ContractError, match="ProgressEvent does not belong"):
        queue.publish(Q, progress_event())
    assert _stats(queue) == (0, 0, 0)


def test_batch_of_25_is_split_and_arrives_whole(queue: QueuePort) -> None:
    messages = [engineering_message(task_id=f"t{i}") for i in range(25)]
    ids = queue.publish_batch(Q, messages)
    assert len(ids) == 25 and len(set(ids)) == 25
    received = _receive_all(queue)
    assert sorted(parse_message(Q, m.body).task_id for m in received) == sorted(f"t{i}" for i in range(25))


def test_batch_is_split_by_bytes(queue: QueuePort) -> None:
    spec = "s" * (100 * 1024)
    messages = [engineering_message(task_id=f"t{i}", spec=spec) for i in range(5)]
    assert len(queue.publish_batch(Q, messages)) == 5
    assert len(_receive_all(queue)) == 5


def test_oversized_message_is_refused_not_truncated(queue: QueuePort) -> None:
    huge = engineering_message(spec="x" * MAX_MESSAGE_BYTES)
    with pytest.raises(MessageTooLargeError, match="limit is 262144 bytes"):
        queue.publish(Q, huge)
    with pytest.raises(MessageTooLargeError):
        queue.publish_batch(Q, [engineering_message(), huge])
    assert _stats(queue) == (0, 0, 0), "nothing of a refused batch may be sent"


def test_a_received_message_is_hidden_until_its_visibility_timeout(queue: QueuePort) -> None:
    queue.publish(Q, engineering_message())
    [first] = queue.receive(Q, visibility_timeout=1)
    assert queue.receive(Q) == []
    assert _stats(queue) == (0, 1, 0)
    time.sleep(1.3)
    [again] = queue.receive(Q, visibility_timeout=30)
    assert again.message_id == first.message_id
    assert again.receive_count == 2


def test_release_with_zero_timeout_makes_it_visible_at_once(queue: QueuePort) -> None:
    queue.publish(Q, engineering_message())
    [first] = queue.receive(Q, visibility_timeout=30)
    queue.release(Q, first.receipt_handle, reason="handler failed", visibility_timeout=0)
    [again] = queue.receive(Q, visibility_timeout=30)
    assert again.message_id == first.message_id


def test_after_max_receives_a_message_moves_to_the_dlq_and_can_be_redriven(queue: QueuePort) -> None:
    queue.publish_raw(Q, "not json at all")
    for attempt in range(1, MAX_RECEIVES + 1):
        [m] = queue.receive(Q, visibility_timeout=0)
        assert m.receive_count == attempt
    assert queue.receive(Q, visibility_timeout=0) == []
    assert _stats(queue) == (0, 0, 1)

    [dead] = queue.dead_letters(Q)
    assert dead.body == "not json at all"
    assert dead.receive_count >= MAX_RECEIVES
    # listing does not consume or hide them
    assert len(queue.dead_letters(Q)) == 1

    assert queue.redrive(Q) == 1
    assert _stats(queue)[2] == 0
    [back] = queue.receive(Q, visibility_timeout=30)
    assert back.body == "not json at all"


def test_dead_letters_are_per_queue(queue: QueuePort) -> None:
    queue.publish_raw("deploy:queue", "{}")
    for _ in range(MAX_RECEIVES + 1):
        queue.receive("deploy:queue", visibility_timeout=0)
    assert queue.dead_letters(Q) == []
    assert len(queue.dead_letters("deploy:queue")) == 1
    assert queue.redrive(Q) == 0


def test_legacy_bodies_pass_through_publish_raw(queue: QueuePort) -> None:
    legacy = json.dumps({"data": json.dumps({"task_id": "t", "project_id": "p", "user_id": 3})})
    queue.publish_raw(Q, legacy, {"correlation_id": "c-1"})
    [m] = queue.receive(Q, visibility_timeout=30)
    assert m.correlation_id == "c-1"
    assert isinstance(parse_message(Q, m.body), EngineeringMessage)


def test_receive_refuses_more_than_ten(queue: QueuePort) -> None:
    with pytest.raises(ValueError, match="between 1 and 10"):
        queue.receive(Q, 11)


def test_stats_list_every_logical_queue(queue: QueuePort) -> None:
    queue.publish(Q, engineering_message())
    queue.publish(Q, engineering_message())
    queue.receive(Q, 1, visibility_timeout=30)
    stats = {s.queue: s for s in queue.stats()}
    assert len(stats) == len(QUEUES)
    assert _stats(queue) == (1, 1, 0)
    assert (stats["deploy:queue"].visible, stats["deploy:queue"].dead) == (0, 0)


def test_unknown_logical_queue_is_refused(queue: QueuePort) -> None:
    with pytest.raises(ContractError, match="unknown queue"):
        queue.publish_raw("nope:queue", "{}")


def test_delete_batch_acknowledges_many(queue: QueuePort) -> None:
    queue.publish_batch(Q, [engineering_message() for _ in range(12)])
    received = _receive_all(queue)
    queue.delete_batch(Q, [m.receipt_handle for m in received])
    assert _stats(queue) == (0, 0, 0)
