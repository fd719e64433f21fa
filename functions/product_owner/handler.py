"""Lambda entry point for po:inbox (a person's message) and po:responses (their PO workers' answers);
the record's source queue picks the path."""

from __future__ import annotations

from typing import Any

from functions.product_owner.logic import Busy, PoConfig, ProductOwner
from functions.product_owner.settings import ProductOwnerSettings
from shared.contracts import PO_INBOX, PO_RESPONSES
from shared.handler_shell import PerContainer, lambda_entry
from shared.queues.consume import process_queue_event, source_queue

BUSY_RETRY_S = 3
"""Constant, so messages held back in arrival order become visible again in that order."""
BUSY_REQUEUE_AT = 3
"""A message held back this many times goes back on the queue as a new message instead of waiting
again: a slow start must not push it past the queue's receive limit into the DLQ."""


def build_product_owner(settings: ProductOwnerSettings | None = None) -> ProductOwner:
    from functions.product_owner.chat import TelegramChat
    from shared.idempotency import build_idempotency
    from shared.queues import build_queue
    from shared.secrets import build_secrets
    from shared.service_client import build_service_client

    settings = settings or ProductOwnerSettings()
    secrets = build_secrets(settings, settings)
    chat = TelegramChat(settings.resolve_bot_token(secrets), settings.telegram_api_base)
    config = PoConfig(
        agent=settings.po_agent,
        agent_command=settings.po_agent_command,
        timeout_s=settings.po_timeout_s,
        claim_s=settings.po_start_claim_s,
        api_url=settings.po_worker_api_url or settings.api_url,
    )
    return ProductOwner(
        build_service_client(settings),
        build_queue(settings, settings),
        secrets,
        build_idempotency(settings),
        chat,
        config,
    )


container = PerContainer(build_product_owner)
reset = container.reset


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, po: ProductOwner | None = None) -> dict[str, Any]:
    active = po or container.get()
    queue = source_queue(event, (PO_INBOX, PO_RESPONSES), "product owner")

    def handle(message: Any, record: Any) -> None:
        if queue == PO_RESPONSES:
            active.on_response(message)
            return
        try:
            active.on_inbox(message)
        except Busy as exc:
            if int(record.attributes.approximate_receive_count or 0) >= BUSY_REQUEUE_AT:
                # the same message again, with a fresh receive count (a duplicate is harmless: the
                # API keeps one worker message per inbox request id)
                active.queue.publish(queue, message)
                active.logger.info("held-back message requeued", extra={"request_id": message.request_id})
                return
            # Keep the person's order: this message waits, a few seconds, for the one before it.
            active.queue.release(
                queue, record.receipt_handle, reason=str(exc), visibility_timeout=BUSY_RETRY_S
            )
            raise

    return process_queue_event(event, queue, handle, context)
