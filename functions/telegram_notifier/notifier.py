"""One progress event -> the task's status message (sent once, then edited in place) and, when the
task has ended, the final message (sent once).

An `IncidentNotice` on the same queue is pushed to the incident's owner once: claim the push in the
API (409 `already_notified` -> nothing to do; a plain 409 -> another invocation pushes it now, so
this record is retried), send it, then mark it notified.

A task waiting for its person (WAITING_APPROVAL / WAITING_HUMAN_REVIEW) shows the gate's summary in
a new status message (an edit would make no sound; the old message is deleted); while it waits for
approval the message carries [Approve] [Reject] buttons, and the edit that follows the answer (the
text changes with the status) takes them away.

The event only says *which* task moved: the text is rendered from the task's current state and
its latest events, so reordered or redelivered events converge to the same messages. Before
talking to Telegram the notifier claims the task's notification row (compare-and-set in the
API): of two invocations racing on one task, one works and the other fails its record, which the
queue redelivers. `final_sent_at` is recorded only after Telegram accepted the final message: a
crash in between repeats the final message on redelivery rather than losing it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from functions.telegram_notifier import render
from shared.api_client import ApiClient, ApiError, ConflictError
from shared.contracts import ProgressEvent
from shared.contracts.api import NotificationRecord, Task, TaskEvent, TaskNotification, TaskStatus
from shared.contracts.notices import ALREADY_NOTIFIED, IncidentNotice, IncidentPush
from shared.contracts.spend import Gate
from shared.observability import get_logger
from shared.retry import while_contended
from shared.telegram.client import MessageGone

CLAIM_SECONDS = 60
"""A holder that died mid-way blocks the task's notifications this long at most."""
CLAIM_ATTEMPTS = 4
CLAIM_WAIT_S = 0.25
EVENT_PAGE = 500


class NotificationBusy(Exception):
    """Another notifier invocation holds this task's notification: retry this record later."""


class TelegramPort(Protocol):
    """What the notifier needs from Telegram (`shared.telegram.client.TelegramClient` is it)."""

    def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        link_preview: bool = True,
        reply_markup: dict[str, Any] | None = None,
    ) -> int:
        """Send a plain-text message (with an inline keyboard, if given); its message_id. Raises on failure."""
        ...

    def edit_text(
        self,
        chat_id: int,
        message_id: int,
        text: str,
        *,
        link_preview: bool = True,
        reply_markup: dict[str, Any] | None = None,
    ) -> None:
        """Replace the text (and the keyboard: none unless given); `MessageGone` if it can't be edited."""
        ...

    def delete_message(self, chat_id: int, message_id: int) -> bool:
        """Delete a message of the chat; False when Telegram refuses for good (too old)."""
        ...


WAITING_FOR_PERSON = (TaskStatus.WAITING_APPROVAL, TaskStatus.WAITING_HUMAN_REVIEW)


def pending_gate(api: ApiClient, task: Task) -> Gate | None:
    """What the task waits for: the gate the API puts on the task, else its pending one from the list."""
    if task.status not in WAITING_FOR_PERSON:
        return None
    if task.gate is not None:
        return task.gate
    pending = [g for g in api.task_gates(task.id) if g.status == "pending"]
    return max(pending, key=lambda g: g.requested_at) if pending else None


def latest_events(api: ApiClient, task_id: str) -> list[TaskEvent]:
    """The task's latest events, in order (the status line needs only these): one call, however long
    the task's history is."""
    return api.task_events(task_id, limit=EVENT_PAGE, latest=True)


