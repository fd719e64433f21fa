"""A person's news: how their tasks ended since their Product Owner last heard (issue 21).

The PO consumer reads the news when it hands the person's next message to the PO worker, puts it in
front of the message, and then moves the person's marker (`users.po_news_seen_at`) to the newest outcome
it handed over. The marker only moves forward, so a redelivered or late "seen" never hides news again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from functions.api.errors import Unprocessable
from functions.api.models import Project, Task, UsageEntry, User, utcnow
from functions.api.services import users
from shared.contracts.api import TaskStatus
from shared.contracts.news import NEWS_LIMIT, NEWS_WINDOW_H, News, NewsMarker, TaskOutcome
from shared.contracts.spend import to_usd

ENDED = (TaskStatus.COMPLETED.value, TaskStatus.FAILED.value, TaskStatus.CANCELLED.value)
ERROR_LINE_MAX = 300
CLOCK_SKEW = timedelta(minutes=5)
"""A marker may come from a clock a little ahead of ours; one further ahead would hide future news."""


def news_of(session: Session, user_id: str, limit: int = NEWS_LIMIT) -> News:
    """The person's tasks that ended after their marker (or in the last day), oldest first, at most `limit`."""
    user = users.get(session, user_id)
    since = user.po_news_seen_at or utcnow() - timedelta(hours=NEWS_WINDOW_H)
    rows = list(
        session.execute(
            select(Task, Project.name)
            .join(Project, Project.id == Task.project_id)
            .where(Task.user_id == user.id, Task.status.in_(ENDED), Task.finished_at > since)
            .order_by(Task.finished_at, Task.id)
            .limit(limit + 1)
        ).all()
    )
    more = len(rows) > limit
    shown = _whole_instants(rows[:limit], rows[limit]) if more else rows
    costs = _costs(session, [task.id for task, _ in shown])
    items = [_outcome(task, name, costs.get(task.id, 0)) for task, name in shown]
    return News(
        user_id=user.id,
        since=since,
        items=items,
        marker=items[-1].finished_at if items else None,
        more=more,
    )


def _whole_instants(shown: list[Any], first_left: Any) -> list[Any]:
    """Outcomes that share the last shown one's `finished_at` with one left for later stay together in
    the next batch: the marker is an instant, and "after the marker" would skip the ones left behind."""
    cut = first_left[0].finished_at
    kept = [row for row in shown if row[0].finished_at != cut]
    return kept or shown  # a whole batch ending at one instant: hand it over rather than nothing


def _costs(session: Session, task_ids: list[str]) -> dict[str, int]:
    if not task_ids:
        return {}
    totals = session.execute(
        select(UsageEntry.task_id, func.coalesce(func.sum(UsageEntry.cost_micros), 0))
        .where(UsageEntry.task_id.in_(task_ids))
        .group_by(UsageEntry.task_id)
    )
    return {task_id: int(micros) for task_id, micros in totals.all() if task_id is not None}


def _outcome(task: Task, project_name: str | None, cost_micros: int) -> TaskOutcome:
    result: dict[str, Any] = task.result if isinstance(task.result, dict) else {}
    assert task.finished_at is not None  # selected by finished_at > since
    return TaskOutcome(
        task_id=task.id,
        type=task.type,
        project_id=task.project_id,
        project_name=project_name,
        status=task.status,
        failure_reason=task.failure_reason,
        error=_first_line(task.error),
        deployed_url=_text(result.get("deployed_url")),
        merge_commit=_text(result.get("merge_commit")),
        cost_usd=to_usd(cost_micros),
        finished_at=task.finished_at,
    )


def _first_line(error: str | None) -> str | None:
    lines = (error or "").strip().splitlines()
    return lines[0][:ERROR_LINE_MAX] if lines else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def mark_seen(session: Session, user_id: str, until: datetime) -> NewsMarker:
    """Move the marker forward to `until` (never back): a compare-and-set, so a repeated or a late call
    with an older marker changes nothing."""
    user = users.get(session, user_id)
    if until > utcnow() + CLOCK_SKEW:
        raise Unprocessable("until is in the future: pass the marker the news came with", ["until"])
    session.execute(
        update(User)
        .where(User.id == user.id, or_(User.po_news_seen_at.is_(None), User.po_news_seen_at < until))
        .values(po_news_seen_at=until)
        .execution_options(synchronize_session=False)
    )
    session.refresh(user)
    return NewsMarker(user_id=user.id, seen_at=user.po_news_seen_at)
