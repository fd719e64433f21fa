"""The AWS queue adapter: SQS standard queues, each with its own DLQ (redrive after max receives).

In AWS the queues come from the CDK stack; `ensure_queues()` creates the same shape for
development against moto or another SQS endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from shared.contracts import QUEUES, resolve_queue
from shared.queues._common import encode
from shared.queues.naming import dlq_name, physical_name
from shared.queues.port import MAX_BATCH, DeadLetter, QueueError, QueueStats, ReceivedMessage
from shared.queues.sizing import batches, check_size

_SCAN_VISIBILITY_S = 30
_REASON_ATTRIBUTE = "failure_reason"


def _to_sqs_attributes(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    return {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v}


def _from_sqs_attributes(raw: dict[str, Any] | None) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in (raw or {}).items() if "StringValue" in v}


def _sent_at(message: dict[str, Any]) -> datetime:
    ms = int(message.get("Attributes", {}).get("SentTimestamp", "0"))
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else datetime.now(UTC)


class SqsQueue:
    backend = "sqs"

    def __init__(self, prefix: str, client: Any = None, max_receives: int = 5) -> None:
        if client is None:
            import boto3

            client = boto3.client("sqs")
        self.client = client
        self.prefix = prefix
        self.max_receives = max_receives
        self._urls: dict[str, str] = {}

    # -- naming ------------------------------------------------------------------------

    def _url(self, physical: str) -> str:
        url = self._urls.get(physical)
        if url is None:
            try:
                url = self.client.get_queue_url(QueueName=physical)["QueueUrl"]
            except self.client.exceptions.QueueDoesNotExist:
                raise QueueError(
                    f"SQS queue {physical!r} does not exist (is ORCH_QUEUE_PREFIX={self.prefix!r} right?)"
                ) from None
            self._urls[physical] = url
        return url

    def queue_url(self, queue: str) -> str:
        return self._url(physical_name(self.prefix, queue))

    def dlq_url(self, queue: str) -> str:
        return self._url(dlq_name(self.prefix, queue))

    def ensure_queues(self, visibility_timeout: int = 60) -> None:
        """Create every logical queue and its DLQ (idempotent)."""
        for logical in QUEUES:
            dlq = self.client.create_queue(
                QueueName=dlq_name(self.prefix, logical),
                Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600), "SqsManagedSseEnabled": "true"},
            )["QueueUrl"]
            dlq_arn = self.client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receives)})
            self.client.create_queue(
                QueueName=physical_name(self.prefix, logical),
                Attributes={
                    "VisibilityTimeout": str(visibility_timeout),
                    "RedrivePolicy": redrive,
                    "SqsManagedSseEnabled": "true",
                },
            )

    # -- publish -----------------------------------------------------------------------

    def publish(self, queue: str, message: BaseModel) -> str:
        body, attributes = encode(queue, message)
        return self._send(queue, body, attributes)

    def publish_raw(self, queue: str, body: str, attributes: dict[str, str] | None = None) -> str:
        return self._send(queue, body, dict(attributes or {}))

    def _send(self, queue: str, body: str, attributes: dict[str, str]) -> str:
        check_size(queue, body, attributes)
        response = self.client.send_message(
            QueueUrl=self.queue_url(queue), MessageBody=body, MessageAttributes=_to_sqs_attributes(attributes)
        )
        return str(response["MessageId"])

    def publish_batch(self, queue: str, messages: Sequence[BaseModel]) -> list[str]:
        return self._send_batch(self.queue_url(queue), queue, [encode(queue, m) for m in messages])

    def _send_batch(self, url: str, queue: str, entries: Sequence[tuple[str, dict[str, str]]]) -> list[str]:
        ids = [""] * len(entries)
        for chunk in list(batches(queue, entries)):
            pending = {
                str(index): {
                    "Id": str(index),
                    "MessageBody": body,
                    "MessageAttributes": _to_sqs_attributes(attrs),
                }
                for index, body, attrs in chunk
            }
            for _attempt in range(3):  # failed entries are retried; SQS reports them per entry
                response = self.client.send_message_batch(QueueUrl=url, Entries=list(pending.values()))
                for ok in response.get("Successful", []):
                    ids[int(ok["Id"])] = ok["MessageId"]
                    pending.pop(ok["Id"], None)
                failed = response.get("Failed", [])
                if not pending:
                    break
                if any(f.get("SenderFault") for f in failed):
                    break
            if pending:
                reasons = "; ".join(f"{f['Id']}: {f.get('Message', f.get('Code'))}" for f in failed)
                raise QueueError(f"{len(pending)} message(s) for {queue} were not sent: {reasons}")
        return ids

    # -- consume -----------------------------------------------------------------------

    def _receive_from(
        self, url: str, max_messages: int, wait_seconds: float, visibility_timeout: int | None
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": min(20, round(wait_seconds)),
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "MessageAttributeNames": ["All"],
        }
        if visibility_timeout is not None:
            kwargs["VisibilityTimeout"] = visibility_timeout
        return list(self.client.receive_message(**kwargs).get("Messages", []))

    def receive(
        self,
        queue: str,
        max_messages: int = MAX_BATCH,
        wait_seconds: float = 0.0,
        visibility_timeout: int | None = None,
    ) -> list[ReceivedMessage]:
        if not 1 <= max_messages <= MAX_BATCH:
            raise ValueError(f"max_messages must be between 1 and {MAX_BATCH}, got {max_messages}")
        raw = self._receive_from(self.queue_url(queue), max_messages, wait_seconds, visibility_timeout)
        return [
            ReceivedMessage(
                message_id=m["MessageId"],
                body=m["Body"],
                receipt_handle=m["ReceiptHandle"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                sent_at=_sent_at(m),
                attributes=_from_sqs_attributes(m.get("MessageAttributes")),
            )
            for m in raw
        ]

    def delete(self, queue: str, receipt_handle: str) -> None:
        self.client.delete_message(QueueUrl=self.queue_url(queue), ReceiptHandle=receipt_handle)

    def delete_batch(self, queue: str, receipt_handles: Sequence[str]) -> None:
        url = self.queue_url(queue)
        for start in range(0, len(receipt_handles), MAX_BATCH):
            chunk = receipt_handles[start : start + MAX_BATCH]
            response = self.client.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
            )
            if response.get("Failed"):
                reasons = "; ".join(f.get("Message", f.get("Code", "?")) for f in response["Failed"])
                raise QueueError(f"{len(response['Failed'])} delete(s) on {queue} failed: {reasons}")

    def release(
        self,
        queue: str,
        receipt_handle: str,
        reason: str | None = None,
        visibility_timeout: int | None = None,
    ) -> None:
        # SQS keeps no per-message note: the reason is logged by the consumer, not stored.
        if visibility_timeout is not None:
            self.client.change_message_visibility(
                QueueUrl=self.queue_url(queue),
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=visibility_timeout,
            )

    # -- operations --------------------------------------------------------------------

    def _counts(self, url: str) -> tuple[int, int]:
        attrs = self.client.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def stats(self) -> list[QueueStats]:
        out = []
        for logical in QUEUES:
            visible, in_flight = self._counts(self.queue_url(logical))
            dead_visible, dead_hidden = self._counts(self.dlq_url(logical))
            out.append(QueueStats(logical, visible, in_flight, dead_visible + dead_hidden))
        return out

    def _drain_dlq(self, queue: str, limit: int) -> list[dict[str, Any]]:
        """Receive up to `limit` distinct DLQ messages (hidden for a short scan window)."""
        url = self.dlq_url(queue)
        seen: dict[str, dict[str, Any]] = {}
        empty_rounds = 0
        while len(seen) < limit and empty_rounds < 2:
            batch = self._receive_from(url, min(MAX_BATCH, limit - len(seen)), 0, _SCAN_VISIBILITY_S)
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:
                empty_rounds += 1
                continue
            for m in fresh:
                seen[m["MessageId"]] = m
        return list(seen.values())

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        resolve_queue(queue)
        messages = self._drain_dlq(queue, limit)
        url = self.dlq_url(queue)
        for m in messages:  # listing must not hide them: make them visible again at once
            self.client.change_message_visibility(
                QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        return [
            DeadLetter(
                message_id=m["MessageId"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "0")),
                sent_at=_sent_at(m),
                reason=_from_sqs_attributes(m.get("MessageAttributes")).get(_REASON_ATTRIBUTE),
            )
            for m in messages
        ]

    def redrive(self, queue: str) -> int:
        resolve_queue(queue)
        source, dlq = self.queue_url(queue), self.dlq_url(queue)
        moved = 0
        visible, hidden = self._counts(dlq)
        for _round in range((visible + hidden) // MAX_BATCH + 3):
            batch = self._receive_from(dlq, MAX_BATCH, 0, _SCAN_VISIBILITY_S)
            if not batch:
                break
            entries = [(m["Body"], _from_sqs_attributes(m.get("MessageAttributes"))) for m in batch]
            self._send_batch(source, queue, entries)
            self.client.delete_message_batch(
                QueueUrl=dlq,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
            moved += len(batch)
        return moved
