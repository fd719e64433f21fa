"""Taking an update in: the one path shared by the webhook and the long poller.

Claim `tg:update:<update_id>` (a duplicate is dropped here), then queue the update for the bot
consumer. If queueing fails the claim is released, so Telegram's retry (or the next poll) can
bring the update in again instead of it being lost as a "duplicate".
"""

from __future__ import annotations

from typing import Any, Literal

from shared.contracts.registry import TELEGRAM_UPDATES
from shared.contracts.telegram import TelegramUpdateMessage
from shared.idempotency import IdempotencyPort
from shared.queues.port import QueuePort

Accepted = Literal["queued", "duplicate"]


class InvalidUpdate(ValueError):
    """Not a Bot API Update: the message says what is wrong (safe to show the sender)."""


MAX_UPDATE_ID = 2**63 - 1
"""Telegram's ids fit a signed 64-bit integer (what the queue, the database and aiogram carry)."""
MAX_UPDATE_DEPTH = 64
"""No Bot API Update nests anywhere near this (a message in a reply in a message is about 10)."""


def update_key(update_id: int) -> str:
    return f"tg:update:{update_id}"


def check_update(payload: Any) -> tuple[int, dict[str, Any]]:
    """The update_id and the update, or `InvalidUpdate` naming the problem."""
    if not isinstance(payload, dict):
        raise InvalidUpdate(f"the body must be a JSON object (an Update), got {_json_kind(payload)}")
    if "update_id" not in payload:
        raise InvalidUpdate("the update has no update_id")
    update_id = payload["update_id"]
    if isinstance(update_id, bool) or not isinstance(update_id, int):
        raise InvalidUpdate(f"update_id must be an integer, got {_json_kind(update_id)}")
    if update_id < 0:
        raise InvalidUpdate("update_id must not be negative")
    if update_id > MAX_UPDATE_ID:
        raise InvalidUpdate(f"update_id must be at most {MAX_UPDATE_ID} (a signed 64-bit integer)")
    if _nesting(payload) > MAX_UPDATE_DEPTH:
        raise InvalidUpdate(f"the update is nested too deep (at most {MAX_UPDATE_DEPTH} levels)")
    return update_id, payload


def _nesting(value: Any) -> int:
    """How deep objects and arrays nest in `value`, walked without recursion; stops past the limit."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_UPDATE_DEPTH:
            break
        pending.extend((child, level + 1) for child in children)
    return deepest


def accept_update(
    update: dict[str, Any], queue: QueuePort, claims: IdempotencyPort, ttl_s: int
) -> tuple[Accepted, TelegramUpdateMessage | None]:
    """Queue `update` unless its update_id was seen within `ttl_s`. Raises what the queue raises."""
    update_id, update = check_update(update)
    key = update_key(update_id)
    if not claims.claim(key, ttl_s):
        return "duplicate", None
    message = TelegramUpdateMessage(update_id=update_id, update=update, request_id=f"tg:{update_id}")
    try:
        queue.publish(TELEGRAM_UPDATES, message)
    except BaseException as exc:
        try:
            claims.release(key)
        except Exception as release_failure:
            exc.add_note(f"the claim {key} could not be released either: {release_failure}")
        raise
    return "queued", message


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
