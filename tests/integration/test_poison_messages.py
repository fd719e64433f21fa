"""A poison message never loops forever: it ends in the DLQ with the reason known (locally) or logged."""

from __future__ import annotations

from typing import Any

from shared.contracts import EngineeringMessage
from shared.queues.consume import process_queue_event
from shared.queues.local_runner import QueuePoller
from shared.queues.port import QueuePort
from tests.factories import engineering_message
from tests.integration.conftest import MAX_RECEIVES

Q = "engineering:queue"


def test_poison_goes_to_the_dlq_while_good_messages_are_processed_once(queue: QueuePort) -> None:
    handled: list[str] = []

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        def record(message: EngineeringMessage, _record: Any) -> None:
            handled.append(message.task_id)

        return process_queue_event(event, Q, record, context)

    queue.publish_raw(Q, "{broken")
    queue.publish(Q, engineering_message(task_id="good"))
    poller = QueuePoller(queue, Q, lambda_handler)

    rounds = 0
    while rounds < 10:
        rounds += 1
        ok, failed = poller.run_once()
        if ok == failed == 0:
            break

    assert handled == ["good"]
    stats = {s.queue: s for s in queue.stats()}[Q]
    assert (stats.visible, stats.in_flight, stats.dead) == (0, 0, 1)
    [dead] = queue.dead_letters(Q)
    assert dead.body == "{broken"
    assert dead.receive_count >= MAX_RECEIVES
    if queue.backend == "local":
        assert dead.reason is not None
        assert "contract: body is not JSON" in dead.reason
        assert "moved to DLQ after 2 receives" in dead.reason


def test_a_crashing_handler_sends_the_whole_batch_back(queue: QueuePort) -> None:
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise MemoryError("out of memory")

    queue.publish(Q, engineering_message())
    poller = QueuePoller(queue, Q, lambda_handler)
    assert poller.run_once() == (0, 1)
    if queue.backend == "local":
        poller.run_once()
        poller.run_once()
        [dead] = queue.dead_letters(Q)
        assert dead.reason and "handler crashed: MemoryError" in dead.reason


def test_a_consumer_whose_module_fails_to_import_keeps_its_messages(queue: QueuePort) -> None:
    """The embedded stack loads a consumer's module at its first batch (`LazyHandler`): a module that cannot
    be imported fails that batch like a crash, the messages come back with the error as their reason, and
    a later import that works handles them."""
    import sys
    import types

    from shared.topology import LazyHandler

    handled: list[str] = []
    handler = LazyHandler("tests_lazy_consumer_module:lambda_handler")
    queue.publish(Q, engineering_message(task_id="kept"))
    poller = QueuePoller(queue, Q, handler)
    assert poller.run_once() == (0, 1)
    assert queue.dead_letters(Q) == []

    module = types.ModuleType("tests_lazy_consumer_module")

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        def record(message: EngineeringMessage, _record: Any) -> None:
            handled.append(message.task_id)

        return process_queue_event(event, Q, record, context)

    module.lambda_handler = lambda_handler  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        assert poller.run_once() == (1, 0)
    finally:
        del sys.modules[module.__name__]
    assert handled == ["kept"]
