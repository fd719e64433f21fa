"""Helpers every router uses: the caller, a transaction, idempotent creation, JSON responses."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel

from functions.api.auth import Principal
from functions.api.deps import get_deps
from functions.api.errors import Forbidden
from functions.api.services import idempotency
from functions.api.services.idempotency import Creation, IdempotentRequest, Reply
from functions.api.services.unit_of_work import dispatch_now, transaction
from functions.api.services.workers import WORKER_ONLY_OWN

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


def _caller(router: APIGatewayHttpRouter) -> Principal:
    found = router.context.get("principal")
    assert isinstance(found, Principal), "auth middleware did not run"
    return found


def principal(router: APIGatewayHttpRouter) -> Principal:
    """The caller of a route no worker token may call: a worker principal gets 403 here, so every route
    refuses workers unless it asks for `service_or_worker` instead."""
    found = _caller(router)
    if found.worker_id is not None:
        raise Forbidden(WORKER_ONLY_OWN)
    return found


def service_or_worker(router: APIGatewayHttpRouter, worker_id: str | None = None) -> Principal:
    """The caller of a route the service calls and a worker's wrapper calls for its own job: a service
    (or admin) key, or a worker token acting for `worker_id`. Routes that name a message or a task rather
    than a worker pass no id and call `act_for` (or `workers.act_for_task`) once they know whose it is."""
    found = _caller(router)
    if found.worker_id is None:
        found.require_service()
    elif worker_id is not None:
        act_for(found, worker_id)
    return found


def own_worker(router: APIGatewayHttpRouter, worker_id: str) -> Principal:
    """The caller of a route only a worker's own token may call (its secrets, its session): nobody else,
    not even the service, needs what these hand out."""
    found = _caller(router)
    if found.worker_id is None:
        raise Forbidden("only the worker's own token may call this")
    act_for(found, worker_id)
    return found


def act_for(caller: Principal, worker_id: str | None) -> None:
    """403 unless the caller may act for `worker_id` (None: the thing named does not exist): a service
    may; a worker token only for its own worker, and it gets 403, never 404, so nothing leaks."""
    if caller.worker_id is not None and caller.worker_id != worker_id:
        raise Forbidden(WORKER_ONLY_OWN)


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


def create_once(
    router: APIGatewayHttpRouter,
    key: str | None,
    body: BaseModel,
    status: int,
    make: Creation,
) -> Response[Any]:
    """A creating call: `make(session, caller)` runs in one transaction at most once per `Idempotency-Key`;
    a repeat gets the first answer back (see `services.idempotency.created_once`)."""
    return replied(idempotency.created_once(idempotent_request(router, key, body), status, make))
