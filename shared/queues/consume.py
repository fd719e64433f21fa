"""Consuming: SQS event (Lambda shape) -> validated models -> one record handler -> partial batch response.

Every consumer function uses `process_queue_event`. A record that fails validation or whose
handler raises is reported in `batchItemFailures`; the others succeed. The reason is logged
with the record's correlation id; when the embedded runner is driving, it is also handed back
(`collect_failure_reasons`) so the local DLQ can show it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.contracts import ContractError, parse_message
from shared.observability import correlation, get_logger
from shared.queues.failures import collect_failure_reasons, note_failure
from shared.queues.naming import logical_from_arn

__all__ = ["RecordHandler", "collect_failure_reasons", "process_queue_event", "source_queue"]

RecordHandler = Callable[[Any, SQSRecord], None]


def _attribute(record: SQSRecord, name: str) -> str | None:
    attr = record.message_attributes[name]  # the Powertools wrapper answers None for a missing name
    return attr.string_value if attr is not None else None


def source_queue(event: dict[str, Any], consumes: tuple[str, ...], function: str) -> str:
    """The logical queue an event's records came from (one event source per invocation); the first
    of `consumes` for an empty event. A queue the function does not consume is a wiring error."""
    records = event.get("Records") or []
    queue = logical_from_arn(records[0]["eventSourceARN"]) if records else consumes[0]
    if queue not in consumes:
        raise ValueError(f"the {function} function does not consume {queue}")
    return queue


def process_queue_event(
    event: dict[str, Any], queue_name: str, handler: RecordHandler, context: Any = None
) -> dict[str, Any]:
    """Run `handler(model, record)` for each record; return `{"batchItemFailures": [...]}`."""
    logger = get_logger()

    def record_handler(record: SQSRecord) -> None:
        receive_count = int(record.attributes.approximate_receive_count or 0)
        try:
            message = parse_message(queue_name, record.body)
        except ContractError as exc:
            with correlation(_attribute(record, "correlation_id")):
                logger.error(
                    "poison message rejected",
                    extra={
                        "queue": queue_name,
                        "message_id": record.message_id,
                        "receive_count": receive_count,
                        "reason": exc.reason,
                        "fields": exc.fields,
                    },
                )
            note_failure(record.message_id, f"contract: {exc.reason}")
            raise
        with correlation(getattr(message, "correlation_id", None)):
            try:
                handler(message, record)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                logger.exception(
                    "record handler failed",
                    extra={
                        "queue": queue_name,
                        "message_id": record.message_id,
                        "receive_count": receive_count,
                        "reason": reason,
                    },
                )
                note_failure(record.message_id, reason)
                raise

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )
