"""The API as the engineering graph sees it, in memory: just the calls the graph and its driver make,
with the API's compare-and-set claim and single-holder lease."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.api_client import ConflictError
from shared.contracts.api import Project, Task, TaskStatus, TaskType


class FakeApi:
    """One project ("blog", no repository yet) and one queued engineering task on it (agent "command")."""

    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.project = Project(
            id="p1",
            name="blog",
            description="",
            modules=["backend"],
            agent=None,
            repo_url=None,
            status="draft",
            owner_id="u",
            created_at=now,
            updated_at=now,
        )
        self.task = Task(
            id=str(uuid.uuid4()),
            project_id="p1",
            user_id="u",
            type=TaskType.ENGINEERING,
            status=TaskStatus.QUEUED,
            spec="add a feature",
            attempt=0,
            result=None,
            error=None,
            correlation_id="c",
            created_at=now,
            started_at=None,
            finished_at=None,
            heartbeat_at=None,
            params={"agent": "command"},
        )
        self.events: list[dict[str, Any]] = []
        self.lease: str | None = None

    def take_lease(self, task_id: str, holder: str, seconds: int = 120) -> None:
        if self.lease not in (None, holder):
            raise ConflictError(409, "conflict", "leased")
        self.lease = holder

    def release_lease(self, task_id: str, holder: str) -> None:
        self.lease = None

    def claim_task(self, task_id: str, worker: str | None = None) -> Task:
        if self.task.status is not TaskStatus.QUEUED:
            raise ConflictError(409, "conflict", "already claimed")
        self.task = self.task.model_copy(
            update={"status": TaskStatus.RUNNING, "attempt": self.task.attempt + 1}
        )
        return self.task

    def get_task(self, task_id: str) -> Task:
        return self.task

    def get_project(self, project_id: str) -> Project:
        return self.project

    def update_project(self, project_id: str, **changes: Any) -> Project:
        self.project = self.project.model_copy(update=changes)
        return self.project

    def append_events(self, task_id: str, events: list[dict[str, Any]]) -> list[Any]:
        self.events.extend(events)
        return []

    def complete_task(self, task_id: str, result: dict[str, Any]) -> Task:
        self.task = self.task.model_copy(update={"status": TaskStatus.COMPLETED, "result": result})
        return self.task

    def fail_task(self, task_id: str, error: str, result: dict[str, Any] | None = None) -> Task:
        self.task = self.task.model_copy(
            update={"status": TaskStatus.FAILED, "error": error, "result": result}
        )
        return self.task

    def cancel(self) -> None:
        """A person cancels the task (the API marks it final; the graph learns of it on its next step)."""
        self.task = self.task.model_copy(update={"status": TaskStatus.CANCELLED})