@dataclass
class Notifier:
    api: ApiClient
    telegram: TelegramPort
    claim_seconds: int = CLAIM_SECONDS
    claim_attempts: int = CLAIM_ATTEMPTS
    claim_wait_s: float = CLAIM_WAIT_S
    sleep: Callable[[float], None] = field(default=time.sleep)

    def handle(self, message: ProgressEvent | IncidentNotice) -> None:
        """One record of progress:events: a task's progress, or an incident to push."""
        if isinstance(message, IncidentNotice):
            self.push_incident(message)
        else:
            self.task_moved(message)

    def task_moved(self, event: ProgressEvent) -> None:
        holder = f"notifier-{uuid.uuid4().hex[:12]}"
        note = self._claim(event.task_id, holder)
        if note is None:
            return
        # rendered after the claim: whoever holds it sees every change made before it was taken
        try:
            task = self.api.get_task(event.task_id)
            project = self.api.get_project(task.project_id)
            gate = pending_gate(self.api, task)
            status = render.status_text(task, project.name, latest_events(self.api, task.id), gate)
            self._status(
                note, holder, status, render.status_keyboard(task), task.status in WAITING_FOR_PERSON
            )
            final = render.final_pieces(task, project.name)
            if final and note.final_sent_at is None:
                for piece in final:
                    self.telegram.send_message(note.chat_id, piece, link_preview=False)
                self.api.record_notification(task.id, NotificationRecord(holder=holder, final_sent=True))
                return
        except BaseException:
            self._release(event.task_id, holder)
            raise
        self._release(event.task_id, holder)

    def push_incident(self, notice: IncidentNotice) -> None:
        """Send the incident to its owner once; a notice for one pushed already sends nothing."""
        holder = f"notifier-{uuid.uuid4().hex[:12]}"
        push = self._claim_push(notice.incident_id, holder)
        if push is None:
            return
        # no release on failure: the claim runs out by itself and the redelivered notice pushes it then
        self.telegram.send_message(push.chat_id, render.incident_text(push), link_preview=False)
        self.api.mark_incident_notified(push.incident.id, holder)
        get_logger().info(
            "incident pushed", extra={"incident_id": push.incident.id, "kind": push.incident.kind}
        )

    def _claim_push(self, incident_id: str, holder: str) -> IncidentPush | None:
        """The push, waiting a little for another holder; None: pushed already, or nobody to tell."""
        policy = while_contended(
            lambda exc: isinstance(exc, ConflictError) and exc.code != ALREADY_NOTIFIED,
            attempts=self.claim_attempts,
            step_s=self.claim_wait_s,
            sleep=self.sleep,
        )
        try:
            return policy(self.api.claim_incident_push, incident_id, holder, self.claim_seconds)
        except ConflictError as exc:
            if exc.code == ALREADY_NOTIFIED:
                get_logger().info("incident pushed already", extra={"incident_id": incident_id})
                return None
            raise NotificationBusy(str(exc)) from None
        except ApiError as exc:
            if exc.status != 422:
                raise
            get_logger().info("incident owner has no telegram id", extra={"incident_id": incident_id})
            return None

    def _claim(self, task_id: str, holder: str) -> TaskNotification | None:
        """The claim, waiting a little for another holder (its work is a few calls); None: nobody to tell."""
        policy = while_contended(
            lambda exc: isinstance(exc, ConflictError),
            attempts=self.claim_attempts,
            step_s=self.claim_wait_s,
            sleep=self.sleep,
        )
        try:
            return policy(self.api.claim_notification, task_id, holder, self.claim_seconds)
        except ConflictError as exc:
            raise NotificationBusy(str(exc)) from None
        except ApiError as exc:
            if exc.status != 422:
                raise
            # the owner has no Telegram id (any more)
            get_logger().info("task owner has no telegram id; nothing to notify", extra={"task_id": task_id})
            return None

    def _status(
        self,
        note: TaskNotification,
        holder: str,
        text: str,
        keyboard: dict[str, Any] | None,
        calls_the_person: bool,
    ) -> None:
        # the keyboard follows the status, and so the text: an unchanged text has the right buttons
        if note.message_id is not None and note.text == text:
            return
        message_id = note.message_id
        if message_id is not None and calls_the_person:
            # an edit makes no sound: what waits for the person comes as a new message (the old one goes)
            self._retire(note.chat_id, message_id)
            message_id = None
        if message_id is not None:
            try:
                self.telegram.edit_text(
                    note.chat_id, message_id, text, link_preview=False, reply_markup=keyboard
                )
            except MessageGone:
                message_id = None
        if message_id is None:
            message_id = self.telegram.send_message(
                note.chat_id, text, link_preview=False, reply_markup=keyboard
            )
        self.api.record_notification(
            note.task_id, NotificationRecord(holder=holder, message_id=message_id, text=text, release=False)
        )

    def _retire(self, chat_id: int, message_id: int) -> None:
        try:
            self.telegram.delete_message(chat_id, message_id)
        except Exception as exc:  # cosmetic: the new message is what counts
            get_logger().warning("old status message not deleted", extra={"error": type(exc).__name__})

    def _release(self, task_id: str, holder: str) -> None:
        try:
            self.api.release_notification(task_id, holder)
        except Exception:  # the claim expires by itself
            get_logger().warning("could not release the notification claim", extra={"task_id": task_id})
