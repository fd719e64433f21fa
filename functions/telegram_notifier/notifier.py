"""One progress event -> the task's status message (sent once, then edited in place) and, when the
task has ended, the final message (sent once).

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
from typing import Protocol

from functions.telegram_notifier import render
from shared.api_client import ApiClient, ApiError, ConflictError
from shared.contracts import ProgressEvent
from shared.contracts.api import NotificationRecord, TaskEvent, TaskNotification
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

    def send_message(self, chat_id: int, text: str, *, link_preview: bool = True) -> int:
        """Send a plain-text message; its message_id. Raises on failure."""
        ...

    def edit_text(self, chat_id: int, message_id: int, text: str, *, link_preview: bool = True) -> None:
        """Replace the text; `MessageGone` if the message can no longer be edited."""
        ...


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

    def handle(self, event: ProgressEvent) -> None:
        holder = f"notifier-{uuid.uuid4().hex[:12]}"
        note = self._claim(event.task_id, holder)
        if note is None:
            return
        # rendered after the claim: whoever holds it sees every change made before it was taken
        try:
            task = self.api.get_task(event.task_id)
            project = self.api.get_project(task.project_id)
            status = render.status_text(task, project.name, latest_events(self.api, task.id))
            self._status(note, holder, status)
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

    def _status(self, note: TaskNotification, holder: str, text: str) -> None:
        if note.message_id is not None and note.text == text:
            return
        message_id = note.message_id
        if message_id is not None:
            try:
                self.telegram.edit_text(note.chat_id, message_id, text, link_preview=False)
            except MessageGone:
                message_id = None
        if message_id is None:
            message_id = self.telegram.send_message(note.chat_id, text, link_preview=False)
        self.api.record_notification(
            note.task_id, NotificationRecord(holder=holder, message_id=message_id, text=text, release=False)
        )

    def _release(self, task_id: str, holder: str) -> None:
        try:
            self.api.release_notification(task_id, holder)
        except Exception:  # the claim expires by itself
            get_logger().warning("could not release the notification claim", extra={"task_id": task_id})
