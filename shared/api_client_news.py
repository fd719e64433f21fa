"""The API client's calls about a person's news: the Product Owner consumer reads how the person's tasks
ended and, once it handed them to the PO worker, moves the person's marker."""

from __future__ import annotations

from datetime import datetime

from shared.api_transport import ApiTransport
from shared.contracts.news import News, NewsMarker, NewsSeen


class NewsCalls(ApiTransport):
    """Internal (service scope): `GET /internal/users/{id}/news`, `POST .../news/seen`."""

    def user_news(self, user_id: str) -> News:
        """The person's tasks that ended since their marker (or in the last 24 h), oldest first, at most 20."""
        return self._as(News, self.request("GET", f"/internal/users/{user_id}/news"))

    def mark_news_seen(self, user_id: str, until: datetime) -> NewsMarker:
        """Outcomes up to `until` (a News' marker) were handed over; the marker never moves back."""
        body = self._body(NewsSeen(until=until))
        return self._as(NewsMarker, self.request("POST", f"/internal/users/{user_id}/news/seen", json=body))
