"""One request's unit of work: a transaction, and publishing what it queued once it has committed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from functions.api.db import added
from functions.api.deps import get_deps
from functions.api.models import OutboxMessage
from functions.api.services import outbox
from shared.observability import get_logger

__all__ = ["added", "dispatch_now", "transaction"]


@contextmanager
def transaction() -> Iterator[Session]:
    """One unit of work; outbox rows it added (claimed in their INSERT) are published as soon as it has
    committed, and marked sent with one statement (see `outbox`)."""
    with get_deps().db.session() as session:
        session.info[outbox.PUBLISHES_AFTER_COMMIT] = True
        yield session
        added: list[OutboxMessage] = session.info.pop(outbox.CLAIMED_ROWS, [])
    claimed = [row for row in added if inspect(row).has_identity]  # not one a savepoint rolled back
    if claimed:
        _publish_now(claimed)


def _publish_now(rows: list[OutboxMessage]) -> None:
    deps = get_deps()
    try:
        outbox.publish_claimed(deps.db, deps.queue, rows)
    except Exception:  # still claimed: the sweep publishes them once the lease has run out
        get_logger().exception(
            "outbox publish failed; the sweep will retry", extra={"outbox_ids": [r.id for r in rows]}
        )


def dispatch_now(outbox_ids: list[int]) -> None:
    """Publish what the request just committed; if this fails the scheduler's sweep publishes it later."""
    deps = get_deps()
    try:
        outbox.dispatch(deps.db, deps.queue, ids=outbox_ids)
    except Exception:
        get_logger().exception(
            "outbox dispatch failed; the sweep will retry", extra={"outbox_ids": outbox_ids}
        )
