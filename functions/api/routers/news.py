"""/internal/users/{id}/news: how a person's tasks ended since their Product Owner last heard, and the
marker that says what it has heard (service scope: the PO consumer reads and moves it)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path

from functions.api.routers._common import new_router, principal, transaction
from functions.api.services import news
from shared.contracts.news import News, NewsMarker, NewsSeen

UserId = Annotated[str, Path(max_length=64)]
TAGS = ["internal"]
router = new_router()


@router.get(
    "/internal/users/<user_id>/news",
    summary="The person's tasks that ended since their marker (or in the last 24 h), oldest first, at most 20",
    tags=TAGS,
    responses={404: {"description": "No such user"}},
)
def get_news(user_id: UserId) -> News:
    principal(router).require_service()
    with transaction() as session:
        return news.news_of(session, user_id)


@router.post(
    "/internal/users/<user_id>/news/seen",
    summary="Outcomes up to `until` were handed to the person's Product Owner (the marker only moves forward)",
    tags=TAGS,
    responses={
        404: {"description": "No such user"},
        422: {"description": "`until` is missing, without a time zone, or in the future"},
    },
)
def news_seen(user_id: UserId, body: NewsSeen) -> NewsMarker:
    principal(router).require_service()
    with transaction() as session:
        return news.mark_seen(session, user_id, body.until)
