"""Helpers every router uses: the caller, a transaction, idempotent creation, JSON responses."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel

from functions.api.auth import Principal
from functions.api.deps import get_deps
from functions.api.services.idempotency import IdempotentRequest, Reply
from functions.api.services.unit_of_work import dispatch_now, transaction

__all__ = ["dispatch_now", "transaction"]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Send the same key when retrying: the first answer comes back and nothing is created "
        "twice (kept a day). The same key with a different request is refused (422).",
    ),
]


def new_router() -> APIGatewayHttpRouter:
    """A resource's router (Powertools leaves its constructor unannotated)."""
    return APIGatewayHttpRouter()  # type: ignore[no-untyped-call]


def principal(router: APIGatewayHttpRouter) -> Principal:
    found = router.context.get("principal")
    assert isinstance(found, Principal), "auth middleware did not run"
    return found


def created(body: BaseModel | list[Any] | dict[str, Any], status: int = 201) -> Response[Any]:
    """A JSON response with an explicit status (201 created, 202 accepted, ...)."""
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def replied(reply: Reply) -> Response[Any]:
    """A creating call's answer, new or replayed (see `services.idempotency.once`)."""
    return created(reply.body, reply.status)


def idempotent_request(
    router: APIGatewayHttpRouter, key: str | None, body: BaseModel | None
) -> IdempotentRequest:
    """The caller's `Idempotency-Key` for this creating call (see `services.idempotency`)."""
    event = router.current_event
    window_s = get_deps().settings.idempotency_window_s
    return IdempotentRequest(principal(router), key, event.http_method, event.path, body, window_s)
