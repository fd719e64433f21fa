"""Helpers every router uses: the caller, a transaction, JSON responses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel
from sqlalchemy.orm import Session

from functions.api.auth import Principal
from functions.api.deps import get_deps

if TYPE_CHECKING:
    from functions.api.services.idempotency import Claim

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Send the same key when retrying: the first answer comes back and nothing is created "
        "twice (kept a day). The same key with a different request is refused (422).",
    ),
]


def principal(router: APIGatewayHttpRouter) -> Principal:
    found = router.context.get("principal")
    assert isinstance(found, Principal), "auth middleware did not run"
    return found


@contextmanager
def transaction() -> Iterator[Session]:
    """One unit of work; outbox rows it added are published as soon as it has committed."""
    with get_deps().db.session() as session:
        yield session
        pending = list(session.info.pop("outbox_ids", []))
    if pending:
        dispatch_now(pending)


def created(body: BaseModel | list[Any] | dict[str, Any], status: int = 201) -> Response[Any]:
    """A JSON response with an explicit status (201 created, 202 accepted, ...)."""
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def dispatch_now(outbox_ids: list[int]) -> None:
    """Publish what the request just committed; if this fails the scheduler's sweep publishes it later."""
    from functions.api.services import outbox
    from shared.observability import get_logger

    deps = get_deps()
    try:
        outbox.dispatch(deps.db, deps.queue, ids=outbox_ids)
    except Exception:
        get_logger().exception(
            "outbox dispatch failed; the sweep will retry", extra={"outbox_ids": outbox_ids}
        )


def idempotency_claim(
    router: APIGatewayHttpRouter, session: Session, key: str | None, body: BaseModel | None
) -> Claim:
    """The caller's `Idempotency-Key` for this creating call (see `services.idempotency`)."""
    from functions.api.services import idempotency

    event = router.current_event
    return idempotency.claim(session, principal(router), key, event.http_method, event.path, body,
                             get_deps().settings.idempotency_window_s)  # fmt: skip
