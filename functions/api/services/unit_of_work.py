"""One request's unit of work: a transaction, and publishing what it queued once it has committed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from functions.api.deps import get_deps
from functions.api.services import outbox
from shared.observability import get_logger


@contextmanager
def transaction() -> Iterator[Session]:
    """One unit of work; outbox rows it added are published as soon as it has committed."""
    with get_deps().db.session() as session:
        yield session
        pending = list(session.info.pop("outbox_ids", []))
    if pending:
        dispatch_now(pending)


def dispatch_now(outbox_ids: list[int]) -> None:
    """Publish what the request just committed; if this fails the scheduler's sweep publishes it later."""
    deps = get_deps()
    try:
        outbox.dispatch(deps.db, deps.queue, ids=outbox_ids)
    except Exception:
        get_logger().exception(
            "outbox dispatch failed; the sweep will retry", extra={"outbox_ids": outbox_ids}
        )
