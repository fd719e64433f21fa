"""Drives a consumer function's real `lambda_handler` from the queue port, as the SQS event source does.

Receive a batch -> SQS-shaped event -> handler -> delete what succeeded; failed records keep
their visibility timeout (and their reason, on the local queue), so they come back and end
in the DLQ after max receives — the same life a message has under Lambda.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from shared.queues.failures import collect_failure_reasons
from shared.queues.naming import physical_name
from shared.queues.port import QueuePort, ReceivedMessage

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any] | None]


def sqs_event(queue_arn: str, messages: Sequence[ReceivedMessage]) -> dict[str, Any]:
    """The event Lambda's SQS event source would pass for these messages."""
    records = []
    for m in messages:
        ms = str(int(m.sent_at.timestamp() * 1000))
        records.append(
            {
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": str(m.receive_count),
                    "SentTimestamp": ms,
                    "SenderId": "orchestrator-local",
                    "ApproximateFirstReceiveTimestamp": ms,
                },
                "messageAttributes": {
                    k: {
                        "stringValue": v,
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": "String",
                    }
                    for k, v in m.attributes.items()
                },
                "md5OfBody": hashlib.md5(m.body.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "local",
            }
        )
    return {"Records": records}


class QueuePoller:
    """One consumer loop for one logical queue."""

    def __init__(
        self,
        queue: QueuePort,
        queue_name: str,
        handler: LambdaHandler,
        batch_size: int = 10,
        prefix: str = "orch",
    ) -> None:
        self.queue = queue
        self.queue_name = queue_name
        self.handler = handler
        self.batch_size = batch_size
        self.queue_arn = f"arn:aws:sqs:local:000000000000:{physical_name(prefix, queue_name)}"
        self._stop = threading.Event()

    def run_once(self, wait_seconds: float = 0.0) -> tuple[int, int]:
        """One receive + invoke. Returns (succeeded, failed)."""
        messages = self.queue.receive(self.queue_name, self.batch_size, wait_seconds=wait_seconds)
        if not messages:
            return 0, 0
        with collect_failure_reasons() as reasons:
            try:
                response = self.handler(sqs_event(self.queue_arn, messages), None) or {}
                failed_ids = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            except Exception as exc:  # the whole invocation failed: every record comes back
                failed_ids = {m.message_id for m in messages}
                for m in messages:
                    reasons.setdefault(m.message_id, f"handler crashed: {type(exc).__name__}: {exc}")
        done = [m.receipt_handle for m in messages if m.message_id not in failed_ids]
        if done:
            self.queue.delete_batch(self.queue_name, done)
        for m in messages:
            if m.message_id in failed_ids:
                self.queue.release(self.queue_name, m.receipt_handle, reason=reasons.get(m.message_id))
        return len(messages) - len(failed_ids), len(failed_ids)

    def run_forever(self, wait_seconds: float = 1.0) -> None:
        while not self._stop.is_set():
            self.run_once(wait_seconds=wait_seconds)

    def stop(self) -> None:
        """Stop after the current invocation; a receive waiting for messages ends at once (local queue)."""
        self._stop.set()
        interrupt = getattr(self.queue, "interrupt_waits", None)
        if interrupt is not None:
            interrupt()
