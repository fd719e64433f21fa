"""API bodies for a person's news (issue 21): the outcomes of their tasks that their Product Owner has not
heard of yet, so "how is my blog?" is answered from facts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field

from shared.contracts.dto import Dto, Out

NEWS_LIMIT = 20
"""At most this many outcomes per message: the rest come with the next one (the marker moves)."""
NEWS_WINDOW_H = 24
"""A person whose PO never heard news gets the last day's outcomes, not their whole history."""


class TaskOutcome(Out):
    """How one of the person's tasks ended."""

    task_id: str
    type: str = Field(description="engineering, deploy, undeploy, scaffold, provision.")
    project_id: str
    project_name: str | None = None
    status: str = Field(description="COMPLETED, FAILED or CANCELLED.")
    failure_reason: str | None = Field(default=None, description="A FAILED task's reason, e.g. budget.")
    error: str | None = Field(default=None, description="The first line of the task's error.")
    deployed_url: str | None = Field(default=None, description="A deploy's URL, from its result.")
    merge_commit: str | None = Field(default=None, description="An engineering task's commit on main.")
    cost_usd: float = Field(default=0.0, description="What the task cost (agents and workers).")
    finished_at: datetime


class News(Out):
    """`GET /internal/users/{id}/news`: outcomes after `since`, oldest first."""

    user_id: str
    since: datetime = Field(description="The person's news marker, or 24 hours ago when never set.")
    items: list[TaskOutcome] = Field(default_factory=list)
    marker: datetime | None = Field(
        default=None,
        description="The newest `finished_at` among the items: pass it to `news/seen` once they were handed over.",
    )
    more: bool = Field(default=False, description="More outcomes wait beyond the marker.")


class NewsSeen(Dto):
    """`POST /internal/users/{id}/news/seen`: outcomes up to `until` were handed over."""

    until: Annotated[AwareDatetime, Field(description="The `marker` of the news handed over.")]


class NewsMarker(Out):
    user_id: str
    seen_at: datetime | None = Field(description="Outcomes up to here have been handed over.")
