"""Notices for the Telegram notifier beside progress events on `progress:events`: an incident to push.

The notifier already consumes that queue, so an incident needs no queue, consumer or alarm of its
own. A message on it is one of two kinds, told apart by `type`: a progress event's type is one of
started / progress / completed / failed, an incident notice's is `incident`. Anything without the
incident tag is read as a progress event, so the seed's events (and their errors) read as before.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from shared.contracts.base import QueueMeta
from shared.contracts.dto import Dto, Out
from shared.contracts.events import ProgressEvent
from shared.contracts.servers import Incident

INCIDENT: Literal["incident"] = "incident"
ALREADY_NOTIFIED = "already_notified"
"""The 409 code of a claim on an incident that was pushed already: nothing left to do (a plain
`conflict` means another notifier holds it now: try again later)."""


def incident_request_id(incident_id: str) -> str:
    """One notice per incident: a redelivered or re-published notice carries the same request id."""
    return f"incident:{incident_id}"


class IncidentNotice(QueueMeta):
    """Added (`progress:events`): an incident was recorded for an owner who uses Telegram; the notifier
    pushes it to them once (`incidents.notified_at`), whatever the queue delivers twice."""

    type: Annotated[Literal["incident"], Field(description="Tells this notice from a progress event.")] = (
        INCIDENT
    )
    incident_id: Annotated[str, Field(min_length=1, max_length=36, description="The Incident to push.")]
    request_id: Annotated[str, Field(max_length=64, description="incident:<incident id>.")] = ""

    def model_post_init(self, context: Any, /) -> None:
        if not self.request_id:
            self.request_id = incident_request_id(self.incident_id)


def _kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return INCIDENT if kind == INCIDENT else "progress"


ProgressStreamMessage = Annotated[
    Annotated[ProgressEvent, Tag("progress")] | Annotated[IncidentNotice, Tag(INCIDENT)],
    Discriminator(_kind),
]
"""What `progress:events` carries: a task's progress event, or an incident to push."""


# -- the API's side: one push per incident ------------------------------------------------------


class IncidentNotifyClaim(Dto):
    """`POST /internal/incidents/{id}/notify-claim`: hold the incident's push for `seconds`."""

    holder: Annotated[
        str, Field(min_length=1, max_length=200, description="The notifier invocation claiming.")
    ]
    seconds: Annotated[
        int, Field(gt=0, le=600, description="How long the claim lasts unless marked notified.")
    ] = 60


class IncidentNotified(Dto):
    """`POST /internal/incidents/{id}/notified`: Telegram accepted the push (sets notified_at once)."""

    holder: Annotated[str, Field(min_length=1, max_length=200, description="Must hold the claim.")]


class IncidentPush(Out):
    """What the claim holder sends, and to whom."""

    incident: Incident
    chat_id: int = Field(description="The owner's Telegram id (their private chat with the bot).")
    project_name: str | None = Field(default=None, description="The incident's project, when it has one.")
    server_handle: str | None = Field(default=None, description="The incident's server, when it has one.")
