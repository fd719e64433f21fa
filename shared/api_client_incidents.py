"""The API client's calls about telling people: an incident's push to Telegram (claim, then mark it
notified) and a task's status message as it stands."""

from __future__ import annotations

from shared.api_transport import ApiTransport
from shared.contracts.api import TaskNotification
from shared.contracts.notices import IncidentNotified, IncidentNotifyClaim, IncidentPush
from shared.contracts.servers import Incident


class IncidentCalls(ApiTransport):
    """Service scope: what the Telegram notifier and bot ask about their messages."""

    def claim_incident_push(self, incident_id: str, holder: str, seconds: int = 60) -> IncidentPush:
        """The incident and where to push it, held by `holder`; ConflictError when it was pushed already
        or another holder has it; an ApiError 422 when its owner has no Telegram id."""
        body = IncidentNotifyClaim(holder=holder, seconds=seconds).model_dump(mode="json")
        data = self.request("POST", f"/internal/incidents/{incident_id}/notify-claim", json=body)
        return self._as(IncidentPush, data)

    def mark_incident_notified(self, incident_id: str, holder: str) -> Incident:
        """Telegram accepted the push; ConflictError unless `holder` holds the claim (or it was marked)."""
        body = IncidentNotified(holder=holder).model_dump(mode="json")
        data = self.request("POST", f"/internal/incidents/{incident_id}/notified", json=body)
        return self._as(Incident, data)

    def task_notification(self, task_id: str) -> TaskNotification:
        """The task's status message (NotFoundError until the notifier has made one); changes nothing."""
        return self._as(TaskNotification, self.request("GET", f"/internal/tasks/{task_id}/notification"))
