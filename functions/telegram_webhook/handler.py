"""Lambda entry point for the API Gateway route Telegram calls (`POST /telegram/webhook`).

The ack path: check `X-Telegram-Bot-Api-Secret-Token` in constant time (wrong or missing: 401,
nothing processed), validate the body just enough (a JSON object, nested at most 64 levels, with
an `update_id` in 0..2^63-1, else 400 naming the problem), drop a duplicate update_id, queue the
update on `telegram:updates`, answer 200. An update too large for the queue is answered 200
("dropped", logged): Telegram would redeliver any other answer for a day. aiogram is never
imported here (a test enforces it); the bot consumer does the slow work.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from typing import Any

from shared.handler_shell import PerContainer, lambda_entry
from shared.idempotency import IdempotencyPort
from shared.observability import correlation, get_logger
from shared.queues.port import MessageTooLargeError, QueuePort
from shared.telegram.intake import MAX_UPDATE_DEPTH, InvalidUpdate, accept_update, check_update

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name, not a secret
DEFAULT_UPDATE_TTL_S = 48 * 3600


@dataclass
class WebhookPorts:
    secret: str | None
    """The expected secret token; None refuses every request (fail closed)."""
    queue: QueuePort
    claims: IdempotencyPort
    update_ttl_s: int = DEFAULT_UPDATE_TTL_S


def build_ports() -> WebhookPorts:
    """From settings, once per container: the secret is resolved here (Secrets Manager in AWS)."""
    from shared.idempotency import build_idempotency
    from shared.queues.factory import build_queue
    from shared.telegram.settings import TelegramSettings

    settings = TelegramSettings()
    return WebhookPorts(
        secret=settings.resolve_webhook_secret(),
        queue=build_queue(settings, settings),
        claims=build_idempotency(settings),
        update_ttl_s=settings.telegram_update_ttl_s,
    )


container = PerContainer(build_ports)
reset = container.reset
"""Forget the per-container ports (tests; the embedded stack on start and stop)."""


def _reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return _reply(status, {"ok": False, "code": code, "message": message})


def _authorized(event: dict[str, Any], expected: str | None) -> bool:
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    given = headers.get(SECRET_HEADER)
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _parse_body(event: dict[str, Any]) -> Any:
    raw: str | bytes = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidUpdate("the body is marked base64 but is not valid base64") from None
    if not raw:
        raise InvalidUpdate("the body is empty; expected a JSON object (an Update)")
    try:
        return json.loads(raw)
    except RecursionError:
        raise InvalidUpdate(f"the update is nested too deep (at most {MAX_UPDATE_DEPTH} levels)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise InvalidUpdate(f"the body is not JSON ({reason})") from None


@lambda_entry
def lambda_handler(event: dict[str, Any], context: Any, ports: WebhookPorts | None = None) -> dict[str, Any]:
    logger = get_logger()
    try:
        active = ports or container.get()
    except Exception as exc:
        # Name the kind of failure only: a settings or secrets error must never echo a value.
        logger.error("telegram webhook is not configured", extra={"error_type": type(exc).__name__})
        return _error(503, "unavailable", "the webhook is not configured")
    if active.secret is None:
        logger.error("telegram webhook secret is not configured: refusing every update")
    if not _authorized(event, active.secret):
        return _error(401, "unauthorized", "missing or wrong X-Telegram-Bot-Api-Secret-Token")
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method") or "POST").upper()
    if method != "POST":
        return _error(405, "method_not_allowed", "Telegram delivers updates with POST")
    try:
        update_id, update = check_update(_parse_body(event))
    except InvalidUpdate as exc:
        logger.warning("telegram webhook refused a body", extra={"reason": str(exc)})
        return _error(400, "bad_request", str(exc))
    try:
        outcome, message = accept_update(update, active.queue, active.claims, active.update_ttl_s)
    except MessageTooLargeError as exc:
        # Telegram redelivers anything but a 2xx for a day: acknowledge what can never be queued.
        logger.warning(
            "telegram update too large to queue: dropped",
            extra={"update_id": update_id, "bytes": exc.size, "limit": exc.limit},
        )
        return _reply(200, {"ok": True, "update_id": update_id, "status": "dropped"})
    except Exception:
        logger.exception("telegram update could not be queued", extra={"update_id": update_id})
        return _error(503, "unavailable", "the update could not be queued; Telegram will retry")
    with correlation(message.correlation_id if message else None):
        logger.info("telegram update " + outcome, extra={"update_id": update_id})
    return _reply(200, {"ok": True, "update_id": update_id, "status": outcome})
