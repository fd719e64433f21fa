"""/internal: what the Telegram side asks about what it tells people (service scope).

- `/internal/incidents/{id}/notify-claim` and `/notified`: the notifier pushes an incident to its owner
  once (see services.incidents for the claim's rules).
- `GET /internal/tasks/{id}/notification`: a task's status message as it stands (the bot matches a
  person's reply to it); unlike the claim it changes nothing.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Path

from functions.api.routers._common import new_router, principal, transaction
from functions.api.services import incidents, notifications
from shared.contracts.api import TaskNotification
from shared.contracts.notices import IncidentNotified, IncidentNotifyClaim, IncidentPush
from shared.contracts.servers import Incident

router = new_router()
TAGS = ["internal"]
IncidentId = Annotated[str, Path(max_length=36)]
TaskId = Annotated[str, Path(max_length=64)]


@router.post(
    "/internal/incidents/<incident_id>/notify-claim",
    summary="Hold an incident's Telegram push; 409 when pushed already or held by another notifier",
    tags=TAGS,
    responses={
        409: {"description": "Pushed already (notified_at is set), or another holder has the claim"},
        422: {"description": "The incident's owner has no Telegram id"},
    },
)
def claim_push(incident_id: IncidentId, body: IncidentNotifyClaim) -> IncidentPush:
    principal(router).require_service()
    with transaction() as session:
        return incidents.claim_push(session, incident_id, body.holder, body.seconds)


@router.post(
    "/internal/incidents/<incident_id>/notified",
    summary="Telegram accepted the incident's push: set notified_at (once, by the claim's holder)",
    tags=TAGS,
    responses={409: {"description": "Marked notified already, or the claim is not held by this holder"}},
)
def mark_notified(incident_id: IncidentId, body: IncidentNotified) -> Incident:
    principal(router).require_service()
    with transaction() as session:
        return incidents.mark_notified(session, incident_id, body.holder)


@router.get(
    "/internal/tasks/<task_id>/notification",
    summary="A task's Telegram status message (404 until the notifier has made one)",
    tags=TAGS,
)
def task_notification(task_id: TaskId) -> TaskNotification:
    principal(router).require_service()
    with transaction() as session:
        return TaskNotification.model_validate(notifications.get(session, task_id))
